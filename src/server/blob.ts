/**
 * The `tvix.castore.v1.BlobService` gRPC handlers over any {@linkcode BlobService}.
 *
 * @module
 */
import { create } from "npm:@bufbuild/protobuf@2.17.0";
import { Code, ConnectError, type ServiceImpl } from "npm:@connectrpc/connect@2.2.0";
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
import { streaming, toConnectError, unary } from "./errors.ts";
import { type Semaphore, semaphore } from "../base/async.ts";
import type { ServerStream } from "../http2/server.ts";
import type { HeaderField } from "../http2/hpack.ts";
import {
  blobChunkPrefix,
  decodeReadRequest,
  GRPC_CONTENT_TYPE,
  MessageSplitter,
} from "../backends/grpc/blob_calls.ts";

/** Largest BlobChunk the server sends (grpc clients reject messages over 4 MiB by default). */
export const MAX_READ_CHUNK = CHUNK_SIZE;

/**
 * Reads served at once by default; more wait their turn. A verified read holds a chunk or two
 * (a blob of one chunk whole) while its bytes wait for the client's window; without a bound,
 * 1,000 concurrent Reads of one blob held them all (docs/performance.md).
 */
export const DEFAULT_CONCURRENT_READS = 16;

/**
 * Handlers for BlobService: Stat (with the chunk list when asked), Read of a blob or a chunk
 * (messages ≤ 1 MiB, every chunk verified before it is sent: corrupt data is DATA_LOSS; at most
 * `concurrentReads` at once, the others wait), Put (returns the BLAKE3 digest).
 */
export function blobServiceImpl(
  blobs: BlobService,
  reading: Semaphore = semaphore(DEFAULT_CONCURRENT_READS),
): ServiceImpl<typeof BlobServiceDesc> {
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
        for await (const data of verifiedMessages(blobs, reading, digest)) {
          yield create(BlobChunkSchema, { data });
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

/**
 * A blob's bytes as Read sends them (pieces of at most {@linkcode MAX_READ_CHUNK}), each chunk
 * verified first (backends that do not verify their reads get wrapped: nothing corrupt is
 * sent), once one of `reading`'s permits is free; the permit is held until the last piece.
 */
async function* verifiedMessages(
  blobs: BlobService,
  reading: Semaphore,
  digest: B3Digest,
): AsyncGenerator<Uint8Array> {
  await reading.acquire();
  try {
    const reader = await openVerifiedRead(blobs, digest);
    if (!reader) throw new NotFoundError(`blob ${digest} not found`);
    try {
      for await (const chunk of reader.chunks()) {
        for (let o = 0; o < chunk.length; o += MAX_READ_CHUNK) {
          yield chunk.subarray(o, o + MAX_READ_CHUNK);
        }
      }
    } finally {
      await reader.close();
    }
  } finally {
    reading.release();
  }
}

/** Largest ReadBlobRequest accepted (a digest and room for fields added later). */
const MAX_READ_REQUEST = 64 << 10;

/**
 * BlobService/Read on our HTTP/2 server's stream, without connect (see
 * `backends/grpc/blob_calls.ts`): the same answers as the connect handler above, each chunk
 * verified before it is sent (DATA_LOSS otherwise), its data written without a copy, and at
 * most as many Reads at once as `reading` allows. `check` runs on the headers before the body is
 * read (authorization, read-only) and throws to refuse the call.
 */
export async function serveBlobRead(
  blobs: BlobService,
  reading: Semaphore,
  stream: ServerStream,
  check?: (headers: Headers) => void,
): Promise<void> {
  const head = () => stream.respond(200, [["content-type", GRPC_CONTENT_TYPE]]);
  let started = false;
  const finish = (code: number, message = "") => {
    const status: HeaderField[] = [["grpc-status", String(code)]];
    if (message) status.push(["grpc-message", encodeURIComponent(message)]);
    // Status in trailers, after headers, as connect answers.
    if (!started) head();
    stream.end(status);
  };
  try {
    const headers = new Headers();
    for (const [k, v] of stream.headers) headers.append(k, v);
    const type = headers.get("content-type") ?? "";
    if (!/^application\/grpc(\+proto)?(;|$)/.test(type)) {
      stream.respond(415, [["content-type", "text/plain"]]);
      await stream.write(new TextEncoder().encode(`unsupported content type ${type}`));
      stream.end();
      return;
    }
    check?.(headers);
    const splitter = new MessageSplitter(MAX_READ_REQUEST);
    const msgs: Uint8Array[] = [];
    for await (const piece of stream.body()) msgs.push(...splitter.push(piece));
    if (msgs.length !== 1 || splitter.pending > 0) {
      throw new ConnectError(
        `BlobService/Read takes one request message, got ${msgs.length}`,
        Code.InvalidArgument,
      );
    }
    let digest: B3Digest;
    try {
      digest = B3Digest.fromBytes(decodeReadRequest(msgs[0]));
    } catch (e) {
      throw new ConnectError(
        `undecodable tvix.castore.v1.ReadBlobRequest message: ${(e as Error).message}`,
        Code.InvalidArgument,
      );
    }
    for await (const data of verifiedMessages(blobs, reading, digest)) {
      if (stream.signal.aborted) return;
      if (!started) head();
      started = true;
      // Flow control, not buffering, bounds a slow reader: write waits for its window.
      await stream.write([blobChunkPrefix(data.length), data]);
    }
    finish(0);
  } catch (e) {
    if (stream.signal.aborted) return;
    const err = toConnectError(e);
    finish(err.code, err.rawMessage);
  }
}
