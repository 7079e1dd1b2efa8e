/**
 * Small conveniences over any {@linkcode BlobService}.
 *
 * @module
 */
import { type B3Digest, blake3 } from "../digest.ts";
import { InvalidRequestError, NotFoundError, StorageError } from "../errors.ts";
import { type BlobReader, type BlobService, CHUNK_SIZE, type SmallBlobPut } from "./service.ts";

/** Stores a whole buffer (or a stream of buffers) as one blob and returns its digest. */
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

/** Reads a whole blob into memory; throws {@linkcode NotFoundError} when absent. For tests and small blobs. */
export async function readBlob(blobs: BlobService, digest: B3Digest): Promise<Uint8Array> {
  const r = await blobs.openRead(digest);
  if (!r) throw new NotFoundError(`blob ${digest} not found`);
  try {
    return concat(await collect(r.chunks()));
  } finally {
    await r.close();
  }
}

/** Collects an async iterable into an array. */
export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** Concatenates byte arrays. */
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
 * Implements {@linkcode BlobReader.readAt} on top of a sequential `chunks(offset)` source. Used
 * by backends whose natural access is a stream (gRPC).
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
