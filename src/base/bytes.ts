/**
 * Byte helpers every floor uses: byte-wise order, concatenation, hex and base64, and a readable
 * form of raw names for messages.
 *
 * @module
 */

const decoder = new TextDecoder("utf-8", { fatal: true });
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/**
 * Byte-wise comparison of two names (negative, zero, positive), the order castore uses.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { compareBytes } from "./bytes.ts";
 * const names = ["b", "B", "a", "ab"].map((n) => new TextEncoder().encode(n));
 * names.sort(compareBytes);
 * assert.deepEqual(names.map((n) => new TextDecoder().decode(n)), ["B", "a", "ab", "b"]);
 * ```
 */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}

/**
 * A node name for messages: JSON-quoted UTF-8 when it is, base64 otherwise.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { displayName } from "./bytes.ts";
 * assert.equal(displayName(new TextEncoder().encode("bin")), "\"bin\"");
 * assert.equal(displayName(new Uint8Array([0xff])), "base64:/w==");
 * ```
 */
export function displayName(name: Uint8Array): string {
  try {
    return JSON.stringify(decoder.decode(name));
  } catch {
    return `base64:${toBase64(name)}`;
  }
}

/**
 * Concatenates byte arrays.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { concat } from "./bytes.ts";
 * const enc = new TextEncoder();
 * const bytes = concat([enc.encode("Hello, "), enc.encode("world!")]);
 * assert.equal(new TextDecoder().decode(bytes), "Hello, world!");
 * ```
 */
export function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * Lower-case hex of some bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { toHex } from "./bytes.ts";
 * assert.equal(toHex(new Uint8Array([0, 15, 171, 255])), "000fabff");
 * ```
 */
export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += HEX[b];
  return s;
}

/**
 * Standard base64 (with padding) of some bytes, as tvix prints digests.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { toBase64 } from "./bytes.ts";
 * assert.equal(toBase64(new TextEncoder().encode("hi")), "aGk=");
 * assert.equal(toBase64(new Uint8Array([0xfb, 0xff])), "+/8=");
 * ```
 */
export function toBase64(bytes: Uint8Array): string {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

/**
 * Decodes standard base64.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fromBase64 } from "./bytes.ts";
 * assert.equal(new TextDecoder().decode(fromBase64("aGk=")), "hi");
 * ```
 */
export function fromBase64(text: string): Uint8Array {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
