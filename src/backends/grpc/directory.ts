/**
 * DirectoryService on a remote gRPC server (`grpc+http://`, `grpc+https://`, `grpc+unix://`).
 *
 * @module
 */
import { Code, ConnectError, createClient } from "npm:@connectrpc/connect@2.2.0";
import { B3Digest } from "../../castore/digest.ts";
import { type Directory, directoryDigest, validateDirectory } from "../../castore/directory.ts";
import { InvalidRequestError, StorageError } from "../../base/errors.ts";
import { DirectoryService as DirectoryServiceDesc } from "../../gen/tvix/castore/protos/rpc_directory_pb.ts";
import { createTransport, fromGrpcError, type RemoteTransport } from "./transport.ts";
import { Channel } from "../../base/async.ts";
import { ClosureValidator } from "../../castore/closure.ts";
import type { DirectoryPutter, DirectoryService } from "../../castore/directory_service.ts";

/**
 * A DirectoryService on a tvix-compatible gRPC server. Everything received is validated and
 * checked against the digest asked for (a recursive get also checks that each directory was
 * announced by its parent and that none is missing at the end).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { directoryDigest, directoryNodeFor, makeDirectory } from "@nixcas/nixcas/castore";
 * import { GrpcDirectoryService } from "@nixcas/nixcas/grpc";
 * import { serveDaemon } from "@nixcas/nixcas/server";
 * const dir = await Deno.makeTempDir();
 * const daemon = await serveDaemon({
 *   listen: `unix:${dir}/nixcas.sock`,
 *   blobs: new MemoryBlobService(),
 *   directories: new MemoryDirectoryService(),
 * });
 * const directories = new GrpcDirectoryService(`grpc+unix://${dir}/nixcas.sock`);
 * const share = makeDirectory({});
 * const root = makeDirectory({
 *   directories: [directoryNodeFor(new TextEncoder().encode("share"), share)],
 * });
 * // A closure is sent in one stream, leaves first:
 * const putter = directories.putMultipleStart();
 * await putter.put(share);
 * await putter.put(root);
 * const digest = await putter.close();
 * assert(digest.equals(directoryDigest(root)));
 * // and comes back root first:
 * const closure = await Array.fromAsync(directories.getRecursive(digest));
 * assert.deepEqual(closure.map((d) => directoryDigest(d).toString()), [
 *   digest.toString(),
 *   directoryDigest(share).toString(),
 * ]);
 * await directories.close();
 * await daemon.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class GrpcDirectoryService implements DirectoryService {
  #remote: RemoteTransport;
  #client;

  /** Connects (lazily) to a `grpc+…` URL, or shares an existing transport. */
  constructor(target: string | RemoteTransport) {
    this.#remote = typeof target === "string" ? createTransport(target) : target;
    this.#client = createClient(DirectoryServiceDesc, this.#remote.transport);
  }

  /** The {@linkcode DirectoryService} method of the same name. */
  async get(digest: B3Digest): Promise<Directory | null> {
    let dir: Directory | undefined;
    try {
      for await (
        const d of this.#client.get({
          byWhat: { case: "digest", value: digest.bytes },
          recursive: false,
        })
      ) {
        dir ??= d;
      }
    } catch (e) {
      if (ConnectError.from(e).code === Code.NotFound) return null;
      throw fromGrpcError(e, this.#remote.address);
    }
    if (!dir) return null;
    this.#check(digest, dir);
    return dir;
  }

  #check(digest: B3Digest, dir: Directory): void {
    const actual = directoryDigest(dir);
    if (!actual.equals(digest)) {
      throw new StorageError(
        `${this.#remote.address}: requested directory ${digest}, but got ${actual}`,
      );
    }
    try {
      validateDirectory(dir);
    } catch (e) {
      throw new StorageError(
        `${this.#remote.address}: directory ${digest} is invalid: ${(e as Error).message}`,
      );
    }
  }

  /**
   * Stores one directory. The wire protocol wants every child in the same Put stream, before
   * its parent (tvix servers reject anything else), so the closures of its children are
   * fetched from the server and sent first, leaves first. A child the server lacks makes the
   * put fail with {@linkcode InvalidRequestError}; use {@linkcode putMultipleStart} to send new
   * closures.
   */
  async put(directory: Directory): Promise<B3Digest> {
    validateDirectory(directory);
    const closure: Directory[] = [];
    if (directory.directories.length > 0) {
      const byKey = new Map<string, Directory>();
      for (const child of directory.directories) {
        const d = B3Digest.fromBytes(child.digest);
        if (byKey.has(d.key)) continue;
        try {
          for await (const dir of this.getRecursive(d)) byKey.set(directoryDigest(dir).key, dir);
        } catch (e) {
          if (!(e instanceof StorageError) || !/does not exist/.test(e.message)) throw e;
          throw new InvalidRequestError(
            `${this.#remote.address}: child ${d} of the directory is not on the server`,
          );
        }
      }
      // Post-order: each directory after all of its children, each once.
      const done = new Set<string>();
      const visit = (key: string) => {
        if (done.has(key)) return;
        done.add(key);
        const dir = byKey.get(key)!;
        for (const c of dir.directories) visit(B3Digest.fromBytes(c.digest).key);
        closure.push(dir);
      };
      for (const child of directory.directories) visit(B3Digest.fromBytes(child.digest).key);
    }
    closure.push(directory);
    try {
      const r = await this.#client.put((async function* () {
        yield* closure;
      })());
      return B3Digest.fromBytes(r.rootDigest);
    } catch (e) {
      throw fromGrpcError(e, this.#remote.address);
    }
  }

  /** The {@linkcode DirectoryService} method of the same name. */
  async *getRecursive(root: B3Digest): AsyncIterable<Directory> {
    const address = this.#remote.address;
    const expected = new Set<string>([root.key]);
    const received = new Set<string>();
    const abort = new AbortController();
    try {
      for await (
        const dir of this.#client.get(
          { byWhat: { case: "digest", value: root.bytes }, recursive: true },
          { signal: abort.signal },
        )
      ) {
        const digest = directoryDigest(dir);
        if (!expected.delete(digest.key)) {
          throw new StorageError(`${address}: received unexpected directory ${digest}`);
        }
        this.#check(digest, dir);
        received.add(digest.key);
        for (const child of dir.directories) {
          const key = B3Digest.fromBytes(child.digest).key;
          if (!received.has(key)) expected.add(key);
        }
        yield dir;
      }
    } catch (e) {
      if (e instanceof StorageError) throw e;
      if (ConnectError.from(e).code === Code.NotFound) {
        // As the local backends: a missing directory in a closure is an inconsistent store.
        throw new StorageError(`directory ${root} does not exist (${address})`);
      }
      throw fromGrpcError(e, address);
    } finally {
      abort.abort();
    }
    if (expected.size > 0) {
      throw new StorageError(
        `${address}: still expected ${expected.size} directories, but the stream ended`,
      );
    }
  }

  /** The {@linkcode DirectoryService} method of the same name. */
  putMultipleStart(): DirectoryPutter {
    const address = this.#remote.address;
    const queue = new Channel<Directory>();
    // Validate here too, so a bad closure fails at put() as with the local backends.
    const validator = new ClosureValidator();
    let call: Promise<{ rootDigest: Uint8Array }> | null = null;
    let result: Promise<B3Digest> | null = null;
    // Cancels the call, so that the server stores nothing of a closure refused here.
    const abort = new AbortController();
    const start = () => {
      call ??= this.#client.put(queue, { signal: abort.signal });
      call.catch((e) => queue.fail(fromGrpcError(e, address)));
      return call;
    };
    return {
      put: async (directory) => {
        if (result) throw new InvalidRequestError("directory putter is closed");
        try {
          validator.add(directory);
        } catch (e) {
          abort.abort(); // a stream already started must not wait for more forever
          throw e;
        }
        start();
        await queue.push(directory);
      },
      close: () => {
        result ??= (async () => {
          try {
            validator.finish(); // throws when nothing was put or the closure is not connected
          } catch (e) {
            abort.abort();
            throw e;
          }
          queue.end();
          try {
            return B3Digest.fromBytes((await start()).rootDigest);
          } catch (e) {
            throw fromGrpcError(e, address);
          }
        })();
        return result;
      },
    };
  }

  /** The {@linkcode DirectoryService} method of the same name. */
  close(): Promise<void> {
    this.#remote.close();
    return Promise.resolve();
  }
}
