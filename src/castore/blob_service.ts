/**
 * The BlobService interface: content-addressed byte streams keyed by BLAKE3.
 *
 * @module
 */
import type { B3Digest } from "./digest.ts";

/**
 * One chunk of a chunked blob: its own BLAKE3 digest and its length.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService } from "@nixcas/nixcas/backends";
 * import { blobChunks, type ChunkMeta, putBlob } from "@nixcas/nixcas/castore";
 * const blobs = new MemoryBlobService();
 * const data = new Uint8Array(8 << 20);
 * for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
 * const digest = await putBlob(blobs, data);
 * const chunks: ChunkMeta[] = (await blobChunks(blobs, digest))!;
 * assert.equal(chunks.reduce((n, c) => n + c.size, 0), data.length);
 * assert.ok(await blobs.has(chunks[0].digest)); // each chunk is readable on its own
 * ```
 */
export interface ChunkMeta {
  /** The BLAKE3 digest of the chunk's bytes. */
  digest: B3Digest;
  /** The chunk's length in bytes. */
  size: number;
}

/**
 * Largest chunk a reader yields and the SQLite backend stores (1 MiB).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService } from "@nixcas/nixcas/backends";
 * import { CHUNK_SIZE, putBlob } from "@nixcas/nixcas/castore";
 * const blobs = new MemoryBlobService();
 * const digest = await putBlob(blobs, new Uint8Array(2.5 * CHUNK_SIZE));
 * const reader = (await blobs.openRead(digest))!;
 * const sizes = await Array.fromAsync(reader.chunks(), (c) => c.length);
 * assert.deepEqual(sizes, [CHUNK_SIZE, CHUNK_SIZE, CHUNK_SIZE / 2]);
 * await reader.close();
 * ```
 */
export const CHUNK_SIZE = 1 << 20;

/**
 * Stores blobs by the BLAKE3 of their contents. Backends: memory, SQLite, gRPC.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, SqliteBlobService } from "@nixcas/nixcas/backends";
 * import { type B3Digest, type BlobService, putBlob } from "@nixcas/nixcas/castore";
 * // Works with any backend: streams the blob from one service into another.
 * async function copyBlob(from: BlobService, to: BlobService, digest: B3Digest): Promise<void> {
 *   if (await to.has(digest)) return;
 *   const reader = await from.openRead(digest);
 *   if (!reader) throw new Error(`blob ${digest} not found`);
 *   try {
 *     assert.ok((await putBlob(to, reader.chunks())).equals(digest));
 *   } finally {
 *     await reader.close();
 *   }
 * }
 * const memory = new MemoryBlobService();
 * const sqlite = new SqliteBlobService(":memory:");
 * const digest = await putBlob(memory, new TextEncoder().encode("Hello, world!\n"));
 * await copyBlob(memory, sqlite, digest);
 * assert(await sqlite.has(digest));
 * await sqlite.close();
 * await memory.close();
 * ```
 */
export interface BlobService {
  /** True when the blob (or a chunk listed by {@linkcode BlobService.chunks}) is stored. */
  has(digest: B3Digest): Promise<boolean>;
  /**
   * Opens a stored blob for reading, or returns null when it is absent. The digest may also be
   * that of a chunk listed by {@linkcode BlobService.chunks}: a chunk is a blob of its own.
   */
  openRead(digest: B3Digest): Promise<BlobReader | null>;
  /**
   * The chunks a blob is stored as, in order, each with its own digest; `[]` when the blob is
   * one chunk (or the backend does not chunk), null when it is absent. Optional: use
   * {@linkcode blobChunks} to call it on any backend.
   */
  chunks?(digest: B3Digest): Promise<ChunkMeta[] | null>;
  /**
   * True when this backend's readers check every chunk (and every unchunked blob) against its
   * digest before any of its bytes is returned, throwing {@linkcode CorruptDataError}. Where it
   * is not set, {@linkcode openVerifiedRead} wraps the readers in {@linkcode verifyingReader}.
   */
  readonly verifiesReads?: boolean;
  /** Starts writing a new blob; its digest is known when the writer is closed. */
  openWrite(): Promise<BlobWriter>;
  /**
   * Optional fast path for a small blob held whole in memory (at most {@linkcode CHUNK_SIZE}
   * bytes): the digest is returned at once and the write completes with `stored`, so backends
   * can batch many small blobs into one commit. `data` must not be modified afterwards. Use
   * {@linkcode putSmallBlob} to call it on any backend.
   */
  putSmall?(data: Uint8Array): SmallBlobPut;
  /**
   * Optional fast path for reading many small blobs (each at most {@linkcode CHUNK_SIZE}) at
   * once, without checking them: each request's blob, when it has the requested size, is read
   * into `into`, back to back in request order (blob `i` at the sum of the sizes before it).
   * Resolves with one flag per request: false when the blob is absent, has another size, or is
   * stored in a way this does not read (the caller then uses {@linkcode BlobService.openRead}).
   * `into` must not be touched until it settles. Use {@linkcode readSmallBlobs}, which checks
   * what comes back, to call it on any backend.
   */
  readSmall?(
    requests: readonly SmallRead[],
    into: Uint8Array,
    options?: ReadSmallHooks,
  ): Promise<boolean[]>;
  /** Releases resources (connections, database handles). */
  close(): Promise<void>;
}

/**
 * What a caller of {@linkcode BlobService.readSmall} may take over.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { DeferredRead, ReadSmallHooks } from "@nixcas/nixcas/castore";
 * let deferred: DeferredRead | null = null;
 * const hooks: ReadSmallHooks = { deferRead: (d) => void (deferred = d) };
 * hooks.deferRead!({ fd: 3, runs: new Float64Array([0, 0, 10]), retry: () => Promise.resolve() });
 * assert.equal(deferred!.runs[2], 10);
 * ```
 */
export interface ReadSmallHooks {
  /**
   * Where given, a backend whose bytes lie in a file may leave the reads to the caller (a
   * worker thread that reads and hashes in one go): it calls this once with what to read, and
   * the blobs it reports found are in `into` only once the caller has done those reads.
   */
  deferRead?(read: DeferredRead): void;
}

/**
 * Reads left to the caller by {@linkcode ReadSmallHooks.deferRead}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { DeferredRead } from "@nixcas/nixcas/castore";
 * const read: DeferredRead = {
 *   fd: 3,
 *   runs: new Float64Array([4096, 0, 100, 9000, 100, 50]), // two runs
 *   retry: () => Promise.resolve(),
 * };
 * assert.equal(read.runs.length / 3, 2);
 * ```
 */
export interface DeferredRead {
  /** The file descriptor to `pread` from (the backend's; only for the duration of the read). */
  fd: number;
  /** Triples: file position, offset in `into`, length. */
  runs: Float64Array;
  /** Does the reads the backend's way instead (its errors name what is wrong). */
  retry(): Promise<void>;
}

/**
 * One blob asked of {@linkcode BlobService.readSmall}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService } from "@nixcas/nixcas/backends";
 * import { putBlob, readSmallBlobs, type SmallRead } from "@nixcas/nixcas/castore";
 * const blobs = new MemoryBlobService();
 * const data = new TextEncoder().encode("small");
 * const request: SmallRead = { digest: await putBlob(blobs, data), size: data.length };
 * const got = await readSmallBlobs(blobs, [request], new Uint8Array(5));
 * assert.deepEqual(await got.get(0), data);
 * ```
 */
export interface SmallRead {
  /** The blob's digest. */
  digest: B3Digest;
  /** Its size, as its node records it. */
  size: number;
}

/**
 * What {@linkcode BlobService.putSmall} returns.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService } from "@nixcas/nixcas/backends";
 * import { putSmallBlob, type SmallBlobPut } from "@nixcas/nixcas/castore";
 * const blobs = new MemoryBlobService();
 * const put: SmallBlobPut = putSmallBlob(blobs, new TextEncoder().encode("Hello, world!\n"));
 * assert.equal(put.digest.toString(), "b3:lPFnW6xPi8PFk8Y9v1/nigv9oBCCr4XVtBplCW21a/8=");
 * await put.stored; // rejects if the blob could not be stored
 * assert(await blobs.has(put.digest));
 * ```
 */
export interface SmallBlobPut {
  /** The blob's digest, computed synchronously. */
  digest: B3Digest;
  /** Settles when the blob is stored (rejects with the storage error otherwise). */
  stored: Promise<void>;
}

/**
 * Reads one blob, sequentially or at any offset.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService } from "@nixcas/nixcas/backends";
 * import { type BlobReader, putBlob } from "@nixcas/nixcas/castore";
 * const blobs = new MemoryBlobService();
 * const digest = await putBlob(blobs, new TextEncoder().encode("Hello, world!\n"));
 * const reader: BlobReader | null = await blobs.openRead(digest);
 * assert(reader !== null);
 * try {
 *   const dec = new TextDecoder();
 *   assert.equal(dec.decode(await reader.readAt(7, 5)), "world");
 *   assert.equal((await reader.readAt(14, 5)).length, 0); // at the end
 *   const rest = await Array.fromAsync(reader.chunks(7), (c) => dec.decode(c, { stream: true }));
 *   assert.equal(rest.join(""), "world!\n");
 * } finally {
 *   await reader.close();
 * }
 * ```
 */
export interface BlobReader {
  /**
   * Reads up to `length` bytes at `offset`. Fewer bytes come back only at the end of the blob;
   * an empty array means `offset` is at or past the end.
   */
  readAt(offset: number, length: number): Promise<Uint8Array>;
  /**
   * The blob's bytes from `offset` (default 0) to the end, in chunks of at most
   * {@linkcode CHUNK_SIZE}. Memory use does not grow with the blob's size.
   */
  chunks(offset?: number): AsyncIterable<Uint8Array>;
  /**
   * Optional: reads up to `into.length` bytes at `offset` into `into` (fewer only at the end of
   * the blob) and resolves with how many; `into` must not be touched until it settles. For
   * callers that reuse their buffers (a fresh 1 MiB array per chunk costs more than reading it).
   */
  readInto?(offset: number, into: Uint8Array): Promise<number>;
  /** Releases the reader. */
  close(): Promise<void>;
}

/**
 * Writes one blob. The blob becomes visible only when {@linkcode BlobWriter.close} resolves.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService } from "@nixcas/nixcas/backends";
 * import { blake3, type BlobWriter } from "@nixcas/nixcas/castore";
 * const enc = new TextEncoder();
 * const blobs = new MemoryBlobService();
 * const writer: BlobWriter = await blobs.openWrite();
 * await writer.write(enc.encode("Hello, "));
 * await writer.write(enc.encode("world!\n"));
 * const digest = await writer.close();
 * assert.ok(digest.equals(blake3(enc.encode("Hello, world!\n"))));
 * assert.ok(await blobs.has(digest));
 *
 * const discarded = await blobs.openWrite();
 * await discarded.write(enc.encode("never mind"));
 * await discarded.abort(); // nothing is stored
 * assert.equal(await blobs.has(blake3(enc.encode("never mind"))), false);
 * ```
 */
export interface BlobWriter {
  /**
   * Appends bytes. The writer may keep a reference to `data` until the returned promise
   * settles. Calls may overlap (a write before the previous one resolved): bytes are appended
   * in call order.
   */
  write(data: Uint8Array): Promise<void>;
  /** Finishes the blob and returns its digest. Closing again returns the same digest. */
  close(): Promise<B3Digest>;
  /** Discards everything written; nothing becomes visible. */
  abort(): Promise<void>;
}
