/**
 * Nix's printed hashes (`libutil/hash.cc`): the four algorithms, and digests given in base16,
 * nix32 or base64 (told apart by length, as Nix does), with an optional `algo:` or SRI `algo-`
 * prefix. Internal to src/store: narinfo and content address parsing share it.
 *
 * @module
 */
import { fromBase64, toHex } from "../base/bytes.ts";
import { clip, InvalidRequestError } from "../base/errors.ts";
import * as nixbase32 from "./nixbase32.ts";

/** The hash algorithms Nix knows. */
export type HashAlgo = "md5" | "sha1" | "sha256" | "sha512";

/** Digest length in bytes of each algorithm. */
export const HASH_SIZE: Readonly<Record<HashAlgo, number>> = {
  md5: 16,
  sha1: 20,
  sha256: 32,
  sha512: 64,
};

/** True for the names `parseHashType` accepts. */
export function isHashAlgo(text: string): text is HashAlgo {
  return Object.hasOwn(HASH_SIZE, text);
}

function bad(text: string, why: string): InvalidRequestError {
  return new InvalidRequestError(`invalid hash ${JSON.stringify(clip(text, 200))}: ${why}`);
}

/** Length of Nix's base64 form of `size` bytes (with padding). */
function base64Len(size: number): number {
  return ((Math.floor((4 * size) / 3)) + 3) & ~3;
}

/**
 * Decodes a digest of `algo` without prefix, choosing the encoding by length as Nix's
 * `Hash(rest, type, isSRI)`: 2n characters base16 (either case), ceil(8n/5) nix32, else base64;
 * `sri` forces base64. `whole` is the text named in errors.
 */
export function decodeDigest(text: string, algo: HashAlgo, sri = false, whole = text): Uint8Array {
  const size = HASH_SIZE[algo];
  if (!sri && text.length === 2 * size) {
    if (!/^[0-9a-fA-F]*$/.test(text)) throw bad(whole, "invalid base16");
    return Uint8Array.from(text.match(/../g)!, (h) => parseInt(h, 16));
  }
  if (!sri && text.length === nixbase32.encodedLength(size)) {
    try {
      return nixbase32.decode(text, size);
    } catch (e) {
      throw bad(whole, `invalid nix32: ${(e as Error).message}`);
    }
  }
  if (sri || text.length === base64Len(size)) {
    let bytes: Uint8Array;
    try {
      bytes = fromBase64(text);
    } catch {
      throw bad(whole, "invalid base64");
    }
    if (bytes.length !== size) {
      throw bad(whole, `decodes to ${bytes.length} bytes, ${algo} has ${size}`);
    }
    return bytes;
  }
  throw bad(
    whole,
    `wrong length ${text.length} for ${algo} (want ${2 * size} base16, ` +
      `${nixbase32.encodedLength(size)} nix32 or ${base64Len(size)} base64 characters)`,
  );
}

/**
 * Parses `algo:<digest>` or SRI `algo-<base64>` (Nix's `Hash::parseAnyPrefixed`); a type-less
 * hash is refused.
 */
export function parsePrefixedHash(text: string): { algo: HashAlgo; digest: Uint8Array } {
  let at = text.indexOf(":");
  let sri = false;
  if (at < 0) {
    at = text.indexOf("-");
    sri = at >= 0;
  }
  if (at < 0) throw bad(text, "no algorithm prefix (as in sha256:…)");
  const algo = text.slice(0, at);
  if (!isHashAlgo(algo)) throw bad(text, `unknown hash algorithm ${JSON.stringify(clip(algo))}`);
  return { algo, digest: decodeDigest(text.slice(at + 1), algo, sri, text) };
}

/** `algo:<nix32>`, as Nix prints a hash with `to_string(Base32, true)`. */
export function printHash32(algo: HashAlgo, digest: Uint8Array): string {
  return `${algo}:${nixbase32.encode(digest)}`;
}

/** `algo:<hex>`, as Nix's `to_string(Base16, true)` (store path fingerprints use it). */
export function printHash16(algo: HashAlgo, digest: Uint8Array): string {
  return `${algo}:${toHex(digest)}`;
}
