/**
 * BlobService on a remote gRPC server (`grpc+http://`, `grpc+https://`, `grpc+unix://`).
 *
 * @module
 */
import { Code, ConnectError, createClient } from "npm:@connectrpc/connect@2.2.0";
import { B3Digest, blake3 } from "../../castore/digest.ts";
import { CorruptDataError, InvalidRequestError, StorageError } from "../../base/errors.ts";
import { BlobService as BlobServiceDesc } from "../../gen/tvix/castore/protos/rpc_blobstore_pb.ts";
import { createTransport, fromGrpcError, type RemoteTransport } from "./transport.ts";
import type {
  BlobReader,
  BlobService,
  BlobWriter,
  ChunkMeta,
  SmallBlobPut,
} from "../../castore/blob_service.ts";
import { chunkedReader, wholeVerifiedReader } from "../../castore/verify.ts";

/**
 * How many small-blob Put calls run at once on one service. An import hands over thousands of
 * small files without waiting; one HTTP/2 stream each, all at once, costs more than it gains
 * (5,000 streams took 12 s against a local daemon) and pushes Deno's HTTP/2 stack into rare
 * fatal states, so the rest wait in a queue.
 */
const SMALL_PUTS_IN_FLIGHT = 32;

/** Verified chunks a reader keeps (each up to 4 MiB with our chunker). */
const CHUNK_CACHE = 8;
/** Chunks fetched ahead of a sequential reader. */
const READAHEAD = 2;

/**
 * A BlobService whose blobs live on a tvix-compatible gRPC server. Every chunk, and every
 * unchunked blob, is checked against its BLAKE3 digest before any of its bytes is returned
 * ({@linkcode CorruptDataError} otherwise); a lost connection gives
 * {@linkcode UnavailableError}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { B3Digest, putBlob, readBlob } from "@nixcas/nixcas/castore";
 * import { GrpcBlobService } from "@nixcas/nixcas/grpc";
 * import { serveDaemon } from "@nixcas/nixcas/server";
 * const dir = await Deno.makeTempDir();
 * const local = new MemoryBlobService();
 * const daemon = await serveDaemon({
 *   listen: `unix:${dir}/nixcas.sock`,
 *   blobs: local,
 *   directories: new MemoryDirectoryService(),
 * });
 * const blobs = new GrpcBlobService(`grpc+unix://${dir}/nixcas.sock`);
 * const data = new TextEncoder().encode("Hello, world!\n");
 * const digest = await putBlob(blobs, data);
 * assert(await local.has(digest)); // stored by the daemon
 * assert(await blobs.has(digest));
 * assert.deepEqual(await readBlob(blobs, digest), data);
 * assert.equal(await blobs.has(B3Digest.fromBytes(new Uint8Array(32))), false);
 * await blobs.close();
 * await daemon.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class GrpcBlobService implements BlobService {
  #remote: RemoteTransport;
  #client;
  #smallInFlight = 0;
  #smallQueue: (() => void)[] = [];

  /** Readers verify every chunk before returning its bytes. */
  readonly verifiesReads = true;

  /** Connects (lazily) to a `grpc+…` URL, or shares an existing transport. */
  constructor(target: string | RemoteTransport) {
    this.#remote = typeof target === "string" ? createTransport(target) : target;
    this.#client = createClient(BlobServiceDesc, this.#remote.transport);
  }

  /** The {@linkcode BlobService} method of the same name. */
  async has(digest: B3Digest): Promise<boolean> {
    try {
      await this.#client.stat({ digest: digest.bytes });
      return true;
    } catch (e) {
      if (ConnectError.from(e).code === Code.NotFound) return false;
      throw fromGrpcError(e, this.#remote.address);
    }
  }

  /** The {@linkcode BlobService} method of the same name: Stat with `send_chunks`. */
  async chunks(digest: B3Digest): Promise<ChunkMeta[] | null> {
    let r;
    try {
      r = await this.#client.stat({ digest: digest.bytes, sendChunks: true });
    } catch (e) {
      if (ConnectError.from(e).code === Code.NotFound) return null;
      throw fromGrpcError(e, this.#remote.address);
    }
    return r.chunks.map((c, i) => {
      const size = Number(c.size);
      if (c.digest.length !== 32 || !Number.isSafeInteger(size)) {
        throw new StorageError(
          `${this.#remote.address}: Stat of blob ${digest} listed an invalid chunk ${i}`,
        );
      }
      return { digest: B3Digest.fromBytes(c.digest), size };
    });
  }

  /**
   * The {@linkcode BlobService} method of the same name. Asks Stat for the chunk list once; with
   * one, reads fetch only the chunks they touch (Read by chunk digest), each verified before use,
   * a few kept in a cache and the next ones fetched ahead of a sequential reader. Without one
   * (old servers, unchunked backends), the blob is read in one Read stream and verified whole
   * before its first byte is returned: held in memory up to 16 MiB, spooled to an unlinked
   * temporary file beyond.
   */
  async openRead(digest: B3Digest): Promise<BlobReader | null> {
    const chunks = await this.chunks(digest);
    if (!chunks) return null;
    const address = this.#remote.address;
    if (chunks.length > 0) {
      return chunkedReader(digest, chunks, (c) => this.#readWhole(c.digest, c.size), {
        cache: CHUNK_CACHE,
        readahead: READAHEAD,
        checkWhole: true,
        // A whole read is one Read call, as before chunks existed: a daemon shutting down lets
        // calls in flight finish but takes no new ones.
        stream: () => this.#readStream(digest),
      });
    }
    const stream: BlobReader = {
      chunks: () => this.#readStream(digest),
      readAt: () => Promise.reject(new StorageError(`${address}: no ranged read`)),
      close: () => Promise.resolve(),
    };
    return wholeVerifiedReader(digest, stream, { spool: true });
  }

  /** One chunk (or small blob) read whole; more than `size` bytes is an error at once. */
  async #readWhole(digest: B3Digest, size: number): Promise<Uint8Array> {
    let out: Uint8Array | null = null;
    let got = 0;
    for await (const data of this.#readStream(digest)) {
      if (out === null) {
        // Sent as one message (our daemon does, up to 1 MiB): its bytes as they are.
        if (data.length === size) {
          out = data;
          got = size;
          continue;
        }
        out = new Uint8Array(size);
      }
      if (got + data.length > size) {
        throw new CorruptDataError(
          digest.toString(),
          `${this.#remote.address}: chunk ${digest} is corrupt: more than ${size} bytes arrived`,
        );
      }
      out.set(data, got);
      got += data.length;
    }
    if (out === null) return new Uint8Array(0);
    return got === size ? out : out.subarray(0, got);
  }

  /** A Read call's bytes as they arrive (unverified: callers verify). */
  async *#readStream(digest: B3Digest): AsyncGenerator<Uint8Array> {
    const abort = new AbortController();
    try {
      yield* this.#remote.readBlob(digest.bytes, abort.signal);
    } catch (e) {
      throw fromGrpcError(e, this.#remote.address);
    } finally {
      // Stopping early (a consumer that breaks) cancels the call.
      abort.abort();
    }
  }

  /**
   * The {@linkcode BlobService} method of the same name: the digest now, the Put call when one
   * of its 32 slots is free (the rest wait in order).
   */
  putSmall(data: Uint8Array): SmallBlobPut {
    const digest = blake3(data);
    const copy = data.slice(); // the caller may reuse its buffer once this returns
    const stored = (async () => {
      if (this.#smallInFlight >= SMALL_PUTS_IN_FLIGHT) {
        await new Promise<void>((r) => this.#smallQueue.push(r));
      } else {
        this.#smallInFlight++;
      }
      try {
        const call = await this.#remote.putBlob();
        await call.write(copy);
        const got = B3Digest.fromBytes(await call.close());
        if (!got.equals(digest)) {
          throw new StorageError(
            `${this.#remote.address}: stored ${got} for a blob whose digest is ${digest}`,
          );
        }
      } catch (e) {
        throw e instanceof StorageError ? e : fromGrpcError(e, this.#remote.address);
      } finally {
        // Hand the slot straight to the next in line, or free it.
        const next = this.#smallQueue.shift();
        if (next) next();
        else this.#smallInFlight--;
      }
    })();
    return { digest, stored };
  }

  /**
   * The {@linkcode BlobService} method of the same name: a Put call whose chunks go out as they
   * are written (each write resolves once its bytes are on the connection).
   */
  openWrite(): Promise<BlobWriter> {
    const address = this.#remote.address;
    const call = this.#remote.putBlob().catch((e) => {
      throw fromGrpcError(e, address);
    });
    call.catch(() => {}); // reported by the first write or close
    let result: Promise<B3Digest> | null = null;
    let aborted = false;
    // Overlapping writes take turns, in call order.
    let pushed: Promise<void> = Promise.resolve();
    return Promise.resolve({
      write: (data) => {
        if (result || aborted) {
          return Promise.reject(new InvalidRequestError("blob writer is already closed"));
        }
        const push = pushed.then(async () => {
          try {
            await (await call).write(data);
          } catch (e) {
            throw fromGrpcError(e, address);
          }
        });
        pushed = push.catch(() => {});
        return push;
      },
      close: () => {
        if (aborted) return Promise.reject(new InvalidRequestError("blob writer was aborted"));
        result ??= (async () => {
          await pushed;
          try {
            return B3Digest.fromBytes(await (await call).close());
          } catch (e) {
            throw fromGrpcError(e, address);
          }
        })();
        return result;
      },
      abort: async () => {
        if (result) return;
        aborted = true;
        try {
          (await call).abort();
        } catch { /* it never started */ }
      },
    });
  }

  /** The {@linkcode BlobService} method of the same name. */
  close(): Promise<void> {
    this.#remote.close();
    return Promise.resolve();
  }
}
