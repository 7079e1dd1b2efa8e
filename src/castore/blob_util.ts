/**
 * Small conveniences over any {@linkcode BlobService}.
 *
 * @module
 */
import { collect } from "../base/async.ts";
import { concat } from "../base/bytes.ts";
import { type B3Digest, blake3 } from "./digest.ts";
import { InvalidRequestError, NotFoundError, StorageError } from "../base/errors.ts";
import {
  type BlobReader,
  type BlobService,
  CHUNK_SIZE,
  type SmallBlobPut,
} from "./blob_service.ts";
import { openVerifiedRead } from "./verify.ts";

/**
 * Stores a whole buffer (or a stream of buffers) as one blob and returns its digest.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService } from "@nixcas/nixcas/backends";
 * import { blake3, putBlob } from "@nixcas/nixcas/castore";
 * const blobs = new MemoryBlobService();
 * const text = "Hello, world!\n";
 * const whole = await putBlob(blobs, new TextEncoder().encode(text));
 * // The same bytes arriving as a stream make the same blob.
 * const streamed = await putBlob(blobs, new Blob([text]).stream());
 * assert.ok(streamed.equals(whole));
 * assert.ok(whole.equals(blake3(new TextEncoder().encode(text))));
 * ```
 */
export async function putBlob(
  blobs: BlobService,
  data: Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): Promise<B3Digest> {
  const w = await blobs.openWrite();
  try {
    if (data instanceof Uint8Array) {
      for (let o = 0; o < data.length; o += CHUNK_SIZE) {
        await w.write(data.subarray(o, o + CHUNK_SIZE));
      }
    } else {
      for await (const chunk of data) await w.write(chunk);
    }
    return await w.close();
  } catch (e) {
    await w.abort().catch(() => {});
    throw e;
  }
}

/**
 * Stores a small in-memory blob (at most {@linkcode CHUNK_SIZE} bytes) through the backend's
 * {@linkcode BlobService.putSmall} when it has one, else through a writer. The digest is known
 * at once; `stored` settles when the blob is stored. `data` must not be modified afterwards.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SqliteBlobService } from "@nixcas/nixcas/backends";
 * import { putSmallBlob } from "@nixcas/nixcas/castore";
 * const blobs = new SqliteBlobService(":memory:");
 * const enc = new TextEncoder();
 * // Many small blobs: digests come back at once, the backend commits them in batches.
 * const puts = ["a", "b", "c"].map((s) => putSmallBlob(blobs, enc.encode(s)));
 * await Promise.all(puts.map((p) => p.stored));
 * assert(await blobs.has(puts[2].digest));
 * await blobs.close();
 * ```
 */
export function putSmallBlob(blobs: BlobService, data: Uint8Array): SmallBlobPut {
  if (data.length > CHUNK_SIZE) {
    throw new InvalidRequestError(
      `putSmallBlob takes at most ${CHUNK_SIZE} bytes, got ${data.length}`,
    );
  }
  if (blobs.putSmall) return blobs.putSmall(data);
  const digest = blake3(data);
  const stored = putBlob(blobs, data).then((got) => {
    if (!got.equals(digest)) {
      throw new StorageError(`blob service stored ${got} for a blob whose digest is ${digest}`);
    }
  });
  return { digest, stored };
}

/**
 * Reads a whole blob into memory, verified; throws {@linkcode NotFoundError} when absent. For
 * tests and small blobs.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NotFoundError } from "@nixcas/nixcas";
 * import { MemoryBlobService } from "@nixcas/nixcas/backends";
 * import { blake3, putBlob, readBlob } from "@nixcas/nixcas/castore";
 * const enc = new TextEncoder();
 * const blobs = new MemoryBlobService();
 * const digest = await putBlob(blobs, enc.encode("Hello, world!\n"));
 * assert.equal(new TextDecoder().decode(await readBlob(blobs, digest)), "Hello, world!\n");
 * await assert.rejects(readBlob(blobs, blake3(enc.encode("absent"))), NotFoundError);
 * ```
 */
export async function readBlob(blobs: BlobService, digest: B3Digest): Promise<Uint8Array> {
  const r = await openVerifiedRead(blobs, digest);
  if (!r) throw new NotFoundError(`blob ${digest} not found`);
  try {
    return concat(await collect(r.chunks()));
  } finally {
    await r.close();
  }
}

/**
 * Implements {@linkcode BlobReader.readAt} on top of a sequential `chunks(offset)` source. Used
 * by backends whose natural access is a stream (gRPC).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type BlobReader } from "@nixcas/nixcas/castore";
 * import { readAtFromChunks } from "./blob_util.ts";
 * const data = new TextEncoder().encode("Hello, world!\n");
 * // A source that can only stream, in 4-byte pieces, from an offset.
 * const stream: Pick<BlobReader, "chunks"> = {
 *   async *chunks(offset = 0) {
 *     for (let o = offset; o < data.length; o += 4) yield data.subarray(o, o + 4);
 *   },
 * };
 * const bytes = await readAtFromChunks(stream, 7, 5);
 * assert.equal(new TextDecoder().decode(bytes), "world");
 * ```
 */
export async function readAtFromChunks(
  reader: Pick<BlobReader, "chunks">,
  offset: number,
  length: number,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let got = 0;
  for await (const c of reader.chunks(offset)) {
    const take = Math.min(c.length, length - got);
    parts.push(c.subarray(0, take));
    got += take;
    if (got >= length) break;
  }
  return concat(parts);
}

/**
 * A {@linkcode BlobReader} over bytes held in memory.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { bufferReader, readAtFromChunks } from "./blob_util.ts";
 * const reader = bufferReader(new TextEncoder().encode("Hello, world!\n"));
 * const dec = new TextDecoder();
 * assert.equal(dec.decode(await reader.readAt(0, 5)), "Hello");
 * assert.equal(dec.decode(await readAtFromChunks(reader, 7, 5)), "world");
 * await reader.close();
 * ```
 */
export function bufferReader(data: Uint8Array): BlobReader {
  return {
    readAt: (offset, length) => Promise.resolve(data.subarray(offset, offset + length)),
    async *chunks(offset = 0) {
      for (let o = offset; o < data.length; o += CHUNK_SIZE) {
        yield data.subarray(o, Math.min(o + CHUNK_SIZE, data.length));
      }
    },
    close: () => Promise.resolve(),
  };
}
