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

/** A PathInfoService on a tvix-compatible gRPC server. */
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
