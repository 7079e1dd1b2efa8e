/**
 * Verified reads: readers that check each chunk (or a whole unchunked blob) against its BLAKE3
 * digest before any of its bytes reaches the caller, for every backend.
 *
 * @module
 */
import { concat } from "../base/bytes.ts";
import { CorruptDataError, StorageError } from "../base/errors.ts";
import {
  B3Digest,
  blake3,
  type Blake3Hasher,
  blake3WindowCV,
  createBlake3Hasher,
} from "./digest.ts";
import { Blake3 } from "../hash/blake3.ts";
import { largeBuffer } from "../sys/libc.ts";
import {
  type BlobReader,
  type BlobService,
  CHUNK_SIZE,
  type ChunkMeta,
  type DeferredRead,
  type SmallRead,
} from "./blob_service.ts";

/**
 * Throws {@linkcode CorruptDataError} naming `digest` unless `data` hashes to it (and has
 * `size` bytes, when given). `what` is "blob" or "chunk"; `context` is added in parentheses.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CorruptDataError } from "@nixcas/nixcas";
 * import { blake3 } from "@nixcas/nixcas/castore";
 * import { checkDigest } from "./verify.ts";
 * const data = new TextEncoder().encode("hello");
 * checkDigest(data, blake3(data));
 * data[0] ^= 1;
 * assert.throws(() => checkDigest(data, blake3(new TextEncoder().encode("hello"))), CorruptDataError);
 * ```
 */
export function checkDigest(
  data: Uint8Array,
  digest: B3Digest,
  what = "blob",
  size?: number,
  context = "",
): void {
  const where = context ? ` (${context})` : "";
  if (size !== undefined && data.length !== size) {
    throw new CorruptDataError(
      digest.toString(),
      `${what} ${digest} is corrupt: ${data.length} bytes instead of ${size}${where}`,
    );
  }
  const got = blake3(data);
  if (!got.equals(digest)) {
    throw new CorruptDataError(
      digest.toString(),
      `${what} ${digest} is corrupt: its bytes hash to ${got}${where}`,
    );
  }
}

/**
 * {@linkcode BlobService.chunks} on any backend: a backend without it answers `[]` for a stored
 * blob (unchunked) and null for an absent one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService } from "@nixcas/nixcas/backends";
 * import { B3Digest, blobChunks, putBlob } from "@nixcas/nixcas/castore";
 * const blobs = new MemoryBlobService();
 * const digest = await putBlob(blobs, new TextEncoder().encode("small"));
 * assert.deepEqual(await blobChunks(blobs, digest), []); // one chunk
 * assert.equal(await blobChunks(blobs, B3Digest.fromBytes(new Uint8Array(32))), null);
 * ```
 */
export async function blobChunks(
  blobs: BlobService,
  digest: B3Digest,
): Promise<ChunkMeta[] | null> {
  if (blobs.chunks) return await blobs.chunks(digest);
  return (await blobs.has(digest)) ? [] : null;
}

/**
 * Opens a blob (or chunk) for reading with every byte verified: the backend's own reader when
 * it verifies ({@linkcode BlobService.verifiesReads}), else that reader wrapped in
 * {@linkcode verifyingReader}. Null when absent.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService } from "@nixcas/nixcas/backends";
 * import { openVerifiedRead, putBlob } from "@nixcas/nixcas/castore";
 * const blobs = new MemoryBlobService();
 * const digest = await putBlob(blobs, new TextEncoder().encode("hi"));
 * const r = (await openVerifiedRead(blobs, digest))!;
 * assert.equal(new TextDecoder().decode(await r.readAt(0, 2)), "hi");
 * await r.close();
 * ```
 */
export async function openVerifiedRead(
  blobs: BlobService,
  digest: B3Digest,
): Promise<BlobReader | null> {
  if (blobs.verifiesReads) return await blobs.openRead(digest);
  const chunks = await blobChunks(blobs, digest);
  if (!chunks) return null;
  const reader = await blobs.openRead(digest);
  if (!reader) return null;
  return verifyingReader(reader, digest, chunks);
}

/**
 * Small blobs read together by {@linkcode readSmallBlobs}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService } from "@nixcas/nixcas/backends";
 * import { putBlob, readSmallBlobs, type SmallBlobs } from "@nixcas/nixcas/castore";
 * const blobs = new MemoryBlobService();
 * const data = new TextEncoder().encode("hi");
 * const got: SmallBlobs = await readSmallBlobs(blobs, [{ digest: await putBlob(blobs, data), size: 2 }]);
 * assert.deepEqual(await got.get(0), data);
 * ```
 */
export interface SmallBlobs {
  /**
   * Request `i`'s bytes, checked against its digest first (a mismatch throws
   * {@linkcode CorruptDataError} naming it), or null when the blob must be read with
   * {@linkcode openVerifiedRead} instead (absent, another size, or not stored as a small blob).
   * From a backend with {@linkcode BlobService.readSmall}, the bytes are a view of `into`.
   */
  get(i: number): Promise<Uint8Array | null>;
}

/**
 * Reads small blobs (each at most {@linkcode CHUNK_SIZE}) in one go where the backend can
 * ({@linkcode BlobService.readSmall}: one lookup and one read for neighbours, instead of a
 * reader per blob), else one {@linkcode readBlob}-like read each. Every blob is checked against
 * its digest when it is taken, before any of its bytes is handed out. `into` (at least the sum
 * of the sizes) receives them back to back; without it, a buffer is allocated.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SqliteBlobService } from "@nixcas/nixcas/backends";
 * import { blake3, putBlob, readSmallBlobs } from "@nixcas/nixcas/castore";
 * const blobs = new SqliteBlobService(":memory:");
 * const a = new Uint8Array(10_000).fill(1);
 * await putBlob(blobs, a);
 * const missing = blake3(new Uint8Array(3));
 * const got = await readSmallBlobs(blobs, [
 *   { digest: blake3(a), size: a.length },
 *   { digest: missing, size: 3 },
 * ]);
 * assert.deepEqual(await got.get(0), a);
 * assert.equal(await got.get(1), null); // absent: openVerifiedRead says so
 * await blobs.close();
 * ```
 */
export async function readSmallBlobs(
  blobs: BlobService,
  requests: readonly SmallRead[],
  into?: Uint8Array,
  options: ReadSmallOptions = {},
): Promise<SmallBlobs> {
  let total = 0;
  for (const r of requests) total += r.size;
  const buf = into ?? new Uint8Array(total);
  if (buf.length < total) {
    throw new RangeError(`readSmallBlobs: ${total} bytes do not fit in ${buf.length}`);
  }
  if (!blobs.readSmall) {
    // One verified read each, all started at once.
    const reads = requests.map((r) => readWhole(blobs, r));
    for (const p of reads) p.catch(() => {}); // observed by get()
    return { get: (i) => reads[i] };
  }
  // A checker that also reads takes the backend's reads over (one message per batch).
  const checker = options.checker;
  const shared = buf.buffer instanceof SharedArrayBuffer;
  let deferred: DeferredRead | null = null;
  const hooks = checker?.readAndCheck && shared
    ? { deferRead: (d: DeferredRead) => void (deferred = d) }
    : {};
  const found = await blobs.readSmall(requests, buf, hooks);
  const starts: number[] = [];
  let o = 0;
  for (const r of requests) {
    starts.push(o);
    o += r.size;
  }
  // Checked off this thread when a checker can see the buffer; else each when taken.
  let passed: Set<number> | null = null;
  if (checker && shared) {
    const idx: number[] = [];
    for (let i = 0; i < requests.length; i++) if (found[i]) idx.push(i);
    const st = new Float64Array(idx.length);
    const sz = new Float64Array(idx.length);
    const expected = new Uint8Array(32 * idx.length);
    idx.forEach((i, k) => {
      st[k] = buf.byteOffset + starts[i];
      sz[k] = requests[i].size;
      expected.set(requests[i].digest.bytes, 32 * k);
    });
    const sab = buf.buffer as SharedArrayBuffer;
    const d = deferred as DeferredRead | null;
    try {
      let bad: number[];
      if (d) {
        const runs = d.runs.slice();
        for (let r = 1; r < runs.length; r += 3) runs[r] += buf.byteOffset;
        bad = await checker.readAndCheck!(d.fd, runs, sab, st, sz, expected);
      } else bad = await checker.check(sab, st, sz, expected);
      const isBad = new Set(bad);
      passed = new Set(idx.filter((_, k) => !isBad.has(k)));
    } catch {
      // The checker is gone, or a read failed: read (the backend says why) and check here.
      if (d) await d.retry();
      passed = null;
    }
  } else if (deferred) await (deferred as DeferredRead).retry();
  return {
    get(i) {
      if (!found[i]) return Promise.resolve(null);
      const r = requests[i];
      const data = buf.subarray(starts[i], starts[i] + r.size);
      if (passed?.has(i)) return Promise.resolve(data);
      try {
        // Hashed here: without a checker, or to name what a mismatch hashes to.
        checkDigest(data, r.digest);
      } catch (e) {
        return Promise.reject(e);
      }
      return Promise.resolve(data);
    },
  };
}

/**
 * Checks many byte ranges of a shared buffer against their BLAKE3 digests at once, off this
 * thread (`startLlvmBlake3Worker` in `sys/` is one); resolves with the indices that differ.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { blake3 } from "@nixcas/nixcas/castore";
 * import type { BatchChecker } from "@nixcas/nixcas/castore";
 * // One on this thread, for illustration.
 * const here: BatchChecker = {
 *   check(buf, starts, sizes, expected) {
 *     const bad: number[] = [];
 *     for (let i = 0; i < sizes.length; i++) {
 *       const got = blake3(new Uint8Array(buf, starts[i], sizes[i])).bytes;
 *       if (got.some((b, k) => b !== expected[32 * i + k])) bad.push(i);
 *     }
 *     return Promise.resolve(bad);
 *   },
 * };
 * const buf = new SharedArrayBuffer(4);
 * const expected = blake3(new Uint8Array(4)).bytes;
 * assert.deepEqual(await here.check(buf, new Float64Array([0]), new Float64Array([4]), expected), []);
 * ```
 */
export interface BatchChecker {
  /**
   * Hashes `buf[starts[i] .. starts[i] + sizes[i])` for each `i` and compares the digest with
   * `expected[32 i .. 32 i + 32)`; resolves with the indices that differ.
   */
  check(
    buf: SharedArrayBuffer,
    starts: Float64Array,
    sizes: Float64Array,
    expected: Uint8Array,
  ): Promise<number[]>;
  /**
   * Optional: first `pread`s `runs` (triples: position in `fd`, offset in `buf`, length) into
   * `buf`, then checks as {@linkcode BatchChecker.check}; rejects when a read fails or is short.
   */
  readAndCheck?(
    fd: number,
    runs: Float64Array,
    buf: SharedArrayBuffer,
    starts: Float64Array,
    sizes: Float64Array,
    expected: Uint8Array,
  ): Promise<number[]>;
}

/**
 * Options of {@linkcode readSmallBlobs}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SqliteBlobService } from "@nixcas/nixcas/backends";
 * import { putBlob, readSmallBlobs, type ReadSmallOptions } from "@nixcas/nixcas/castore";
 * const blobs = new SqliteBlobService(":memory:");
 * const data = new Uint8Array(5000).fill(9);
 * const request = { digest: await putBlob(blobs, data), size: data.length };
 * let batches = 0;
 * const options: ReadSmallOptions = {
 *   checker: { check: () => (batches++, Promise.resolve([])) }, // trusts everything
 * };
 * const into = new Uint8Array(new SharedArrayBuffer(data.length));
 * assert.deepEqual(await (await readSmallBlobs(blobs, [request], into, options)).get(0), data);
 * assert.equal(batches, 1);
 * await blobs.close();
 * ```
 */
export interface ReadSmallOptions {
  /** Checks the blobs off this thread when `into` is a view of a `SharedArrayBuffer`. */
  checker?: BatchChecker;
}

/** A blob's verified bytes when it has `r.size` of them, else null. */
async function readWhole(blobs: BlobService, r: SmallRead): Promise<Uint8Array | null> {
  const reader = await openVerifiedRead(blobs, r.digest);
  if (!reader) return null;
  try {
    const parts: Uint8Array[] = [];
    let got = 0;
    for await (const c of reader.chunks()) {
      got += c.length;
      if (got > r.size) return null;
      parts.push(c);
    }
    if (got !== r.size) return null;
    return parts.length === 1 ? parts[0] : concat(parts);
  } finally {
    await reader.close();
  }
}

/**
 * Wraps an unverified reader of blob `digest` (stored as `chunks`, `[]` if unchunked) so that
 * nothing unverified comes out. Chunked: each chunk is read whole at its offset, checked
 * against its digest and kept in a small cache. Unchunked: the whole blob is hashed before its
 * first byte is returned; up to {@linkcode VERIFY_BUFFER_LIMIT} it is held in memory and served
 * from there, beyond that it is hashed in a first pass and then read again from the source,
 * each 1 MiB window checked against the first pass before it is returned (see
 * {@linkcode wholeVerifiedReader}). This is what a backend that does not verify itself calls.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CorruptDataError } from "@nixcas/nixcas";
 * import { blake3 } from "@nixcas/nixcas/castore";
 * import { bufferReader } from "./blob_util.ts";
 * import { verifyingReader } from "./verify.ts";
 * const data = new TextEncoder().encode("Hello, world!\n");
 * const digest = blake3(data);
 * const bad = data.slice();
 * bad[3] ^= 1;
 * const r = verifyingReader(bufferReader(bad), digest, []);
 * await assert.rejects(r.readAt(0, 5), CorruptDataError);
 * const ok = verifyingReader(bufferReader(data), digest, []);
 * assert.equal(new TextDecoder().decode(await ok.readAt(7, 5)), "world");
 * ```
 */
export function verifyingReader(
  reader: BlobReader,
  digest: B3Digest,
  chunks: ChunkMeta[],
): BlobReader {
  if (chunks.length > 0) {
    const starts = chunkStarts(chunks.map((c) => c.size));
    const rawInto = reader.readInto?.bind(reader);
    return chunkedReader(digest, chunks, (_c, i) => readFull(reader, starts[i], chunks[i].size), {
      loadInto: rawInto && (async (c, i, into) => {
        const n = await rawInto(starts[i], into);
        if (n !== c.size) {
          throw new CorruptDataError(
            c.digest.toString(),
            `chunk ${i} of blob ${digest} is corrupt: ${n} bytes instead of ${c.size}`,
          );
        }
      }),
      close: () => reader.close(),
    });
  }
  return wholeVerifiedReader(digest, reader, { spool: false });
}

/** How much of an unchunked blob a verifying reader holds in memory (16 MiB). */
export const VERIFY_BUFFER_LIMIT = 16 << 20;

/** Reads exactly `length` bytes at `offset` (fewer only at the end). */
async function readFull(r: BlobReader, offset: number, length: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let got = 0;
  while (got < length) {
    const p = await r.readAt(offset + got, length - got);
    if (p.length === 0) break;
    parts.push(p);
    got += p.length;
  }
  return parts.length === 1 ? parts[0] : concat(parts);
}

function chunkStarts(sizes: readonly number[]): number[] {
  const starts: number[] = [];
  let o = 0;
  for (const n of sizes) {
    starts.push(o);
    o += n;
  }
  starts.push(o);
  return starts;
}

/** Options of {@linkcode chunkedReader}. */
export interface ChunkedReaderOptions {
  /** Verified chunks kept per reader (default 4). */
  cache?: number;
  /** Chunks fetched ahead of a sequential reader (default 0). */
  readahead?: number;
  /**
   * Also hash a whole sequential read from offset 0 and fail at its end unless it is the blob's
   * digest: for chunk lists from an untrusted source (a remote server).
   */
  checkWhole?: boolean;
  /**
   * The whole blob's bytes as one stream, unverified: a sequential read of everything
   * (`chunks()` from offset 0) then takes this one stream, cut at the chunk boundaries and
   * each chunk checked before it is yielded, instead of one `load` per chunk. Its pieces are
   * the reader's to keep (a chunk arriving whole is yielded as a view of its piece).
   */
  stream?: () => AsyncIterable<Uint8Array>;
  /**
   * Reads a chunk's bytes, unverified, into `into` (its size): gives the reader a `readInto`
   * that checks whole chunks where they land in the caller's buffer, without a copy.
   */
  loadInto?: (chunk: ChunkMeta, index: number, into: Uint8Array) => Promise<void>;
  /** Called by close(). */
  close?: () => Promise<void>;
}

/**
 * Cuts one stream of a blob's bytes at its chunk boundaries and yields each chunk (in pieces of
 * at most {@linkcode CHUNK_SIZE}) once its digest is checked: memory is one chunk at most.
 */
async function* streamedChunks(
  digest: B3Digest,
  sizes: readonly number[],
  check: PieceCheck,
  stream: AsyncIterable<Uint8Array>,
  checkWhole: boolean,
): AsyncGenerator<Uint8Array> {
  const hasher = checkWhole ? await createBlake3Hasher() : null;
  let i = 0;
  let buf = new Uint8Array(sizes[0] ?? 0);
  let got = 0;
  // Checks chunk i (whole in `bytes`) and yields it in pieces of at most CHUNK_SIZE.
  async function* checked(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
    await check(bytes, i);
    hasher?.update(bytes);
    for (let o = 0; o < bytes.length; o += CHUNK_SIZE) {
      yield bytes.subarray(o, Math.min(bytes.length, o + CHUNK_SIZE));
    }
    i++;
    buf = new Uint8Array(sizes[i] ?? 0);
    got = 0;
  }
  for await (let data of stream) {
    while (data.length > 0) {
      if (i >= sizes.length) {
        throw new CorruptDataError(digest.toString(), `blob ${digest}: more bytes than its chunks`);
      }
      if (got === 0 && data.length >= buf.length) {
        // The whole chunk in one piece (the stream's to give away): checked where it is.
        const whole = data.subarray(0, buf.length);
        data = data.subarray(buf.length);
        yield* checked(whole);
        continue;
      }
      const n = Math.min(data.length, buf.length - got);
      buf.set(data.subarray(0, n), got);
      got += n;
      data = data.subarray(n);
      if (got === buf.length) yield* checked(buf);
    }
  }
  if (i < sizes.length) await check(buf.subarray(0, got), i);
  if (hasher) checkChunkList(hasher, digest);
}

/** A whole read's chunks were each intact: together they must be the blob asked for. */
function checkChunkList(hasher: Blake3Hasher, digest: B3Digest): void {
  const whole = hasher.digest();
  if (!whole.equals(digest)) {
    throw new CorruptDataError(
      digest.toString(),
      `blob ${digest}: its chunks are intact but together hash to ${whole}: wrong chunk list`,
    );
  }
}

/**
 * A {@linkcode BlobReader} over a blob stored as `chunks`: `load` fetches one chunk's bytes,
 * which are checked against that chunk's digest and size before use; a mismatch throws
 * {@linkcode CorruptDataError} naming the chunk. A read at any offset costs the chunks it
 * touches; recently used chunks are cached (verified).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { blake3 } from "@nixcas/nixcas/castore";
 * import { concat } from "../base/bytes.ts";
 * import { chunkedReader } from "./verify.ts";
 * const enc = new TextEncoder();
 * const parts = [enc.encode("Hello, "), enc.encode("world!\n")];
 * const chunks = parts.map((p) => ({ digest: blake3(p), size: p.length }));
 * const r = chunkedReader(blake3(concat(parts)), chunks, (_c, i) => Promise.resolve(parts[i]));
 * assert.equal(new TextDecoder().decode(await r.readAt(5, 4)), ", wo");
 * ```
 */
export function chunkedReader(
  digest: B3Digest,
  chunks: ChunkMeta[],
  load: (chunk: ChunkMeta, index: number) => Promise<Uint8Array>,
  opts: ChunkedReaderOptions = {},
): BlobReader {
  const loadInto = opts.loadInto;
  return piecewiseReader(
    digest,
    chunks.map((c) => c.size),
    (data, i) =>
      checkDigest(data, chunks[i].digest, "chunk", chunks[i].size, `chunk ${i} of blob ${digest}`),
    (i) => load(chunks[i], i),
    {
      ...opts,
      loadInto: loadInto && ((i, into) => loadInto(chunks[i], i, into)),
    },
  );
}

/** Checks piece `index` of a blob (all of it, in `data`), throwing {@linkcode CorruptDataError}. */
type PieceCheck = (data: Uint8Array, index: number) => void | Promise<void>;

/** {@linkcode ChunkedReaderOptions} with the pieces named by their index alone. */
interface PiecewiseOptions extends Omit<ChunkedReaderOptions, "loadInto"> {
  loadInto?: (index: number, into: Uint8Array) => Promise<void>;
}

/**
 * A reader of a blob stored in pieces of `sizes` bytes: `load` fetches piece i, which `check`
 * passes before any of its bytes is used.
 */
function piecewiseReader(
  digest: B3Digest,
  sizes: readonly number[],
  check: PieceCheck,
  load: (index: number) => Promise<Uint8Array>,
  opts: PiecewiseOptions,
): BlobReader {
  const starts = chunkStarts(sizes);
  const total = starts[sizes.length];
  const cacheSize = Math.max(1, opts.cache ?? 4);
  const readahead = opts.readahead ?? 0;
  const cache = new Map<number, Promise<Uint8Array>>();
  let last = -2;
  let closed = false;

  const get = (i: number): Promise<Uint8Array> => {
    let p = cache.get(i);
    if (p) {
      cache.delete(i); // most recently used goes last
    } else {
      p = load(i).then(async (data) => {
        await check(data, i);
        return data;
      });
      // A failed chunk is fetched again next time; a prefetch nobody awaits must not reject
      // unobserved.
      p.catch(() => {
        if (cache.get(i) === p) cache.delete(i);
      });
    }
    cache.set(i, p);
    while (cache.size > cacheSize) cache.delete(cache.keys().next().value!);
    return p;
  };
  const prefetch = (from: number) => {
    for (let k = from; k < Math.min(sizes.length, from + readahead); k++) {
      if (!cache.has(k)) get(k);
    }
  };
  const find = (offset: number): number => {
    let lo = 0;
    let hi = sizes.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid] <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };
  const loadInto = opts.loadInto;
  const readInto = loadInto && (async (offset: number, into: Uint8Array) => {
    if (closed) throw new StorageError(`reader of blob ${digest} is closed`);
    const end = Math.min(total, offset + into.length);
    if (offset >= end) return 0;
    const jobs: Promise<void>[] = [];
    for (let i = find(offset); i < sizes.length && starts[i] < end; i++) {
      const s = starts[i];
      const e = s + sizes[i];
      if (s >= offset && e <= end) {
        // A whole chunk: read where it belongs, checked there.
        const at = into.subarray(s - offset, e - offset);
        jobs.push(
          loadInto(i, at).then(() => check(at, i)),
        );
      } else {
        jobs.push(
          get(i).then((data) => {
            const from = Math.max(offset, s);
            into.set(data.subarray(from - s, Math.min(e, end) - s), from - offset);
          }),
        );
      }
    }
    const results = await Promise.allSettled(jobs);
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    return end - offset;
  });
  return {
    ...(readInto ? { readInto } : {}),
    async readAt(offset, length) {
      if (closed) throw new StorageError(`reader of blob ${digest} is closed`);
      if (offset >= total || length <= 0) return new Uint8Array(0);
      const end = Math.min(total, offset + length);
      const first = find(offset);
      const parts: Uint8Array[] = [];
      let i = first;
      for (; i < sizes.length && starts[i] < end; i++) {
        // Sequential access (this chunk or the next one again): fetch ahead.
        if (readahead > 0 && (i === last || i === last + 1)) prefetch(i + 1);
        last = i;
        const data = await get(i);
        parts.push(data.subarray(Math.max(0, offset - starts[i]), end - starts[i]));
      }
      return parts.length === 1 ? parts[0] : concat(parts);
    },
    async *chunks(offset = 0) {
      if (offset >= total) return;
      if (offset === 0 && opts.stream) {
        yield* streamedChunks(digest, sizes, check, opts.stream(), opts.checkWhole ?? false);
        return;
      }
      const hasher = opts.checkWhole && offset === 0 ? await createBlake3Hasher() : null;
      for (let i = find(offset); i < sizes.length; i++) {
        prefetch(i + 1);
        const data = await get(i);
        hasher?.update(data);
        for (let o = Math.max(0, offset - starts[i]); o < data.length; o += CHUNK_SIZE) {
          yield data.subarray(o, Math.min(data.length, o + CHUNK_SIZE));
        }
      }
      if (hasher) checkChunkList(hasher, digest);
    },
    async close() {
      closed = true;
      cache.clear();
      await opts.close?.();
    },
  };
}

/** Options of {@linkcode windowedReader}. */
export interface WindowedReaderOptions {
  /** Verified windows kept per reader (default 4). */
  cache?: number;
  /** Windows fetched ahead of a sequential reader (default 0). */
  readahead?: number;
  /**
   * Reads window `index`'s bytes, unverified, into `into` (1 MiB): gives the reader a
   * `readInto` that checks whole windows where they land in the caller's buffer.
   */
  loadInto?: (index: number, into: Uint8Array) => Promise<void>;
  /** Called by close(). */
  close?: () => Promise<void>;
}

/**
 * A {@linkcode BlobReader} over a blob of more than one 1 MiB window whose windows' BLAKE3
 * chaining values are known (`cvs`, 32 bytes for each whole window, as a store kept them when
 * it hashed the blob): the chaining values and `tail` (the bytes after the last whole window)
 * are checked to make up `digest` at once, then each window that `load` fetches is checked
 * against its chaining value before any of its bytes is used. A mismatch throws
 * {@linkcode CorruptDataError} naming the blob (and the window). One pass of hashing per read,
 * as with a chunk list, and none before the first byte.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { blake3 } from "@nixcas/nixcas/castore";
 * import { subtreeCV } from "../hash/blake3.ts";
 * import { windowedReader } from "./verify.ts";
 * const MiB = 1 << 20;
 * const data = new Uint8Array(2 * MiB + 5).map((_, i) => i % 251);
 * const windows = [data.subarray(0, MiB), data.subarray(MiB, 2 * MiB)];
 * const cvs = new Uint8Array(64);
 * windows.forEach((w, i) => cvs.set(subtreeCV(w, i * 1024), 32 * i));
 * const tail = data.slice(2 * MiB);
 * const r = windowedReader(blake3(data), data.length, cvs, tail, (i) => Promise.resolve(windows[i]));
 * assert.deepEqual(await r.readAt(2 * MiB - 1, 3), data.subarray(2 * MiB - 1, 2 * MiB + 2));
 * windows[0] = windows[0].slice().fill(0); // a corrupt window is never handed out
 * await assert.rejects(r.readAt(7, 1), /window 0 of blob/);
 * assert.throws(() => windowedReader(blake3(data), data.length, cvs, tail.fill(1), () => {
 *   throw new Error("not read");
 * }), /corrupt/);
 * ```
 */
export function windowedReader(
  digest: B3Digest,
  size: number,
  cvs: Uint8Array,
  tail: Uint8Array,
  load: (index: number) => Promise<Uint8Array>,
  opts: WindowedReaderOptions = {},
): BlobReader {
  const windows = Math.floor(size / WINDOW);
  if (
    size <= WINDOW || cvs.length !== 32 * windows || tail.length !== size - windows * WINDOW
  ) {
    throw new CorruptDataError(
      digest.toString(),
      `blob ${digest} is corrupt: ${cvs.length / 32} chaining values and ${tail.length} ` +
        `more bytes do not make up its ${size} bytes`,
    );
  }
  const h = new Blake3();
  for (let i = 0; i < windows; i++) h.pushSubtree(cvs.subarray(32 * i, 32 * i + 32), WINDOW_CHUNKS);
  const got = B3Digest.fromBytes(h.update(tail).digest());
  if (!got.equals(digest)) {
    throw new CorruptDataError(
      digest.toString(),
      `blob ${digest} is corrupt: its windows' chaining values and last bytes hash to ${got}`,
    );
  }
  const sizes: number[] = new Array(windows).fill(WINDOW);
  if (tail.length > 0) sizes.push(tail.length); // checked above, served from memory
  const check = async (data: Uint8Array, i: number) => {
    if (i === windows) return;
    const cv = data.length === WINDOW ? await blake3WindowCV(data, i * WINDOW_CHUNKS) : null;
    if (!cv || !cv.every((b, k) => b === cvs[32 * i + k])) {
      throw new CorruptDataError(
        digest.toString(),
        `window ${i} of blob ${digest} is corrupt: its ${data.length} bytes do not hash to ` +
          "the chaining value stored with the blob",
      );
    }
  };
  const loadInto = opts.loadInto;
  return piecewiseReader(
    digest,
    sizes,
    check,
    (i) => i === windows ? Promise.resolve(tail) : load(i),
    {
      cache: opts.cache,
      readahead: opts.readahead,
      close: opts.close,
      loadInto: loadInto && ((i, into) => {
        if (i !== windows) return loadInto(i, into);
        into.set(tail);
        return Promise.resolve();
      }),
    },
  );
}

/** Options of {@linkcode wholeVerifiedReader}. */
export interface WholeVerifiedOptions {
  /** Bytes held in memory at most (default {@linkcode VERIFY_BUFFER_LIMIT}). */
  bufferLimit?: number;
  /**
   * Past the limit: true copies the verified bytes into an unlinked temporary file and serves
   * from it (for a source that cannot be read twice cheaply, a remote); false reads the source
   * again after the hash pass (a local store), checking each 1 MiB window against what the
   * first pass saw.
   */
  spool: boolean;
}

type Verified =
  | { kind: "memory"; parts: Uint8Array[]; size: number }
  | { kind: "file"; file: Deno.FsFile; size: number }
  | { kind: "windows"; size: number; cvs: Uint8Array[]; tail: Uint8Array };

/**
 * BLAKE3 is a tree: the chaining value of each aligned 1 MiB window (1,024 chunks) is a node of
 * it. The first pass keeps these (32 bytes per MiB) and derives the digest from them, so a second
 * pass can check each window on its own before handing it out.
 */
const WINDOW = CHUNK_SIZE;
const WINDOW_CHUNKS = WINDOW / 1024;
/** Windows hashed at once (each pass holds this many, and one being read, in memory). */
const WINDOWS_IN_FLIGHT = 3;
/** What a first pass over a source with `readInto` reads at a time. */
const PIECE = 4 * WINDOW;

/**
 * A {@linkcode BlobReader} over an unchunked blob whose digest can only be checked as a whole:
 * the first read reads `source` from offset 0 to its end (one stream), hashing it, and no byte
 * is returned before the digest matched ({@linkcode CorruptDataError} otherwise). Up to
 * `bufferLimit` bytes are kept in memory; larger blobs are spooled or read again window by
 * window, each window checked against the first pass (see {@linkcode WholeVerifiedOptions.spool}):
 * every byte returned is a byte checked.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { blake3 } from "@nixcas/nixcas/castore";
 * import { bufferReader } from "./blob_util.ts";
 * import { wholeVerifiedReader } from "./verify.ts";
 * const data = new TextEncoder().encode("Hello, world!\n");
 * const r = wholeVerifiedReader(blake3(data), bufferReader(data), { spool: false });
 * assert.equal(new TextDecoder().decode(await r.readAt(7, 5)), "world");
 * await r.close();
 * ```
 */
export function wholeVerifiedReader(
  digest: B3Digest,
  source: BlobReader,
  opts: WholeVerifiedOptions,
): BlobReader {
  const limit = opts.bufferLimit ?? VERIFY_BUFFER_LIMIT;
  let verified: Promise<Verified> | null = null;
  let closed = false;
  let fileLock: Promise<unknown> = Promise.resolve();

  const verify = async (): Promise<Verified> => {
    const cvs: Uint8Array[] = [];
    // Windows kept while the blob fits in memory (our own copies).
    let held: Uint8Array[] | null = [];
    let win = new Uint8Array(WINDOW);
    let fill = 0;
    let size = 0;
    let file: Deno.FsFile | null = null;
    // Windows being hashed (on the thread pool with native BLAKE3) while the next are read.
    const hashing: Promise<Uint8Array>[] = [];
    let windows = 0;
    // The first window waits for more bytes: alone, it is the whole blob, hashed as the root
    // (its chaining value would be a second hash of it). Every big blob's chunk is one window.
    let first: Uint8Array | null = null;
    const startWindow = (w: Uint8Array) => {
      const p = blake3WindowCV(w, windows++ * WINDOW_CHUNKS);
      p.catch(() => {}); // awaited in order below
      hashing.push(p);
    };
    const addWindow = async (w: Uint8Array) => {
      if (held) held.push(w);
      if (windows === 0 && first === null) {
        first = w;
        return;
      }
      if (first) {
        startWindow(first);
        first = null;
      }
      startWindow(w);
      while (hashing.length >= WINDOWS_IN_FLIGHT) cvs.push(await hashing.shift()!);
    };
    try {
      if (source.readInto && !opts.spool) {
        // Into two buffers in turn, a piece of several windows at a time: the next piece is
        // read while this one's windows are hashed (on the thread pool, at once).
        const ring = [largeBuffer(PIECE), largeBuffer(PIECE)];
        let reading = source.readInto(0, ring[0]);
        for (let k = 0;; k++) {
          const buf = ring[k % 2];
          const n = await reading;
          if (n === PIECE) reading = source.readInto(size + n, ring[(k + 1) % 2]);
          const full = Math.floor(n / WINDOW);
          const at = cvs.length;
          const pieceCVs = [];
          // A blob of exactly one window is hashed as the root below, not as a window too.
          const alone = k === 0 && n === WINDOW;
          for (let w = 0; w < full; w++) {
            const win = buf.subarray(w * WINDOW, (w + 1) * WINDOW);
            if (!alone) pieceCVs.push(blake3WindowCV(win, (at + w) * WINDOW_CHUNKS));
            if (held) held.push(win.slice());
          }
          cvs.push(...await Promise.all(pieceCVs));
          size += n;
          if (n < PIECE) {
            win = buf.slice(full * WINDOW, n);
            fill = win.length;
            break;
          }
          if (held && size > limit && size > WINDOW) held = null;
        }
      } else {
        for await (const c of source.chunks(0)) {
          size += c.length;
          if (file) await writeAll(file, c);
          let data = c;
          while (data.length > 0) {
            if (fill === 0 && data.length >= WINDOW) {
              // A whole window as the source gave it (sources hand out arrays of their own).
              const w = data.subarray(0, WINDOW);
              await addWindow(held ? w.slice() : w);
              data = data.subarray(WINDOW);
              continue;
            }
            const n = Math.min(WINDOW - fill, data.length);
            win.set(data.subarray(0, n), fill);
            fill += n;
            data = data.subarray(n);
            if (fill === WINDOW) {
              await addWindow(win);
              win = new Uint8Array(WINDOW);
              fill = 0;
            }
          }
          // (Past one window: a lone window's CV could not give the digest without its bytes.)
          if (held && size > limit && size > WINDOW) {
            if (opts.spool) {
              const path = await Deno.makeTempFile({ prefix: "nixcas-verify-" });
              file = await Deno.open(path, { read: true, write: true });
              await Deno.remove(path); // gone with the descriptor
              for (const p of held) await writeAll(file, p);
              await writeAll(file, win.subarray(0, fill));
            }
            held = null;
          }
        }
      }
      if (first && fill > 0) startWindow(first); // more than one window after all
      const lone = first && fill === 0 ? first as Uint8Array : null;
      while (hashing.length > 0) cvs.push(await hashing.shift()!);
      const tail = win.slice(0, fill);
      let got: B3Digest;
      if (lone) got = blake3(lone);
      else if (cvs.length === 0 && held?.length === 1 && fill === 0) got = blake3(held[0]);
      else if (cvs.length === 0) got = blake3(tail);
      else {
        const h = new Blake3();
        for (const cv of cvs) h.pushSubtree(cv, WINDOW_CHUNKS);
        got = B3Digest.fromBytes(h.update(tail).digest());
      }
      if (!got.equals(digest)) {
        throw new CorruptDataError(
          digest.toString(),
          `blob ${digest} is corrupt: its bytes hash to ${got}`,
        );
      }
      if (file) return { kind: "file", file, size };
      if (held) {
        // Served as they are: whole windows, then the tail.
        if (tail.length > 0 || held.length === 0) held.push(tail);
        return { kind: "memory", parts: held, size };
      }
      return { kind: "windows", size, cvs, tail };
    } catch (e) {
      file?.close();
      throw e;
    }
  };
  const ready = () => {
    if (closed) return Promise.reject(new StorageError(`reader of blob ${digest} is closed`));
    verified ??= verify();
    return verified;
  };
  const readFile = (file: Deno.FsFile, offset: number, length: number) => {
    const run = fileLock.then(async () => {
      const out = new Uint8Array(length);
      await file.seek(offset, Deno.SeekMode.Start);
      let got = 0;
      while (got < length) {
        const n = await file.read(out.subarray(got));
        if (n === null) break;
        got += n;
      }
      return out.subarray(0, got);
    });
    fileLock = run.catch(() => {});
    return run;
  };
  /** Window `i`'s bytes read again are what the first pass hashed, or this throws. */
  const check = async (v: { cvs: Uint8Array[] }, i: number, w: Uint8Array) => {
    const cv = w.length === WINDOW ? await blake3WindowCV(w, i * WINDOW_CHUNKS) : null;
    if (!cv || !sameBytes(cv, v.cvs[i])) {
      throw new CorruptDataError(
        digest.toString(),
        `blob ${digest} changed since it was checked: its bytes ${i * WINDOW}..${
          (i + 1) * WINDOW
        } differ (corrupt storage)`,
      );
    }
    return w;
  };
  // Recently checked windows, for readAt in small pieces.
  const recent = new Map<number, Promise<Uint8Array>>();
  const windowAt = (v: { cvs: Uint8Array[] }, i: number) => {
    let p = recent.get(i);
    if (!p) {
      p = readFull(source, i * WINDOW, WINDOW).then((w) => check(v, i, w));
      p.catch(() => recent.delete(i));
      recent.set(i, p);
      while (recent.size > 2) recent.delete(recent.keys().next().value!);
    }
    return p;
  };

  return {
    async readAt(offset, length) {
      const v = await ready();
      const n = Math.max(0, Math.min(length, v.size - offset));
      if (n === 0) return new Uint8Array(0);
      if (v.kind === "memory") {
        const first = Math.floor(offset / WINDOW);
        const last = Math.floor((offset + n - 1) / WINDOW);
        const parts = v.parts.slice(first, last + 1).map((p, k) =>
          p.subarray(Math.max(0, offset - (first + k) * WINDOW), offset + n - (first + k) * WINDOW)
        );
        return parts.length === 1 ? parts[0] : concat(parts);
      }
      if (v.kind === "file") return await readFile(v.file, offset, n);
      const parts: Uint8Array[] = [];
      const end = offset + n;
      const tailStart = v.cvs.length * WINDOW;
      for (let i = Math.floor(offset / WINDOW); i < v.cvs.length && i * WINDOW < end; i++) {
        const w = await windowAt(v, i);
        parts.push(w.subarray(Math.max(0, offset - i * WINDOW), end - i * WINDOW));
      }
      if (end > tailStart) {
        parts.push(v.tail.subarray(Math.max(0, offset - tailStart), end - tailStart));
      }
      return parts.length === 1 ? parts[0] : concat(parts);
    },
    async readInto(offset, into) {
      const v = await ready();
      const n = Math.max(0, Math.min(into.length, v.size - offset));
      if (n === 0) return 0;
      const tailStart = v.kind === "windows" ? v.cvs.length * WINDOW : 0;
      const fast = v.kind === "windows" && source.readInto && offset % WINDOW === 0 &&
        (offset + n >= tailStart || n % WINDOW === 0);
      if (!fast) {
        for (let got = 0; got < n;) {
          const part = await this.readAt(offset + got, n - got);
          if (part.length === 0) break;
          into.set(part, got);
          got += part.length;
        }
        return n;
      }
      const w = v as Extract<Verified, { kind: "windows" }>;
      // Whole windows straight into `into`, each checked (at once, on the thread pool).
      const m = Math.max(0, Math.min(offset + n, tailStart) - offset);
      if (m > 0) {
        const got = await source.readInto!(offset, into.subarray(0, m));
        const checks = [];
        for (let o = 0; o < m; o += WINDOW) {
          checks.push(check(w, (offset + o) / WINDOW, into.subarray(o, Math.min(got, o + WINDOW))));
        }
        await Promise.all(checks);
      }
      if (offset + n > tailStart) {
        into.set(w.tail.subarray(Math.max(0, offset - tailStart), offset + n - tailStart), m);
      }
      return n;
    },
    async *chunks(offset = 0) {
      const v = await ready();
      if (v.kind === "memory") {
        for (let i = Math.floor(offset / WINDOW); i < v.parts.length; i++) {
          const p = v.parts[i].subarray(Math.max(0, offset - i * WINDOW));
          if (p.length > 0) yield p;
        }
        return;
      }
      if (v.kind === "file") {
        for (let o = offset; o < v.size; o += CHUNK_SIZE) {
          yield await readFile(v.file, o, Math.min(CHUNK_SIZE, v.size - o));
        }
        return;
      }
      // Second pass over the source, a window at a time, each checked before it is yielded.
      const first = Math.floor(offset / WINDOW);
      const tailStart = v.cvs.length * WINDOW;
      if (first < v.cvs.length) {
        // Windows read and being checked, yielded in order once checked.
        const checking: Promise<Uint8Array>[] = [];
        let next = first; // the next window to start checking
        let out = first; // the next window to yield
        let win = new Uint8Array(WINDOW);
        let fill = 0;
        const start = (w: Uint8Array) => {
          const p = check(v, next++, w);
          p.catch(() => {}); // awaited in order below
          checking.push(p);
        };
        const take = async () => {
          const w = await checking.shift()!;
          return out++ === first ? w.subarray(offset - first * WINDOW) : w;
        };
        for await (let data of source.chunks(first * WINDOW)) {
          while (data.length > 0 && next < v.cvs.length) {
            if (fill === 0 && data.length >= WINDOW) {
              start(data.subarray(0, WINDOW));
              data = data.subarray(WINDOW);
            } else {
              const n = Math.min(WINDOW - fill, data.length);
              win.set(data.subarray(0, n), fill);
              fill += n;
              data = data.subarray(n);
              if (fill === WINDOW) {
                start(win);
                win = new Uint8Array(WINDOW);
                fill = 0;
              }
            }
            while (checking.length >= WINDOWS_IN_FLIGHT) yield await take();
          }
          if (next >= v.cvs.length) break;
        }
        if (next < v.cvs.length) start(win.subarray(0, fill)); // shorter than before: fails
        while (checking.length > 0) yield await take();
      }
      if (v.tail.length > 0) yield v.tail.subarray(Math.max(0, offset - tailStart));
    },
    async close() {
      closed = true;
      const v = verified;
      verified = null;
      recent.clear();
      await v?.then((x) => x.kind === "file" && x.file.close(), () => {});
      await source.close();
    },
  };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

async function writeAll(file: Deno.FsFile, data: Uint8Array) {
  for (let o = 0; o < data.length;) o += await file.write(data.subarray(o));
}
