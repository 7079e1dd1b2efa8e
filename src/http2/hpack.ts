/**
 * HPACK (RFC 7541), the header compression of HTTP/2: a decoder with the dynamic table and
 * Huffman-coded strings, as peers send them, and an encoder that only writes literals never
 * indexed (no dynamic table, no Huffman), which every decoder accepts and costs nothing to keep.
 *
 * @module
 */

/** A header field: name (lower case) and value. */
export type HeaderField = [name: string, value: string];

/** A malformed header block: a connection error (COMPRESSION_ERROR) for HTTP/2. */
export class HpackError extends Error {
  /** Creates the error; `message` says what is malformed. */
  constructor(message: string) {
    super(`HPACK: ${message}`);
    this.name = "HpackError";
  }
}

/** The static table (RFC 7541 Appendix A), index 1 first. */
const STATIC: readonly HeaderField[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];

/**
 * Code lengths of the Huffman code (RFC 7541 Appendix B) for bytes 0–255; EOS (256) is 30 bits.
 * The code is canonical, so the lengths determine it: codes are handed out in order of length,
 * then of symbol.
 */
// deno-fmt-ignore
const HUFFMAN_LENGTHS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30,
];

/**
 * The decoding tree, as flat arrays: node `n` has children `CHILD[2n]` (bit 0) and
 * `CHILD[2n + 1]` (bit 1); a child below 0 is the leaf of symbol `~child`.
 */
const CHILD: Int32Array = (() => {
  const order = HUFFMAN_LENGTHS.map((len, sym) => [len, sym]).sort((a, b) =>
    a[0] - b[0] || a[1] - b[1]
  );
  const child = new Int32Array(2 * 512);
  let nodes = 1;
  let code = 0;
  let prevLen = order[0][0];
  for (const [len, sym] of order) {
    code <<= len - prevLen;
    prevLen = len;
    let n = 0;
    for (let bit = len - 1; bit > 0; bit--) {
      const slot = 2 * n + ((code >>> bit) & 1);
      if (child[slot] === 0) child[slot] = nodes++;
      n = child[slot];
    }
    child[2 * n + (code & 1)] = ~sym;
    code++;
  }
  return child;
})();

/**
 * Decodes a Huffman-coded string. Padding longer than 7 bits, padding that is not all ones, or
 * an EOS symbol in the data is an error (RFC 7541 section 5.2).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { huffmanDecode } from "./hpack.ts";
 * // RFC 7541 C.4.1: "www.example.com"
 * const coded = Uint8Array.from([0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff]);
 * assert.equal(huffmanDecode(coded), "www.example.com");
 * ```
 */
export function huffmanDecode(data: Uint8Array): string {
  let out = "";
  let node = 0;
  let depth = 0; // bits since the last symbol
  let ones = true; // those bits were all ones
  for (const byte of data) {
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >>> bit) & 1;
      const next = CHILD[2 * node + b];
      depth++;
      ones &&= b === 1;
      if (next < 0) {
        const sym = ~next;
        if (sym === 256) throw new HpackError("EOS in a Huffman-coded string");
        out += String.fromCharCode(sym);
        node = 0;
        depth = 0;
        ones = true;
      } else {
        node = next;
      }
    }
  }
  if (depth > 7 || !ones) throw new HpackError("bad padding of a Huffman-coded string");
  return out;
}

/** Per-entry overhead of the dynamic table (RFC 7541 section 4.1). */
const ENTRY_OVERHEAD = 32;

/**
 * Decodes header blocks of one connection, keeping its dynamic table. A malformed block throws
 * {@linkcode HpackError}; the connection must then be closed, since the table may be out of step.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeHeaders, HpackDecoder } from "./hpack.ts";
 * const decoder = new HpackDecoder();
 * // RFC 7541 C.3.1: indexed fields and a literal added to the dynamic table
 * const block = Uint8Array.from([0x82, 0x86, 0x84, 0x41, 0x0f, ...new TextEncoder().encode("www.example.com")]);
 * assert.deepEqual(decoder.decode(block), [
 *   [":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"],
 * ]);
 * // ... and C.3.2, which refers to that entry (index 62)
 * assert.deepEqual(decoder.decode(Uint8Array.from([0x82, 0x86, 0x84, 0xbe, 0x58, 0x08,
 *   ...new TextEncoder().encode("no-cache")])).slice(3), [
 *   [":authority", "www.example.com"], ["cache-control", "no-cache"],
 * ]);
 * assert.deepEqual(decoder.decode(encodeHeaders([["x-a", "1"]])), [["x-a", "1"]]);
 * ```
 */
export class HpackDecoder {
  #table: HeaderField[] = []; // newest first
  #size = 0;
  #max: number;
  #limit: number;
  #maxListSize: number;

  /**
   * A decoder whose table may grow to `tableSize` bytes (our SETTINGS_HEADER_TABLE_SIZE), and
   * that refuses blocks decoding to more than `maxListSize` bytes of fields.
   */
  constructor(tableSize = 4096, maxListSize = 256 << 10) {
    this.#max = tableSize;
    this.#limit = tableSize;
    this.#maxListSize = maxListSize;
  }

  /** Decodes one complete header block. */
  decode(block: Uint8Array): HeaderField[] {
    const out: HeaderField[] = [];
    let listSize = 0;
    let o = 0;
    const int = (prefixBits: number): number => {
      if (o >= block.length) throw new HpackError("truncated integer");
      const mask = (1 << prefixBits) - 1;
      let v = block[o++] & mask;
      if (v < mask) return v;
      let shift = 0;
      for (;;) {
        if (o >= block.length) throw new HpackError("truncated integer");
        const b = block[o++];
        v += (b & 0x7f) * 2 ** shift;
        if (v > 0x7fffffff) throw new HpackError("integer too large");
        if ((b & 0x80) === 0) return v;
        shift += 7;
      }
    };
    const str = (): string => {
      if (o >= block.length) throw new HpackError("truncated string");
      const huffman = (block[o] & 0x80) !== 0;
      const len = int(7);
      if (len > block.length - o) throw new HpackError("string longer than the block");
      const raw = block.subarray(o, o + len);
      o += len;
      if (huffman) return huffmanDecode(raw);
      let s = "";
      for (const b of raw) s += String.fromCharCode(b);
      return s;
    };
    const entry = (index: number): HeaderField => {
      if (index >= 1 && index <= STATIC.length) return STATIC[index - 1];
      const d = index - STATIC.length - 1;
      if (d >= 0 && d < this.#table.length) return this.#table[d];
      throw new HpackError(`index ${index} is not in the table`);
    };
    let sawField = false;
    while (o < block.length) {
      const b = block[o];
      let field: HeaderField;
      if (b & 0x80) {
        field = entry(int(7));
      } else if ((b & 0xe0) === 0x20) {
        // A dynamic table size update, only at the start of a block.
        if (sawField) throw new HpackError("table size update after a field");
        const size = int(5);
        if (size > this.#limit) throw new HpackError(`table size ${size} over the limit`);
        this.#max = size;
        this.#evict(0);
        continue;
      } else {
        const indexed = (b & 0xc0) === 0x40; // with incremental indexing
        const index = int(indexed ? 6 : 4);
        const name = index === 0 ? str() : entry(index)[0];
        field = [name, str()];
        if (indexed) this.#add(field);
      }
      sawField = true;
      listSize += field[0].length + field[1].length + ENTRY_OVERHEAD;
      if (listSize > this.#maxListSize) {
        throw new HpackError(`header list over ${this.#maxListSize} bytes`);
      }
      out.push(field);
    }
    return out;
  }

  #add(field: HeaderField): void {
    const size = field[0].length + field[1].length + ENTRY_OVERHEAD;
    this.#evict(size);
    if (size <= this.#max) {
      this.#table.unshift(field);
      this.#size += size;
    }
  }

  #evict(room: number): void {
    while (this.#table.length > 0 && this.#size + room > this.#max) {
      const [n, v] = this.#table.pop()!;
      this.#size -= n.length + v.length + ENTRY_OVERHEAD;
    }
  }
}

/**
 * Encodes header fields as literals never indexed, names and values as raw bytes (Latin-1: each
 * character one byte). Decoders keep no state for them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeHeaders } from "./hpack.ts";
 * // RFC 7541 C.2.3: a literal never indexed with a new name
 * assert.deepEqual(
 *   encodeHeaders([["password", "secret"]]),
 *   Uint8Array.from([0x10, 0x08, ...new TextEncoder().encode("password"), 0x06,
 *     ...new TextEncoder().encode("secret")]),
 * );
 * ```
 */
export function encodeHeaders(fields: readonly HeaderField[]): Uint8Array {
  const out: number[] = [];
  const int = (v: number, prefixBits: number, first: number) => {
    const mask = (1 << prefixBits) - 1;
    if (v < mask) {
      out.push(first | v);
      return;
    }
    out.push(first | mask);
    v -= mask;
    while (v >= 0x80) {
      out.push((v & 0x7f) | 0x80);
      v = Math.floor(v / 0x80);
    }
    out.push(v);
  };
  const str = (s: string) => {
    int(s.length, 7, 0);
    for (let i = 0; i < s.length; i++) out.push(s.charCodeAt(i) & 0xff);
  };
  for (const [name, value] of fields) {
    out.push(0x10);
    str(name);
    str(value);
  }
  return Uint8Array.from(out);
}
