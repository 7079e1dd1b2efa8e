/**
 * The PathInfoService interface: Nix store path metadata keyed by the 20-byte digest in the
 * store path.
 *
 * @module
 */
import type { AnyNode } from "../../castore/directory.ts";
import type { PathInfo } from "../../gen/tvix/store/protos/pathinfo_pb.ts";

export type { PathInfo };

/** Size and SHA-256 of the NAR serialisation of a node. */
export interface NarCalculation {
  /** Length of the NAR in bytes. */
  narSize: number;
  /** SHA-256 of the NAR (32 bytes). */
  narSha256: Uint8Array;
}

/** Stores PathInfo messages. Backends: memory, SQLite, gRPC. */
export interface PathInfoService {
  /** The PathInfo whose store path has this 20-byte digest, or null when absent. */
  get(digest: Uint8Array): Promise<PathInfo | null>;
  /** Validates and stores a PathInfo; returns what was stored. */
  put(info: PathInfo): Promise<PathInfo>;
  /** NAR size and SHA-256 of a root node; all data it refers to must exist. */
  calculateNar(node: AnyNode): Promise<NarCalculation>;
  /** Every stored PathInfo, streamed. */
  list(): AsyncIterable<PathInfo>;
  /** Releases resources. */
  close(): Promise<void>;
}
