/**
 * BlobService kept in process memory.
 *
 * @module
 */
import { type B3Digest, blake3, createBlake3Hasher } from "../../castore/digest.ts";
import { InvalidRequestError } from "../../base/errors.ts";
import {
  type BlobReader,
  type BlobService,
  type BlobWriter,
  CHUNK_SIZE,
  type SmallBlobPut,
} from "../../castore/blob_service.ts";
import { bufferReader } from "../../castore/blob_util.ts";
import { concat } from "../../base/bytes.ts";

/**
 * Blobs in a Map, lost when the process ends (`memory://`).
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
  #blobs = new Map<string, Uint8Array>();

  /** The {@linkcode BlobService} method of the same name. */
  has(digest: B3Digest): Promise<boolean> {
    return Promise.resolve(this.#blobs.has(digest.key));
  }

  /** The {@linkcode BlobService} method of the same name. */
  openRead(digest: B3Digest): Promise<BlobReader | null> {
    const data = this.#blobs.get(digest.key);
    return Promise.resolve(data ? bufferReader(data) : null);
  }

  /** The {@linkcode BlobService} method of the same name. */
  putSmall(data: Uint8Array): SmallBlobPut {
    if (data.length > CHUNK_SIZE) {
      throw new InvalidRequestError(`putSmall takes at most ${CHUNK_SIZE} bytes`);
    }
    const digest = blake3(data);
    if (!this.#blobs.has(digest.key)) this.#blobs.set(digest.key, data);
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
          if (!this.#blobs.has(result.key)) this.#blobs.set(result.key, concat(parts));
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
