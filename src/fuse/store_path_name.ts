/**
 * Parsing of store path basenames (`<32 nixbase32 chars>-<name>`) for root lookups. A small
 * local helper until the store path module is shared.
 *
 * @module
 */

const ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz";
const NAME_RE = /^[A-Za-z0-9+\-._?=]{1,211}$/;

/** Decodes Nix base32 into `outLen` bytes; null when a character or the padding is invalid. */
export function decodeNixBase32(s: string, outLen: number): Uint8Array | null {
  const out = new Uint8Array(outLen);
  for (let n = 0; n < s.length; n++) {
    const digit = ALPHABET.indexOf(s[s.length - 1 - n]);
    if (digit < 0) return null;
    const b = n * 5, i = b >> 3, j = b & 7;
    out[i] |= (digit << j) & 0xff;
    const carry = digit >> (8 - j);
    if (i + 1 < outLen) out[i + 1] |= carry;
    else if (carry) return null;
  }
  return out;
}

/** Encodes bytes in Nix base32 (20 bytes give 32 characters). */
export function encodeNixBase32(bytes: Uint8Array): string {
  const len = Math.ceil(bytes.length * 8 / 5);
  let s = "";
  for (let n = len - 1; n >= 0; n--) {
    const b = n * 5, i = b >> 3, j = b & 7;
    const c = (bytes[i] >> j) | (i + 1 < bytes.length ? bytes[i + 1] << (8 - j) : 0);
    s += ALPHABET[c & 31];
  }
  return s;
}

/** A parsed store path basename. */
export interface StorePathName {
  /** The 20-byte digest that keys the PathInfo. */
  digest: Uint8Array;
  /** The name after the dash. */
  name: string;
}

/** Parses a store path basename given as raw bytes; null when it is not one. */
export function parseStorePathBasename(raw: Uint8Array): StorePathName | null {
  if (raw.length < 34 || raw[32] !== 0x2d) return null;
  for (const b of raw) if (b >= 0x80) return null;
  const s = String.fromCharCode(...raw);
  const name = s.slice(33);
  if (!NAME_RE.test(name)) return null;
  const digest = decodeNixBase32(s.slice(0, 32), 20);
  return digest ? { digest, name } : null;
}
