/**
 * BlobService on a remote gRPC server (`grpc+http://`, `grpc+https://`, `grpc+unix://`).
 *
 * @module
 */
import { Code, ConnectError, createClient } from "npm:@connectrpc/connect@2.2.0";
import { B3Digest, blake3, createBlake3Hasher } from "../../castore/digest.ts";
import { InvalidRequestError, StorageError } from "../../base/errors.ts";
import { BlobService as BlobServiceDesc } from "../../gen/tvix/castore/protos/rpc_blobstore_pb.ts";
import { createTransport, fromGrpcError, type RemoteTransport } from "./transport.ts";
import type {
  BlobReader,
  BlobService,
  BlobWriter,
  SmallBlobPut,
} from "../../castore/blob_service.ts";
import { readAtFromChunks } from "../../castore/blob_util.ts";
import { Channel } from "../../base/async.ts";

/**
 * How many small-blob Put calls run at once on one service. An import hands over thousands of
 * small files without waiting; one HTTP/2 stream each, all at once, costs more than it gains
 * (5,000 streams took 12 s against a local daemon) and pushes Deno's HTTP/2 stack into rare
 * fatal states, so the rest wait in a queue.
 */
const SMALL_PUTS_IN_FLIGHT = 32;

/**
 * A BlobService whose blobs live on a tvix-compatible gRPC server. A full read checks the
 * BLAKE3 of what arrived at its end and throws {@linkcode StorageError} on a mismatch; a lost
 * connection gives {@linkcode UnavailableError}.
 *
 * @example
 * ```ts ignore
 * const blobs = new GrpcBlobService("grpc+unix:///run/nixcas.sock");
 * const ok = await blobs.has(digest);
 * ```
 */
export class GrpcBlobService implements BlobService {
  #remote: RemoteTransport;
  #client;
  #smallInFlight = 0;
  #smallQueue: (() => void)[] = [];

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

  /** The {@linkcode BlobService} method of the same name. */
  async openRead(digest: B3Digest): Promise<BlobReader | null> {
    // Start the read and look at its first answer: NOT_FOUND means absent. The stream is then
    // handed to the first chunks() call, so a whole read costs one call.
    let first: ChunkStream | null = this.#readStream(digest, 0);
    try {
      await first.peek();
    } catch (e) {
      if (ConnectError.from(e).code === Code.NotFound) return null;
      throw fromGrpcError(e, this.#remote.address);
    }
    const open = (offset: number) => {
      if (offset === 0 && first) {
        const s = first;
        first = null;
        return s;
      }
      return this.#readStream(digest, offset);
    };
    const reader: BlobReader = {
      chunks: (offset = 0) => open(offset).chunks(),
      readAt: (offset, length) => readAtFromChunks(reader, offset, length),
      close: async () => {
        await first?.cancel();
        first = null;
      },
    };
    return reader;
  }

  /**
   * A Read call as a stream from `offset`. From offset 0 the digest is checked when the stream
   * ends; from elsewhere the bytes before `offset` are skipped unchecked (the server has no
   * ranged read).
   */
  #readStream(digest: B3Digest, offset: number): ChunkStream {
    const abort = new AbortController();
    const it = this.#client.read({ digest: digest.bytes }, { signal: abort.signal })[
      Symbol.asyncIterator
    ]();
    const address = this.#remote.address;
    let head: Promise<IteratorResult<{ data: Uint8Array }>> | null = null;
    const next = () => {
      const h = head;
      head = null;
      return h ?? it.next();
    };
    return {
      peek: async () => {
        head = it.next();
        await head;
      },
      cancel: async () => {
        abort.abort();
        await it.return?.().catch(() => {});
      },
      async *chunks() {
        const hasher = offset === 0 ? await createBlake3Hasher() : null;
        let skip = offset;
        try {
          for (;;) {
            let r;
            try {
              r = await next();
            } catch (e) {
              throw fromGrpcError(e, address);
            }
            if (r.done) break;
            let data = r.value.data;
            hasher?.update(data);
            if (skip > 0) {
              const k = Math.min(skip, data.length);
              skip -= k;
              data = data.subarray(k);
              if (data.length === 0) continue;
            }
            yield data;
          }
        } finally {
          // Stopping early (readAt, a consumer that breaks) cancels the call.
          abort.abort();
        }
        if (hasher) {
          const got = hasher.digest();
          if (!got.equals(digest)) {
            throw new StorageError(
              `${address}: blob ${digest} arrived with digest ${got}: corrupt or wrong data`,
            );
          }
        }
      },
    };
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
        const r = await this.#client.put((async function* () {
          yield { data: copy };
        })());
        const got = B3Digest.fromBytes(r.digest);
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

  /** The {@linkcode BlobService} method of the same name. */
  openWrite(): Promise<BlobWriter> {
    const abort = new AbortController();
    const queue = new Channel<Uint8Array>();
    const call = this.#client.put(
      (async function* () {
        for await (const data of queue) yield { data };
      })(),
      { signal: abort.signal },
    );
    // Fail pending writes as soon as the call fails (e.g. the server went away).
    call.catch((e) => queue.fail(fromGrpcError(e, this.#remote.address)));
    let result: Promise<B3Digest> | null = null;
    let aborted = false;
    // The channel holds one item: overlapping writes take turns, in call order.
    let pushed: Promise<void> = Promise.resolve();
    return Promise.resolve({
      write: (data) => {
        if (result || aborted) {
          return Promise.reject(new InvalidRequestError("blob writer is already closed"));
        }
        // Copy: the caller may reuse its buffer once write resolves, and the chunk may still
        // be queued in the HTTP/2 stream.
        const chunk = data.slice();
        const push = pushed.then(() => queue.push(chunk));
        pushed = push.catch(() => {});
        return push;
      },
      close: () => {
        if (aborted) return Promise.reject(new InvalidRequestError("blob writer was aborted"));
        result ??= (async () => {
          queue.end();
          try {
            const r = await call;
            return B3Digest.fromBytes(r.digest);
          } catch (e) {
            throw fromGrpcError(e, this.#remote.address);
          }
        })();
        return result;
      },
      abort: () => {
        if (!result) {
          aborted = true;
          abort.abort();
          queue.fail(new InvalidRequestError("blob writer was aborted"));
        }
        return Promise.resolve();
      },
    });
  }

  /** The {@linkcode BlobService} method of the same name. */
  close(): Promise<void> {
    this.#remote.close();
    return Promise.resolve();
  }
}

interface ChunkStream {
  peek(): Promise<void>;
  cancel(): Promise<void>;
  chunks(): AsyncIterable<Uint8Array>;
}
