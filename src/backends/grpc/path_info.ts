/**
 * PathInfoService on a remote gRPC server (`grpc+http://`, `grpc+https://`, `grpc+unix://`).
 *
 * @module
 */
import { Code, ConnectError, createClient } from "npm:@connectrpc/connect@2.2.0";
import { type AnyNode, toNodeMessage } from "../../castore/directory.ts";
import { StorageError } from "../../base/errors.ts";
import { PathInfoService as PathInfoServiceDesc } from "../../gen/tvix/store/protos/rpc_pathinfo_pb.ts";
import { createTransport, fromGrpcError, type RemoteTransport } from "./transport.ts";
import type { NarCalculation, PathInfo, PathInfoService } from "../../store/path_info_service.ts";

/**
 * A PathInfoService on a tvix-compatible gRPC server. NARs are calculated by the daemon, from
 * its own blobs and directories.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import { fromNodeMessage } from "@nixcas/nixcas/castore";
 * import { GrpcPathInfoService } from "@nixcas/nixcas/grpc";
 * import { serveDaemon } from "@nixcas/nixcas/server";
 * import { importStorePath } from "@nixcas/nixcas/store";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/hello.txt`, "Hello, world!\n");
 * const local = await openStore("memory://");
 * const { storePath } = await importStorePath(`${dir}/hello.txt`, local);
 * const daemon = await serveDaemon({ listen: `unix:${dir}/nixcas.sock`, ...local });
 * const pathInfos = new GrpcPathInfoService(`grpc+unix://${dir}/nixcas.sock`);
 * const info = await pathInfos.get(storePath.digest);
 * assert.equal(info?.narinfo?.narSize, 128n);
 * assert.equal((await pathInfos.calculateNar(fromNodeMessage(info.node!))).narSize, 128);
 * assert.equal((await Array.fromAsync(pathInfos.list())).length, 1);
 * assert.equal(await pathInfos.get(new Uint8Array(20)), null);
 * await pathInfos.close();
 * await daemon.close();
 * await local.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class GrpcPathInfoService implements PathInfoService {
  #remote: RemoteTransport;
  #client;

  /** Connects (lazily) to a `grpc+…` URL, or shares an existing transport. */
  constructor(target: string | RemoteTransport) {
    this.#remote = typeof target === "string" ? createTransport(target) : target;
    this.#client = createClient(PathInfoServiceDesc, this.#remote.transport);
  }

  /** The {@linkcode PathInfoService} method of the same name. */
  async get(digest: Uint8Array): Promise<PathInfo | null> {
    try {
      return await this.#client.get({ byWhat: { case: "byOutputHash", value: digest } });
    } catch (e) {
      if (ConnectError.from(e).code === Code.NotFound) return null;
      throw fromGrpcError(e, this.#remote.address);
    }
  }

  /** The {@linkcode PathInfoService} method of the same name. */
  async put(info: PathInfo): Promise<PathInfo> {
    try {
      return await this.#client.put(info);
    } catch (e) {
      throw fromGrpcError(e, this.#remote.address);
    }
  }

  /** The {@linkcode PathInfoService} method of the same name. */
  async calculateNar(node: AnyNode): Promise<NarCalculation> {
    let r;
    try {
      r = await this.#client.calculateNAR(toNodeMessage(node));
    } catch (e) {
      throw fromGrpcError(e, this.#remote.address);
    }
    if (r.narSha256.length !== 32) {
      throw new StorageError(
        `${this.#remote.address}: NAR sha256 of length ${r.narSha256.length} in response`,
      );
    }
    return { narSize: Number(r.narSize), narSha256: r.narSha256 };
  }

  /** The {@linkcode PathInfoService} method of the same name. */
  async *list(): AsyncIterable<PathInfo> {
    try {
      yield* this.#client.list({});
    } catch (e) {
      throw fromGrpcError(e, this.#remote.address);
    }
  }

  /** The {@linkcode PathInfoService} method of the same name. */
  close(): Promise<void> {
    this.#remote.close();
    return Promise.resolve();
  }
}
