/**
 * The BlobService interface: content-addressed byte streams keyed by BLAKE3.
 *
 * @module
 */
import type { B3Digest } from "../digest.ts";

/** Largest chunk a reader yields and the SQLite backend stores (1 MiB). */
export const CHUNK_SIZE = 1 << 20;

/**
 * Stores blobs by the BLAKE3 of their contents. Backends: memory, SQLite, gRPC.
 */
export interface BlobService {
  /** True when the blob is stored (complete). */
  has(digest: B3Digest): Promise<boolean>;
  /** Opens a stored blob for reading, or returns null when it is absent. */
  openRead(digest: B3Digest): Promise<BlobReader | null>;
  /** Starts writing a new blob; its digest is known when the writer is closed. */
  openWrite(): Promise<BlobWriter>;
  /**
   * Optional fast path for a small blob held whole in memory (at most {@linkcode CHUNK_SIZE}
   * bytes): the digest is returned at once and the write completes with `stored`, so backends
   * can batch many small blobs into one commit. `data` must not be modified afterwards. Use
   * {@linkcode putSmallBlob} to call it on any backend.
   */
  putSmall?(data: Uint8Array): SmallBlobPut;
  /** Releases resources (connections, database handles). */
  close(): Promise<void>;
}

/** What {@linkcode BlobService.putSmall} returns. */
export interface SmallBlobPut {
  /** The blob's digest, computed synchronously. */
  digest: B3Digest;
  /** Settles when the blob is stored (rejects with the storage error otherwise). */
  stored: Promise<void>;
}

/** Reads one blob, sequentially or at any offset. */
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
  /** Releases the reader. */
  close(): Promise<void>;
}

/** Writes one blob. The blob becomes visible only when {@linkcode BlobWriter.close} resolves. */
export interface BlobWriter {
  /** Appends bytes. The writer may keep a reference to `data` until the next call. */
  write(data: Uint8Array): Promise<void>;
  /** Finishes the blob and returns its digest. Closing again returns the same digest. */
  close(): Promise<B3Digest>;
  /** Discards everything written; nothing becomes visible. */
  abort(): Promise<void>;
}
