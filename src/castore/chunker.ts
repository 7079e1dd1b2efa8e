/**
 * Content-defined chunking (FastCDC, normalized chunking level 2) of blobs into chunks that
 * are stored and verified by their own BLAKE3 digests.
 *
 * @module
 */

/** Chunk size limits in bytes; `avg` must be a power of two. */
export interface ChunkingParams {
  /** No cut before this many bytes (except at the end of the blob). */
  min: number;
  /** The size the cut-point masks aim at. */
  avg: number;
  /** A chunk is cut here at the latest. */
  max: number;
}

/**
 * 256 KiB / 1 MiB / 4 MiB: snix's and Attic's ratios (min = avg / 4, max = avg × 4) at a 1 MiB
 * average, so a random read over gRPC costs about one 1 MiB chunk. Changing these (or the gear
 * table) changes where blobs are cut, which costs deduplication against chunks stored before,
 * never correctness: every chunk is addressed by its own digest.
 */
export const DEFAULT_CHUNKING: ChunkingParams = { min: 256 << 10, avg: 1 << 20, max: 4 << 20 };

/** 256 pseudo-random 32-bit values (splitmix32 from a fixed seed): the rolling hash's gear. */
const GEAR = (() => {
  const t = new Int32Array(256);
  let s = 0x6e697863; // "nixc"
  for (let i = 0; i < 256; i++) {
    s = (s + 0x9e3779b9) | 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    t[i] = z ^ (z >>> 16);
  }
  return t;
})();

/** A mask of the top `bits` bits of a 32-bit hash (the bits that depend on the most input). */
function topMask(bits: number): number {
  return bits >= 32 ? -1 : (~0 << (32 - bits)) | 0;
}

/** The first `i + 1` in `[from, stop)` where the rolling hash hits `mask`, else -1. */
function scan(
  data: Uint8Array,
  from: number,
  stop: number,
  h: number,
  mask: number,
  gear: Int32Array,
): number {
  for (let i = from; i < stop; i++) {
    h = ((h << 1) + gear[data[i]]) | 0;
    if ((h & mask) === 0) return i + 1;
  }
  return -1;
}

/**
 * Where the chunk starting at `start` ends (exclusive), looking at `data[start..end)`. When
 * fewer than `max` bytes are available and `final` is false, returns -1 if no cut point was
 * found yet (more data may move it).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cutPoint, DEFAULT_CHUNKING } from "./chunker.ts";
 * const small = new Uint8Array(1000);
 * assert.equal(cutPoint(small, 0, small.length, DEFAULT_CHUNKING, true), 1000);
 * assert.equal(cutPoint(small, 0, small.length, DEFAULT_CHUNKING, false), -1);
 * ```
 */
export function cutPoint(
  data: Uint8Array,
  start: number,
  end: number,
  p: ChunkingParams = DEFAULT_CHUNKING,
  final = true,
): number {
  const avail = end - start;
  if (avail <= p.min) return final ? end : -1;
  const bits = Math.round(Math.log2(p.avg));
  const maskS = topMask(bits + 2);
  const maskL = topMask(bits - 2);
  const n = Math.min(avail, p.max);
  const normal = Math.min(n, p.avg);
  const stopS = start + normal;
  const stopL = start + n;
  // The hash starts at `min`: bytes before it never decide a cut. It restarts at `avg` too,
  // which only matters for 32 bytes (a 32-bit gear hash forgets older bytes anyway).
  const s = scan(data, start + p.min, stopS, 0, maskS, GEAR);
  if (s >= 0) return s;
  const l = scan(data, stopS, stopL, 0, maskL, GEAR);
  if (l >= 0) return l;
  if (n === p.max || final) return stopL;
  return -1;
}

/**
 * Cuts a whole buffer into chunks (subarrays of `data`, no copies). An empty buffer is one
 * empty chunk.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { chunkBuffer, DEFAULT_CHUNKING } from "./chunker.ts";
 * const data = new Uint8Array(10 << 20);
 * for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
 * const chunks = chunkBuffer(data);
 * assert.equal(chunks.reduce((n, c) => n + c.length, 0), data.length);
 * for (const c of chunks.slice(0, -1)) assert.ok(c.length >= DEFAULT_CHUNKING.min);
 * for (const c of chunks) assert.ok(c.length <= DEFAULT_CHUNKING.max);
 * ```
 */
export function chunkBuffer(
  data: Uint8Array,
  p: ChunkingParams = DEFAULT_CHUNKING,
): Uint8Array[] {
  if (data.length === 0) return [data];
  const out: Uint8Array[] = [];
  for (let o = 0; o < data.length;) {
    const e = cutPoint(data, o, data.length, p, true);
    out.push(data.subarray(o, e));
    o = e;
  }
  return out;
}

/**
 * A streaming chunker: push bytes as they arrive, get complete chunks back; `finish` returns
 * the rest. Cuts exactly where {@linkcode chunkBuffer} cuts the concatenation. Holds at most
 * `max` bytes plus the last push.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { chunkBuffer, Chunker } from "./chunker.ts";
 * const data = new Uint8Array(9 << 20);
 * for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
 * const c = new Chunker();
 * const got: Uint8Array[] = [];
 * for (let o = 0; o < data.length; o += 100_000) got.push(...c.push(data.subarray(o, o + 100_000)));
 * got.push(...c.finish());
 * assert.deepEqual(got.map((x) => x.length), chunkBuffer(data).map((x) => x.length));
 * ```
 */
export class Chunker {
  #p: ChunkingParams;
  #buf: Uint8Array;
  #len = 0;

  /** A chunker with the given limits (default {@linkcode DEFAULT_CHUNKING}). */
  constructor(p: ChunkingParams = DEFAULT_CHUNKING) {
    this.#p = p;
    this.#buf = new Uint8Array(p.max * 2);
  }

  /** Adds bytes; returns the chunks they completed (copies, the caller owns them). */
  push(data: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let o = 0;
    while (o < data.length) {
      const take = Math.min(data.length - o, this.#buf.length - this.#len);
      this.#buf.set(data.subarray(o, o + take), this.#len);
      this.#len += take;
      o += take;
      this.#drain(out, false);
    }
    return out;
  }

  /** The remaining chunks at the end of the blob (none for an empty blob). */
  finish(): Uint8Array[] {
    const out: Uint8Array[] = [];
    this.#drain(out, true);
    return out;
  }

  #drain(out: Uint8Array[], final: boolean) {
    let start = 0;
    for (;;) {
      if (start >= this.#len) break;
      const e = cutPoint(this.#buf, start, this.#len, this.#p, final);
      if (e < 0) break;
      out.push(this.#buf.slice(start, e));
      start = e;
    }
    this.#buf.copyWithin(0, start, this.#len);
    this.#len -= start;
  }
}
