/**
 * castore: content-addressed blobs (BLAKE3) and Directory messages forming a Merkle DAG, as
 * tvix's castore. Nothing here knows about Nix: store paths and NARs are in
 * `@nixcas/nixcas/store` and `@nixcas/nixcas/nar`, the backends in `@nixcas/nixcas/backends`.
 * The error classes every service throws are exported by `@nixcas/nixcas`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import {
 *   B3Digest,
 *   descendTo,
 *   directoryNodeFor,
 *   makeDirectory,
 *   putBlob,
 *   readBlob,
 * } from "@nixcas/nixcas/castore";
 * const enc = new TextEncoder();
 * const blobs = new MemoryBlobService();
 * const directories = new MemoryDirectoryService();
 * const contents = enc.encode("Hello, world!\n");
 * const digest = await putBlob(blobs, contents);
 * const dir = makeDirectory({
 *   files: [{
 *     $typeName: "tvix.castore.v1.FileNode",
 *     name: enc.encode("hello.txt"),
 *     digest: digest.bytes,
 *     size: contents.length,
 *     executable: false,
 *   }],
 * });
 * await directories.put(dir);
 * const root = { case: "directory", value: directoryNodeFor(enc.encode("root"), dir) } as const;
 * const node = await descendTo(directories, root, "hello.txt");
 * assert(node?.case === "file");
 * const bytes = await readBlob(blobs, B3Digest.fromBytes(node.value.digest));
 * assert.equal(new TextDecoder().decode(bytes), "Hello, world!\n");
 * ```
 *
 * @module
 */
export { B3_LEN, B3Digest, blake3, type Blake3Hasher, createBlake3Hasher } from "./digest.ts";
export {
  type AnyNode,
  decodeDirectory,
  type Directory,
  directoryDigest,
  type DirectoryErrorKind,
  type DirectoryNode,
  directoryNodeFor,
  directoryNodes,
  directorySize,
  encodeDirectory,
  type FileNode,
  fromNodeMessage,
  isValidName,
  makeDirectory,
  MAX_NODE_NAME_LEN,
  type Node,
  nodeName,
  renameNode,
  type SymlinkNode,
  toNodeMessage,
  validateDirectory,
  ValidateDirectoryError,
  validateNode,
  validateSymlinkTarget,
} from "./directory.ts";
export {
  type ClosureLimits,
  DEFAULT_MAX_DIRECTORIES_PER_PUT,
  DEFAULT_MAX_DIRECTORY_BYTES_PER_PUT,
} from "./closure.ts";
export { type Message, type UnknownField, WireType } from "../base/message.ts";
export {
  type BlobReader,
  type BlobService,
  type BlobWriter,
  CHUNK_SIZE,
  type ChunkMeta,
  type DeferredRead,
  type ReadSmallHooks,
  type SmallBlobPut,
  type SmallRead,
} from "./blob_service.ts";
export { putBlob, putSmallBlob, readBlob } from "./blob_util.ts";
export {
  type BatchChecker,
  blobChunks,
  openVerifiedRead,
  readSmallBlobs,
  type ReadSmallOptions,
  type SmallBlobs,
} from "./verify.ts";
export type { DirectoryPutter, DirectoryService } from "./directory_service.ts";
export { descendTo, findNode, traverseDirectories } from "./traverse.ts";
export {
  type ImportFileSink,
  type ImportObserver,
  type ImportOptions,
  importPath,
  type ImportProgress,
  UnsupportedFileTypeError,
} from "./import/mod.ts";
export type { FileKind } from "../sys/libc.ts";
