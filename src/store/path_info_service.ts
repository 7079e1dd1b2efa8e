/**
 * The PathInfoService interface: Nix store path metadata keyed by the 20-byte digest in the
 * store path.
 *
 * @module
 */
import type { AnyNode, Node } from "../castore/directory.ts";
import type { NarCalculation } from "../nar/hash.ts";
export type { NarCalculation };
import type { Message } from "../base/message.ts";

// The message types below have the shape protobuf-es generates for tvix/store/protos/
// pathinfo.proto (src/gen/tvix/store/protos/pathinfo_pb.ts); they are declared here so that the
// public API documents them. Values of either are accepted where the other is expected.

/**
 * Metadata of one store path (`tvix.store.v1.PathInfo`): the castore root node, named by the
 * store path's basename, the references, and what a Nix .narinfo needs. Build one with
 * {@linkcode makePathInfo}; {@linkcode validatePathInfo} checks it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { makePathInfo, type PathInfo, StorePath } from "@nixcas/nixcas/store";
 * const info: PathInfo = makePathInfo({
 *   storePath: StorePath.parse("00bgd045z0d4icpbc2yyz4gx48ak44la-hello"),
 *   node: {
 *     case: "symlink",
 *     value: {
 *       $typeName: "tvix.castore.v1.SymlinkNode",
 *       name: new Uint8Array(),
 *       target: new TextEncoder().encode("/nix/store/x"),
 *     },
 *   },
 *   narSize: 120,
 *   narSha256: new Uint8Array(32),
 * });
 * assert.equal(info.narinfo?.narSize, 120n);
 * assert.equal(info.references.length, 0);
 * ```
 */
export type PathInfo = Message<"tvix.store.v1.PathInfo"> & {
  /** The root node; its name is the store path basename. */
  node?: Node | undefined;
  /** 20-byte digests of referenced store paths (decoded, not nixbase32 text). */
  references: Uint8Array[];
  /** The NAR size and hash, reference names and signatures. */
  narinfo?: NARInfo | undefined;
};

/**
 * What a Nix .narinfo needs beyond the castore data (`tvix.store.v1.NARInfo`), found on
 * {@linkcode PathInfo.narinfo}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { makePathInfo, type NARInfo, StorePath } from "@nixcas/nixcas/store";
 * const dep = StorePath.parse("00bgd045z0d4icpbc2yyz4gx48ak44la-glibc");
 * const info = makePathInfo({
 *   storePath: StorePath.parse("00bgd045z0d4icpbc2yyz4gx48ak44la-hello"),
 *   node: {
 *     case: "symlink",
 *     value: {
 *       $typeName: "tvix.castore.v1.SymlinkNode",
 *       name: new Uint8Array(),
 *       target: new TextEncoder().encode(dep.absolute),
 *     },
 *   },
 *   narSize: 160,
 *   narSha256: new Uint8Array(32),
 *   references: [dep],
 * });
 * const narinfo: NARInfo = info.narinfo!;
 * assert.deepEqual(narinfo.referenceNames, ["00bgd045z0d4icpbc2yyz4gx48ak44la-glibc"]);
 * ```
 */
export type NARInfo = Message<"tvix.store.v1.NARInfo"> & {
  /** Length of the NAR serialisation in bytes. */
  narSize: bigint;
  /** SHA-256 of the NAR serialisation (32 bytes). */
  narSha256: Uint8Array;
  /** Signatures over the narinfo fingerprint. */
  signatures: NARInfo_Signature[];
  /** Basenames of the references, in the order of {@linkcode PathInfo.references}. */
  referenceNames: string[];
  /** The `.drv` that built this path, if known; its name without the `.drv` suffix. */
  deriver?: StorePathMessage | undefined;
  /** The content address of a content-addressed path. */
  ca?: NARInfo_CA | undefined;
};

/**
 * A store path on the wire (`tvix.store.v1.StorePath`): the 20-byte digest and the name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { StorePathMessage } from "@nixcas/nixcas/store";
 * const drv: StorePathMessage = {
 *   $typeName: "tvix.store.v1.StorePath",
 *   name: "hello-2.12", // without ".drv"
 *   digest: new Uint8Array(20),
 * };
 * assert.equal(drv.digest.length, 20);
 * ```
 */
export type StorePathMessage = Message<"tvix.store.v1.StorePath"> & {
  /** The name part, after the digest and the dash. */
  name: string;
  /** The 20-byte digest behind the nixbase32 part. */
  digest: Uint8Array;
};

/**
 * How a content-addressed path was hashed (`tvix.store.v1.NARInfo.CA.Hash`): `NAR_SHA256` is
 * Nix's `fixed:r:sha256`, `TEXT_SHA256` its `text:sha256`, `FLAT_SHA256` its `fixed:sha256`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NARInfo_CA_Hash } from "@nixcas/nixcas/store";
 * assert.equal(NARInfo_CA_Hash.NAR_SHA256, 0);
 * assert.equal(NARInfo_CA_Hash.TEXT_SHA256, 4);
 * ```
 */
export enum NARInfo_CA_Hash {
  /** Nix `fixed:r:sha256`: SHA-256 of the NAR. */
  NAR_SHA256 = 0,
  /** Nix `fixed:r:sha1`. */
  NAR_SHA1 = 1,
  /** Nix `fixed:r:sha512`. */
  NAR_SHA512 = 2,
  /** Nix `fixed:r:md5`. */
  NAR_MD5 = 3,
  /** Nix `text:sha256`: SHA-256 of a text file's contents. */
  TEXT_SHA256 = 4,
  /** Nix `fixed:sha1`: of a flat file's contents. */
  FLAT_SHA1 = 5,
  /** Nix `fixed:md5`. */
  FLAT_MD5 = 6,
  /** Nix `fixed:sha256`. */
  FLAT_SHA256 = 7,
  /** Nix `fixed:sha512`. */
  FLAT_SHA512 = 8,
}

/**
 * A content address (`tvix.store.v1.NARInfo.CA`): the hash kind and the raw digest bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type NARInfo_CA, NARInfo_CA_Hash } from "@nixcas/nixcas/store";
 * const ca: NARInfo_CA = {
 *   $typeName: "tvix.store.v1.NARInfo.CA",
 *   type: NARInfo_CA_Hash.TEXT_SHA256,
 *   digest: new Uint8Array(32),
 * };
 * assert.equal(ca.digest.length, 32);
 * ```
 */
export type NARInfo_CA = Message<"tvix.store.v1.NARInfo.CA"> & {
  /** The hash kind. */
  type: NARInfo_CA_Hash;
  /** The raw digest bytes. */
  digest: Uint8Array;
};

/**
 * A signature over the narinfo fingerprint (`tvix.store.v1.NARInfo.Signature`), e.g. by a
 * binary cache key.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { makePathInfo, type NARInfo_Signature, StorePath } from "@nixcas/nixcas/store";
 * const info = makePathInfo({
 *   storePath: StorePath.parse("00bgd045z0d4icpbc2yyz4gx48ak44la-hello"),
 *   node: {
 *     case: "symlink",
 *     value: {
 *       $typeName: "tvix.castore.v1.SymlinkNode",
 *       name: new Uint8Array(),
 *       target: new TextEncoder().encode("/nix/store/x"),
 *     },
 *   },
 *   narSize: 120,
 *   narSha256: new Uint8Array(32),
 *   signatures: [{ name: "cache.nixos.org-1", data: new Uint8Array(64) }], // ed25519 bytes
 * });
 * const signature: NARInfo_Signature = info.narinfo!.signatures[0];
 * assert.equal(signature.$typeName, "tvix.store.v1.NARInfo.Signature");
 * assert.equal(signature.name, "cache.nixos.org-1");
 * ```
 */
export type NARInfo_Signature = Message<"tvix.store.v1.NARInfo.Signature"> & {
  /** Name of the key, e.g. `cache.nixos.org-1`. */
  name: string;
  /** The ed25519 signature bytes. */
  data: Uint8Array;
};

/**
 * Stores PathInfo messages. Backends: memory ({@linkcode MemoryPathInfoService}), SQLite
 * ({@linkcode SqlitePathInfoService}), gRPC; {@linkcode openPathInfoService} opens one by
 * address.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   MemoryBlobService,
 *   MemoryDirectoryService,
 *   MemoryPathInfoService,
 * } from "@nixcas/nixcas/backends";
 * import { type AnyNode } from "@nixcas/nixcas/castore";
 * import { makePathInfo, type PathInfoService, sourceStorePath } from "@nixcas/nixcas/store";
 * const pathInfos: PathInfoService = new MemoryPathInfoService(
 *   new MemoryBlobService(),
 *   new MemoryDirectoryService(),
 * );
 * const node: AnyNode = {
 *   case: "symlink",
 *   value: {
 *     $typeName: "tvix.castore.v1.SymlinkNode",
 *     name: new TextEncoder().encode("hosts"),
 *     target: new TextEncoder().encode("/etc/hosts"),
 *   },
 * };
 * // The store path `nix-store --add` would give this symlink:
 * const { narSize, narSha256 } = await pathInfos.calculateNar(node);
 * const storePath = sourceStorePath("hosts", narSha256);
 * await pathInfos.put(makePathInfo({ storePath, node, narSize, narSha256 }));
 * const info = await pathInfos.get(storePath.digest);
 * assert.equal(info?.narinfo?.narSize, BigInt(narSize));
 * await pathInfos.close();
 * ```
 */
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
