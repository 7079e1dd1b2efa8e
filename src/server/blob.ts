/**
 * The `tvix.castore.v1.BlobService` gRPC handlers over any {@linkcode BlobService}.
 *
 * @module
 */
import { create } from "npm:@bufbuild/protobuf@2.17.0";
import type { ServiceImpl } from "npm:@connectrpc/connect@2.2.0";
import { B3Digest } from "../castore/digest.ts";
import { NotFoundError } from "../base/errors.ts";
import { type BlobService, CHUNK_SIZE } from "../castore/blob_service.ts";
import { blobChunks, openVerifiedRead } from "../castore/verify.ts";
import {
  type BlobChunk,
  BlobChunkSchema,
  type BlobService as BlobServiceDesc,
  PutBlobResponseSchema,
  StatBlobResponse_ChunkMetaSchema,
  StatBlobResponseSchema,
} from "../gen/tvix/castore/protos/rpc_blobstore_pb.ts";
import { streaming, unary } from "./errors.ts";
import { semaphore } from "../base/async.ts";

/** Largest BlobChunk the server sends (grpc clients reject messages over 4 MiB by default). */
export const MAX_READ_CHUNK = CHUNK_SIZE;

/**
 * Reads served at once by default; more wait their turn. A verified read holds up to a chunk
 * (an unchunked blob: up to 16 MiB) while its bytes wait for the client's window. 1,000
 * concurrent Reads of a 3 MiB blob on one channel (SQLite store): daemon peak RSS 7.1 GB without
 * a bound, 1.0 GB with 16, 0.65 GB with 4 (docs/performance.md).
 */
export const DEFAULT_CONCURRENT_READS = 16;

/**
 * Handlers for BlobService: Stat (with the chunk list when asked), Read of a blob or a chunk
 * (messages ≤ 1 MiB, every chunk verified before it is sent: corrupt data is DATA_LOSS; at most
 * `concurrentReads` at once, the others wait), Put (returns the BLAKE3 digest).
 */
export function blobServiceImpl(
  blobs: BlobService,
  concurrentReads: number = DEFAULT_CONCURRENT_READS,
): ServiceImpl<typeof BlobServiceDesc> {
  const reading = semaphore(concurrentReads);
  return {
    stat: (req) =>
      unary(async () => {
        const digest = B3Digest.fromBytes(req.digest);
        if (!req.sendChunks) {
          if (!(await blobs.has(digest))) throw new NotFoundError(`blob ${digest} not found`);
          return create(StatBlobResponseSchema, {});
        }
        const chunks = await blobChunks(blobs, digest);
        if (!chunks) throw new NotFoundError(`blob ${digest} not found`);
        return create(StatBlobResponseSchema, {
          chunks: chunks.map((c) =>
            create(StatBlobResponse_ChunkMetaSchema, {
              digest: c.digest.bytes,
              size: BigInt(c.size),
            })
          ),
        });
      }),
    read: (req) =>
      streaming(async function* () {
        const digest = B3Digest.fromBytes(req.digest);
        await reading.acquire();
        try {
          // Backends that do not verify their reads get wrapped: nothing corrupt is sent.
          const reader = await openVerifiedRead(blobs, digest);
          if (!reader) throw new NotFoundError(`blob ${digest} not found`);
          try {
            for await (const chunk of reader.chunks()) {
              for (let o = 0; o < chunk.length; o += MAX_READ_CHUNK) {
                yield create(BlobChunkSchema, { data: chunk.subarray(o, o + MAX_READ_CHUNK) });
              }
            }
          } finally {
            await reader.close();
          }
        } finally {
          reading.release();
        }
      }),
    put: (reqs: AsyncIterable<BlobChunk>) =>
      unary(async () => {
        const writer = await blobs.openWrite();
        try {
          for await (const chunk of reqs) await writer.write(chunk.data);
          const digest = await writer.close();
          return create(PutBlobResponseSchema, { digest: digest.bytes });
        } catch (e) {
          // A client that cancels mid-stream must not leave a half blob behind.
          await writer.abort().catch(() => {});
          throw e;
        }
      }),
  };
}
