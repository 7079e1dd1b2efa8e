/**
 * Nix's base32: the alphabet `0123456789abcdfghijklmnpqrsvwxyz` (no e, o, u, t) with Nix's bit
 * order, where the last character holds the lowest bits of the first byte. Used for store path
 * digests and printed hashes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nixbase32, StorePath } from "@nixcas/nixcas/store";
 * const path = StorePath.parse("00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60");
 * assert.equal(nixbase32.encode(path.digest), "00bgd045z0d4icpbc2yyz4gx48ak44la");
 * assert.deepEqual(nixbase32.decode("00bgd045z0d4icpbc2yyz4gx48ak44la", 20), path.digest);
 * ```
 *
 * @module
 */
import { InvalidRequestError } from "../base/errors.ts";

/**
 * The 32 characters of Nix's base32, in digit order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nixbase32 } from "@nixcas/nixcas/store";
 * const { NIXBASE32_ALPHABET } = nixbase32;
 * const isNixbase32 = (text: string) => [...text].every((c) => NIXBASE32_ALPHABET.includes(c));
 * assert(isNixbase32("00bgd045z0d4icpbc2yyz4gx48ak44la"));
 * assert.equal(isNixbase32("hello"), false); // no "e" or "o"
 * ```
 */
export const NIXBASE32_ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz";

const DIGIT = new Int8Array(128).fill(-1);
for (let i = 0; i < NIXBASE32_ALPHABET.length; i++) DIGIT[NIXBASE32_ALPHABET.charCodeAt(i)] = i;

/**
 * Number of characters the encoding of `n` bytes takes: ceil(8n / 5).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nixbase32 } from "@nixcas/nixcas/store";
 * assert.equal(nixbase32.encodedLength(20), 32); // a store path digest
 * assert.equal(nixbase32.encodedLength(32), 52); // a SHA-256
 * ```
 */
export function encodedLength(n: number): number {
  return Math.ceil((n * 8) / 5);
}

/**
 * Number of bytes a valid encoding of `n` characters decodes to: floor(5n / 8).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nixbase32 } from "@nixcas/nixcas/store";
 * assert.equal(nixbase32.decodedLength(32), 20);
 * assert.equal(nixbase32.decodedLength(52), 32);
 * ```
 */
export function decodedLength(n: number): number {
  return Math.floor((n * 5) / 8);
}

/**
 * Encodes bytes in Nix base32. Character k, for n = len − 1 − k, holds bits 5n … 5n+4 of the
 * input read as a little-endian number.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nixbase32 } from "@nixcas/nixcas/store";
 * assert.equal(nixbase32.encode(new Uint8Array(20)), "00000000000000000000000000000000");
 * assert.equal(nixbase32.encode(new Uint8Array([0xde, 0xad, 0xbe, 0xef])), "3pvxbfy");
 * ```
 */
export function encode(bytes: Uint8Array): string {
  const len = encodedLength(bytes.length);
  let out = "";
  for (let n = len - 1; n >= 0; n--) {
    const b = n * 5;
    const i = b >> 3;
    const j = b & 7;
    const lo = bytes[i] >> j;
    const hi = i + 1 < bytes.length ? bytes[i + 1] << (8 - j) : 0;
    out += NIXBASE32_ALPHABET[(lo | hi) & 31];
  }
  return out;
}

/**
 * A string is not valid Nix base32; the message names the text and the problem.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nixbase32 } from "@nixcas/nixcas/store";
 * // "e" is not in the alphabet:
 * assert.throws(() => nixbase32.decode("3pvxbfe"), nixbase32.Nixbase32DecodeError);
 * ```
 */
export class Nixbase32DecodeError extends InvalidRequestError {
  /** Creates the error for `text` with the reason. */
  constructor(text: string, reason: string) {
    super(`invalid nixbase32 ${JSON.stringify(text)}: ${reason}`);
    this.name = "Nixbase32DecodeError";
  }
}

/**
 * Decodes Nix base32. Rejects characters outside the alphabet, lengths no byte count encodes to,
 * and set bits beyond the last byte (as Nix does), so every accepted string round-trips.
 * If `expectedBytes` is given, the decoded length must equal it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nixbase32 } from "@nixcas/nixcas/store";
 * assert.deepEqual(nixbase32.decode("3pvxbfy"), new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
 * assert.equal(nixbase32.decode("00bgd045z0d4icpbc2yyz4gx48ak44la", 20).length, 20);
 * assert.throws(() => nixbase32.decode("3pvxbfy", 20)); // 4 bytes, not 20
 * ```
 */
export function decode(text: string, expectedBytes?: number): Uint8Array {
  const outLen = decodedLength(text.length);
  if (encodedLength(outLen) !== text.length) {
    throw new Nixbase32DecodeError(text, `length ${text.length} is not a valid encoded length`);
  }
  if (expectedBytes !== undefined && outLen !== expectedBytes) {
    throw new Nixbase32DecodeError(
      text,
      `length ${text.length} (want ${encodedLength(expectedBytes)} characters)`,
    );
  }
  const out = new Uint8Array(outLen);
  for (let k = 0; k < text.length; k++) {
    const c = text.charCodeAt(k);
    const digit = c < 128 ? DIGIT[c] : -1;
    if (digit < 0) {
      throw new Nixbase32DecodeError(text, `invalid character ${JSON.stringify(text[k])} at ${k}`);
    }
    const b = (text.length - 1 - k) * 5;
    const i = b >> 3;
    const j = b & 7;
    out[i] |= digit << j;
    const carry = digit >> (8 - j);
    if (i + 1 < outLen) out[i + 1] |= carry;
    else if (carry !== 0) throw new Nixbase32DecodeError(text, "non-zero padding bits");
  }
  return out;
}
