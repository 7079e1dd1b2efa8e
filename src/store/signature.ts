/**
 * Nix's binary cache signatures (`libstore/crypto.cc`): ed25519 keys in the files
 * `nix-store --generate-binary-cache-key NAME SK PK` writes (`NAME:base64`), the narinfo
 * fingerprint they sign, and signing and checking PathInfos and narinfos. Ed25519 is
 * WebCrypto's; it is deterministic, so a signature made here equals the one Nix makes.
 *
 * @module
 */
import { fromBase64, toBase64 } from "../base/bytes.ts";
import { clip, InvalidRequestError, NotFoundError } from "../base/errors.ts";
import {
  ContentAddressError,
  renderContentAddress,
  verifyContentAddress,
} from "./content_address.ts";
import type { NarInfo } from "./narinfo.ts";
import { encode as nixbase32 } from "./nixbase32.ts";
import { validatePathInfo } from "./path_info.ts";
import {
  type NARInfo_CA,
  NARInfo_CA_Hash,
  type NARInfo_Signature,
  type PathInfo,
} from "./path_info_service.ts";
import { StorePath } from "./store_path.ts";

/** Bytes of an ed25519 public key, of a secret key's seed, and of a signature. */
const PUBLIC_KEY_LEN = 32;
const SECRET_KEY_LEN = 64;
const SIGNATURE_LEN = 64;
// PKCS#8 wrapping of a 32-byte ed25519 seed (RFC 8410), the form WebCrypto imports.
const PKCS8_PREFIX = [
  0x30,
  0x2e,
  0x02,
  0x01,
  0x00,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x70,
  0x04,
  0x22,
  0x04,
  0x20,
];

/**
 * A key or signature text is malformed: no `name:`, bad base64, wrong length, a secret key whose
 * public half does not match its seed. The message names the key file or key name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PublicKey, SignatureError } from "@nixcas/nixcas/store";
 * assert.throws(() => PublicKey.parse("cache-1:AAAA", "/etc/nix/pk"), (e) => {
 *   assert(e instanceof SignatureError);
 *   assert.match(e.message, /\/etc\/nix\/pk/);
 *   assert.match(e.message, /3 bytes \(want 32\)/);
 *   return true;
 * });
 * ```
 */
export class SignatureError extends InvalidRequestError {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SignatureError";
  }
}

/** Splits `name:base64` at the first colon and decodes, as Nix's `Key::Key`. */
function splitKey(
  text: string,
  what: string,
  source: string | undefined,
  want: number,
): { name: string; bytes: Uint8Array } {
  const where = source ? ` (${source})` : "";
  const trimmed = text.trim(); // key files may end in a newline; Nix skips it too
  const colon = trimmed.indexOf(":");
  if (colon <= 0 || colon === trimmed.length - 1) {
    // The text is not quoted: it may be a secret key.
    throw new SignatureError(`${what}${where} is not in the form NAME:BASE64`);
  }
  const name = trimmed.slice(0, colon);
  let bytes: Uint8Array;
  try {
    bytes = fromBase64(trimmed.slice(colon + 1));
  } catch {
    throw new SignatureError(`${what} ${JSON.stringify(clip(name))}${where}: invalid base64`);
  }
  if (bytes.length !== want) {
    throw new SignatureError(
      `${what} ${JSON.stringify(clip(name))}${where}: decodes to ${bytes.length} bytes ` +
        `(want ${want})`,
    );
  }
  return { name, bytes };
}

async function readKeyFile(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new NotFoundError(`${what} file ${path} does not exist`, { cause: e });
    }
    throw new InvalidRequestError(`cannot read ${what} file ${path}: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

const enc = new TextEncoder();
// A copy on an ArrayBuffer, what WebCrypto takes (fingerprints are short).
const asBytes = (data: Uint8Array | string): Uint8Array<ArrayBuffer> =>
  typeof data === "string" ? enc.encode(data) : new Uint8Array(data);

/**
 * An ed25519 public key with its name, e.g. `cache.nixos.org-1`; Nix's `PublicKey`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PublicKey } from "@nixcas/nixcas/store";
 * const key = PublicKey.parse("cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=");
 * assert.equal(key.name, "cache.nixos.org-1");
 * assert.equal(key.key.length, 32);
 * assert.equal(key.toString(), "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=");
 * ```
 */
export class PublicKey {
  /** The key's name, which signatures carry. */
  readonly name: string;
  /** The 32 key bytes. Treat as read-only. */
  readonly key: Uint8Array;
  #crypto?: Promise<CryptoKey>;

  /** Builds a key from its name and 32 bytes. */
  constructor(name: string, key: Uint8Array) {
    if (name === "" || name.includes(":")) {
      throw new SignatureError(`invalid key name ${JSON.stringify(clip(name))}`);
    }
    if (key.length !== PUBLIC_KEY_LEN) {
      throw new SignatureError(
        `public key ${JSON.stringify(clip(name))}: ${key.length} bytes (want ${PUBLIC_KEY_LEN})`,
      );
    }
    this.name = name;
    this.key = key.slice();
  }

  /**
   * Parses `NAME:base64(32 bytes)`, the public key file `nix-store --generate-binary-cache-key`
   * writes or an entry of `trusted-public-keys`. `source` (a file name) is named in errors.
   */
  static parse(text: string, source?: string): PublicKey {
    const { name, bytes } = splitKey(text, "public key", source, PUBLIC_KEY_LEN);
    return new PublicKey(name, bytes);
  }

  /** Reads and parses a public key file. */
  static async readFile(path: string): Promise<PublicKey> {
    return PublicKey.parse(await readKeyFile(path, "public key"), path);
  }

  /** True when `signature` (64 bytes) is this key's ed25519 signature of `data`. */
  async verify(data: Uint8Array | string, signature: Uint8Array): Promise<boolean> {
    if (signature.length !== SIGNATURE_LEN) return false;
    this.#crypto ??= crypto.subtle.importKey("raw", asBytes(this.key), { name: "Ed25519" }, false, [
      "verify",
    ]);
    let key: CryptoKey;
    try {
      key = await this.#crypto;
    } catch {
      return false; // not a point on the curve: nothing verifies
    }
    return await crypto.subtle.verify("Ed25519", key, asBytes(signature), asBytes(data));
  }

  /** `NAME:base64`, the form Nix writes and reads. */
  toString(): string {
    return `${this.name}:${toBase64(this.key)}`;
  }
}

/**
 * An ed25519 secret key with its name; Nix's `SecretKey`. Build one with
 * {@linkcode SigningKey.parse}, {@linkcode SigningKey.readFile} or
 * {@linkcode SigningKey.generate}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SigningKey } from "@nixcas/nixcas/store";
 * const key = await SigningKey.generate("test-1");
 * const again = await SigningKey.parse(key.toSecretKeyFile());
 * const signature = await again.sign("hello");
 * assert.equal(signature.name, "test-1");
 * assert(await key.publicKey.verify("hello", signature.data));
 * ```
 */
export class SigningKey {
  /** The key's name, which its signatures carry. */
  readonly name: string;
  /** The public half, to check this key's signatures. */
  readonly publicKey: PublicKey;
  readonly #seed: Uint8Array;
  readonly #key: CryptoKey;

  private constructor(name: string, seed: Uint8Array, key: CryptoKey, publicKey: PublicKey) {
    this.name = name;
    this.#seed = seed;
    this.#key = key;
    this.publicKey = publicKey;
  }

  static async #fromSeed(
    name: string,
    seed: Uint8Array,
  ): Promise<{ key: CryptoKey; publicKey: PublicKey }> {
    const pkcs8 = new Uint8Array([...PKCS8_PREFIX, ...seed]);
    // Extractable only to learn the public half once; the CryptoKey never leaves this object.
    const key = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, true, ["sign"]);
    const jwk = await crypto.subtle.exportKey("jwk", key);
    const x = jwk.x!.replaceAll("-", "+").replaceAll("_", "/");
    return {
      key,
      publicKey: new PublicKey(name, fromBase64(x + "=".repeat((4 - x.length % 4) % 4))),
    };
  }

  /**
   * Parses `NAME:base64(64 bytes)` (32-byte seed, then the 32-byte public key), the secret key
   * file `nix-store --generate-binary-cache-key` writes. `source` (a file name) is named in
   * errors; a public half that is not the seed's is refused.
   */
  static async parse(text: string, source?: string): Promise<SigningKey> {
    const { name, bytes } = splitKey(text, "secret key", source, SECRET_KEY_LEN);
    const seed = bytes.slice(0, 32);
    const { key, publicKey } = await SigningKey.#fromSeed(name, seed);
    if (!publicKey.key.every((b, i) => b === bytes[32 + i])) {
      throw new SignatureError(
        `secret key ${JSON.stringify(clip(name))}${source ? ` (${source})` : ""}: its last 32 ` +
          `bytes are not the public key of its seed (corrupt key)`,
      );
    }
    return new SigningKey(name, seed, key, publicKey);
  }

  /** Reads and parses a secret key file. */
  static async readFile(path: string): Promise<SigningKey> {
    return SigningKey.parse(await readKeyFile(path, "secret key"), path);
  }

  /** A new random key named `name`, as `nix-store --generate-binary-cache-key` makes. */
  static async generate(name: string): Promise<SigningKey> {
    new PublicKey(name, new Uint8Array(PUBLIC_KEY_LEN)); // checks the name
    const seed = crypto.getRandomValues(new Uint8Array(32));
    const { key, publicKey } = await SigningKey.#fromSeed(name, seed);
    return new SigningKey(name, seed, key, publicKey);
  }

  /** The ed25519 signature of `data` by this key, named by it. */
  async sign(data: Uint8Array | string): Promise<NARInfo_Signature> {
    const sig = await crypto.subtle.sign("Ed25519", this.#key, asBytes(data));
    return {
      $typeName: "tvix.store.v1.NARInfo.Signature",
      name: this.name,
      data: new Uint8Array(sig),
    };
  }

  /** `NAME:base64(seed + public key)`: the secret key file's contents. Keep it secret. */
  toSecretKeyFile(): string {
    return `${this.name}:${toBase64(new Uint8Array([...this.#seed, ...this.publicKey.key]))}`;
  }
}

/**
 * Parses a signature `NAME:base64(64 bytes)`, as in a narinfo `Sig:` line. Throws
 * {@linkcode SignatureError}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatSignature, parseSignature } from "@nixcas/nixcas/store";
 * const text = "test-key-1:" + btoa(String.fromCharCode(...new Uint8Array(64).fill(1)));
 * const signature = parseSignature(text);
 * assert.equal(signature.name, "test-key-1");
 * assert.equal(signature.data.length, 64);
 * assert.equal(formatSignature(signature), text);
 * ```
 */
export function parseSignature(text: string, source?: string): NARInfo_Signature {
  const { name, bytes } = splitKey(text, "signature", source, SIGNATURE_LEN);
  return { $typeName: "tvix.store.v1.NARInfo.Signature", name, data: bytes };
}

/**
 * Prints a signature as `NAME:base64`, the `Sig:` form.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatSignature } from "@nixcas/nixcas/store";
 * const text = formatSignature({
 *   $typeName: "tvix.store.v1.NARInfo.Signature",
 *   name: "k-1",
 *   data: new Uint8Array(64),
 * });
 * assert.equal(text, "k-1:" + "A".repeat(86) + "==");
 * ```
 */
export function formatSignature(signature: NARInfo_Signature): string {
  return `${signature.name}:${toBase64(signature.data)}`;
}

/**
 * Parses a `trusted-public-keys` value: keys `NAME:base64` separated by whitespace. `source`
 * is named in errors.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseTrustedPublicKeys } from "@nixcas/nixcas/store";
 * const keys = parseTrustedPublicKeys(
 *   "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY= " +
 *     "test-1:JR6mgzsqN9yGs+VdiibWtanpeGwjNhAyF8sHtotJllQ=",
 * );
 * assert.deepEqual(keys.map((k) => k.name), ["cache.nixos.org-1", "test-1"]);
 * ```
 */
export function parseTrustedPublicKeys(text: string, source?: string): PublicKey[] {
  return text.split(/\s+/).filter((t) => t !== "").map((t, i) =>
    PublicKey.parse(t, `${source ?? "trusted public keys"}, key ${i + 1}`)
  );
}

/** The fields the fingerprint covers, from either shape. */
function fingerprintFields(info: PathInfo | NarInfo): {
  storePath: StorePath;
  narSha256: Uint8Array;
  narSize: bigint;
  references: string[];
  signatures: NARInfo_Signature[];
  ca?: NARInfo_CA;
} {
  if ("$typeName" in info) {
    const storePath = validatePathInfo(info);
    const n = info.narinfo;
    if (!n) {
      throw new InvalidRequestError(
        `store path ${storePath.absolute}: its PathInfo has no narinfo (NAR hash and size)`,
      );
    }
    return {
      storePath,
      narSha256: n.narSha256,
      narSize: n.narSize,
      references: n.referenceNames,
      signatures: n.signatures,
      ca: n.ca,
    };
  }
  return {
    storePath: info.storePath,
    narSha256: info.narHash,
    narSize: BigInt(info.narSize),
    references: info.references.map((r) => r.toString()),
    signatures: info.signatures,
    ca: info.ca,
  };
}

/**
 * The text a narinfo signature signs (Nix's `ValidPathInfo::fingerprint`):
 * `1;<store path>;sha256:<nix32 NAR hash>;<NAR size>;<references>`, the references absolute,
 * sorted and comma-separated. Takes a {@linkcode PathInfo} (validated first) or a
 * {@linkcode NarInfo}. Throws when the NAR size is 0, as Nix does.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fingerprint, parseNarInfo } from "@nixcas/nixcas/store";
 * const info = parseNarInfo(
 *   "StorePath: /nix/store/7miv20xnra0vbbwpqb42fwcqh4fql0sx-b\n" +
 *     "URL: nar/0g9yqhy8gal5w3bi2ndq5y7fd1kz35g963dy17d6s737qr8xkyw6.nar\n" +
 *     "NarHash: sha256:0g9yqhy8gal5w3bi2ndq5y7fd1kz35g963dy17d6s737qr8xkyw6\n" +
 *     "NarSize: 168\n" +
 *     "References: 12wigjpizrn8axaqxj288q1b751qmwya-a\n",
 * );
 * assert.equal(
 *   fingerprint(info),
 *   "1;/nix/store/7miv20xnra0vbbwpqb42fwcqh4fql0sx-b;" +
 *     "sha256:0g9yqhy8gal5w3bi2ndq5y7fd1kz35g963dy17d6s737qr8xkyw6;168;" +
 *     "/nix/store/12wigjpizrn8axaqxj288q1b751qmwya-a",
 * );
 * ```
 */
export function fingerprint(info: PathInfo | NarInfo): string {
  const f = fingerprintFields(info);
  if (f.narSize === 0n) {
    throw new InvalidRequestError(
      `cannot calculate the fingerprint of ${f.storePath.absolute}: its NAR size is not known (0)`,
    );
  }
  if (f.narSha256.length !== 32) {
    throw new InvalidRequestError(
      `cannot calculate the fingerprint of ${f.storePath.absolute}: its NAR sha256 is ` +
        `${f.narSha256.length} bytes (want 32)`,
    );
  }
  // Nix's references are a set of store paths, printed in order, each once.
  const refs = [...new Set(f.references)].sort().map((r) => `/nix/store/${r}`);
  return `1;${f.storePath.absolute};sha256:${nixbase32(f.narSha256)};${f.narSize};${
    refs.join(",")
  }`;
}

/** `signatures` with `more` appended, each (name and data) once. */
function mergeSignatures(
  signatures: readonly NARInfo_Signature[],
  more: NARInfo_Signature,
): NARInfo_Signature[] {
  const same = (s: NARInfo_Signature) =>
    s.name === more.name && s.data.length === more.data.length &&
    s.data.every((b, i) => b === more.data[i]);
  return signatures.some(same) ? [...signatures] : [...signatures, more];
}

/**
 * Signs a PathInfo or narinfo with `key` (Nix's `ValidPathInfo::sign`): returns a copy with the
 * signature of its {@linkcode fingerprint} added, unless that same signature is already there.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { makePathInfo, signPathInfo, SigningKey, sourceStorePath } from "@nixcas/nixcas/store";
 * const key = await SigningKey.generate("test-1");
 * const info = makePathInfo({
 *   storePath: sourceStorePath("hello", new Uint8Array(32)),
 *   node: {
 *     case: "symlink",
 *     value: {
 *       $typeName: "tvix.castore.v1.SymlinkNode",
 *       name: new Uint8Array(),
 *       target: new TextEncoder().encode("/etc/hosts"),
 *     },
 *   },
 *   narSize: 120,
 *   narSha256: new Uint8Array(32),
 * });
 * const signed = await signPathInfo(info, key);
 * assert.deepEqual(signed.narinfo?.signatures.map((s) => s.name), ["test-1"]);
 * const twice = await signPathInfo(signed, key); // ed25519 is deterministic: no duplicate
 * assert.equal(twice.narinfo?.signatures.length, 1);
 * ```
 */
export async function signPathInfo<T extends PathInfo | NarInfo>(
  info: T,
  key: SigningKey,
): Promise<T> {
  const signature = await key.sign(fingerprint(info));
  if ("$typeName" in info) {
    const n = info.narinfo!;
    return { ...info, narinfo: { ...n, signatures: mergeSignatures(n.signatures, signature) } };
  }
  return { ...info, signatures: mergeSignatures(info.signatures, signature) };
}

/**
 * Why a path is trusted, or why not: {@linkcode verifyPathInfo}'s answer.
 *
 * - `by: "signature"`: a signature by the trusted key `keyName` verifies.
 * - `by: "content-address"`: the path is the one its `CA` implies, so it needs no signature.
 *   `contentChecked` is true for `fixed:r:sha256`, whose digest is the NAR hash (checked);
 *   for other kinds the importer must still hash the content and compare
 *   (`verifyContentAddress` with `contentDigest`), as Nix does when it adds the path.
 * - `valid: false`: `reason` says which signatures were there and why none counted.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Verification } from "@nixcas/nixcas/store";
 * const v: Verification = { valid: false, reason: "no signatures" };
 * assert.equal(v.valid, false);
 * ```
 */
export type Verification =
  | { valid: true; by: "signature"; keyName: string }
  | { valid: true; by: "content-address"; contentChecked: boolean }
  | { valid: false; reason: string };

/**
 * Checks a PathInfo or narinfo as Nix's `checkSignatures` does before it accepts a path: valid
 * when it is content-addressed (its `CA` gives its store path; on by default, turn off with
 * `contentAddressed: false`) or when a signature by one of `trustedKeys` (matched by name)
 * verifies over its {@linkcode fingerprint}. Malformed input (no narinfo, bad PathInfo) throws;
 * a bad signature is not an error, just not valid.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseNarInfo, signPathInfo, SigningKey, verifyPathInfo } from "@nixcas/nixcas/store";
 * const key = await SigningKey.generate("test-1");
 * const info = parseNarInfo(
 *   "StorePath: /nix/store/hrqg8lajc5akb1nykmbwf6jiffn3ammq-hello\n" +
 *     "URL: nar/1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h.nar\n" +
 *     "NarHash: sha256:1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h\n" +
 *     "NarSize: 120\n" +
 *     "References: \n",
 * );
 * assert.equal((await verifyPathInfo(info, [key.publicKey])).valid, false); // unsigned
 * const signed = await signPathInfo(info, key);
 * assert.deepEqual(await verifyPathInfo(signed, [key.publicKey]), {
 *   valid: true,
 *   by: "signature",
 *   keyName: "test-1",
 * });
 * const other = await SigningKey.generate("test-1"); // same name, other key
 * assert.equal((await verifyPathInfo(signed, [other.publicKey])).valid, false);
 * ```
 */
export async function verifyPathInfo(
  info: PathInfo | NarInfo,
  trustedKeys: readonly PublicKey[],
  options: { contentAddressed?: boolean } = {},
): Promise<Verification> {
  const f = fingerprintFields(info);
  const notes: string[] = [];
  if (f.ca && options.contentAddressed !== false) {
    try {
      verifyContentAddress(
        f.storePath,
        f.ca,
        f.references.map((r) => StorePath.parse(r)),
        { narSha256: f.narSha256 },
      );
      return {
        valid: true,
        by: "content-address",
        contentChecked: f.ca.type === NARInfo_CA_Hash.NAR_SHA256,
      };
    } catch (e) {
      if (!(e instanceof ContentAddressError)) throw e;
      notes.push(`its CA ${describeCa(f.ca)} does not hold (${e.message})`);
    }
  }
  if (f.signatures.length === 0) notes.push("it has no signatures");
  else {
    const text = fingerprint(info);
    for (const s of f.signatures) {
      const keys = trustedKeys.filter((k) => k.name === s.name);
      if (keys.length === 0) {
        notes.push(`signature by ${JSON.stringify(clip(s.name))}: not a trusted key`);
        continue;
      }
      for (const k of keys) {
        if (await k.verify(text, s.data)) return { valid: true, by: "signature", keyName: k.name };
      }
      notes.push(`signature by ${JSON.stringify(clip(s.name))}: does not verify`);
    }
  }
  return {
    valid: false,
    reason: `store path ${f.storePath.absolute} is not trusted: ${notes.join("; ")}`,
  };
}

function describeCa(ca: NARInfo_CA): string {
  try {
    return renderContentAddress(ca);
  } catch {
    return `(type ${ca.type}, ${ca.digest.length} bytes)`;
  }
}
