/**
 * BlobService kept in process memory.
 *
 * @module
 */
import { type B3Digest, blake3, createBlake3Hasher } from "../../castore/digest.ts";
import { InvalidRequestError, StorageError } from "../../base/errors.ts";
import {
  type BlobReader,
  type BlobService,
  type BlobWriter,
  CHUNK_SIZE,
  type ChunkMeta,
  type SmallBlobPut,
} from "../../castore/blob_service.ts";
import { bufferReader } from "../../castore/blob_util.ts";
import { chunkBuffer } from "../../castore/chunker.ts";
import { checkDigest, chunkedReader } from "../../castore/verify.ts";
import { concat } from "../../base/bytes.ts";

/**
 * Blobs in a Map, lost when the process ends (`memory://`). Blobs over 1 MiB are cut into
 * content-defined chunks ({@linkcode chunkBuffer}), each stored under its own digest; every
 * read checks what it returns against its digest.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService } from "@nixcas/nixcas/backends";
 * import { putBlob, readBlob } from "@nixcas/nixcas/castore";
 * const blobs = new MemoryBlobService();
 * const digest = await putBlob(blobs, new TextEncoder().encode("hi"));
 * assert.equal(new TextDecoder().decode(await readBlob(blobs, digest)), "hi");
 * ```
 */
export class MemoryBlobService implements BlobService {
  /** Whole blobs and chunks by digest, and chunked blobs as their chunk lists. */
  #blobs = new Map<string, Entry>();

  /** Readers check each chunk, and each unchunked blob, before returning its bytes. */
  readonly verifiesReads = true;

  /** The {@linkcode BlobService} method of the same name. */
  has(digest: B3Digest): Promise<boolean> {
    return Promise.resolve(this.#blobs.has(digest.key));
  }

  /** The {@linkcode BlobService} method of the same name. */
  chunks(digest: B3Digest): Promise<ChunkMeta[] | null> {
    const e = this.#blobs.get(digest.key);
    if (!e) return Promise.resolve(null);
    return Promise.resolve(e.chunks ? e.chunks.map((c) => ({ ...c })) : []);
  }

  /** The {@linkcode BlobService} method of the same name: a blob's digest or a chunk's. */
  openRead(digest: B3Digest): Promise<BlobReader | null> {
    const e = this.#blobs.get(digest.key);
    if (!e) return Promise.resolve(null);
    if (e.chunks) {
      const chunks = e.chunks;
      return Promise.resolve(chunkedReader(digest, chunks, (c) => {
        const data = this.#blobs.get(c.digest.key)?.data;
        if (!data) {
          return Promise.reject(new StorageError(`chunk ${c.digest} of blob ${digest} is missing`));
        }
        return Promise.resolve(data);
      }));
    }
    return Promise.resolve(verifiedBuffer(digest, e.data!));
  }

  /**
   * The stored bytes of an unchunked blob or of a chunk (not a copy), or null: for tests that
   * corrupt stored data on purpose to see it caught.
   */
  storedBytes(digest: B3Digest): Uint8Array | null {
    return this.#blobs.get(digest.key)?.data ?? null;
  }

  #store(digest: B3Digest, data: Uint8Array) {
    if (this.#blobs.has(digest.key)) return;
    if (data.length <= CHUNK_SIZE) {
      this.#blobs.set(digest.key, { data });
      return;
    }
    const pieces = chunkBuffer(data);
    if (pieces.length === 1) {
      this.#blobs.set(digest.key, { data });
      return;
    }
    const chunks: ChunkMeta[] = [];
    for (const p of pieces) {
      const d = blake3(p);
      chunks.push({ digest: d, size: p.length });
      if (!this.#blobs.has(d.key)) this.#blobs.set(d.key, { data: p });
    }
    this.#blobs.set(digest.key, { chunks });
  }

  /** The {@linkcode BlobService} method of the same name. */
  putSmall(data: Uint8Array): SmallBlobPut {
    if (data.length > CHUNK_SIZE) {
      throw new InvalidRequestError(`putSmall takes at most ${CHUNK_SIZE} bytes`);
    }
    const digest = blake3(data);
    this.#store(digest, data);
    return { digest, stored: Promise.resolve() };
  }

  /** The {@linkcode BlobService} method of the same name. */
  openWrite(): Promise<BlobWriter> {
    const parts: Uint8Array[] = [];
    let result: B3Digest | null = null;
    let aborted = false;
    const hasher = createBlake3Hasher();
    return Promise.resolve({
      write: async (data) => {
        if (result || aborted) throw new InvalidRequestError("blob writer is already closed");
        (await hasher).update(data);
        parts.push(data.slice());
      },
      close: async () => {
        if (aborted) throw new InvalidRequestError("blob writer was aborted");
        if (!result) {
          result = (await hasher).digest();
          this.#store(result, concat(parts));
          parts.length = 0;
        }
        return result;
      },
      abort: () => {
        aborted = true;
        parts.length = 0;
        return Promise.resolve();
      },
    });
  }

  /** The {@linkcode BlobService} method of the same name. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** A stored unchunked blob or chunk (`data`), or a chunked blob (`chunks`). */
interface Entry {
  data?: Uint8Array;
  chunks?: ChunkMeta[];
}

/** A reader over one stored buffer that hashes it once before the first byte goes out. */
function verifiedBuffer(digest: B3Digest, data: Uint8Array): BlobReader {
  const inner = bufferReader(data);
  let checked = false;
  const check = () => {
    if (!checked) checkDigest(data, digest);
    checked = true;
  };
  return {
    readAt: (offset, length) => {
      try {
        check();
      } catch (e) {
        return Promise.reject(e);
      }
      return inner.readAt(offset, length);
    },
    async *chunks(offset = 0) {
      check();
      yield* inner.chunks(offset);
    },
    close: () => inner.close(),
  };
}
