/**
 * Opening stores by address (`memory://`, `sqlite:///abs/path.db`, `grpc+unix:///abs/socket`,
 * ...), and the local backends: in memory and SQLite. The gRPC clients are in
 * `@nixcas/nixcas/grpc`, so that importing this module does not load HTTP/2 and Connect;
 * {@linkcode openStore} loads them when it is given a `grpc+` address.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore, parseAddr } from "@nixcas/nixcas/backends";
 * import { putBlob, readBlob } from "@nixcas/nixcas/castore";
 * assert.equal(parseAddr("sqlite://").kind, "sqlite");
 * const store = await openStore("sqlite://");
 * const digest = await putBlob(store.blobs, new TextEncoder().encode("Hello, world!\n"));
 * assert.equal(new TextDecoder().decode(await readBlob(store.blobs, digest)), "Hello, world!\n");
 * await store.close();
 * ```
 *
 * @module
 */
export {
  AddressError,
  defaultStoreAddr,
  nixcasDir,
  openBlobService,
  openDirectoryService,
  openPathInfoService,
  openStore,
  parseAddr,
  type ServiceAddr,
  type Store,
} from "./open.ts";
export { MemoryBlobService } from "./memory/blob.ts";
export { MemoryDirectoryService } from "./memory/directory.ts";
export { MemoryPathInfoService } from "./memory/path_info.ts";
export { type OpenOptions, SqliteBlobService } from "./sqlite/blob.ts";
export { SqliteDirectoryService } from "./sqlite/directory.ts";
export { SqlitePathInfoService } from "./sqlite/path_info.ts";
export { LocalNixStore, NixStoreImporter, parseLocalStoreAddr } from "./nix/local_store.ts";
export { BinaryCache, type BinaryCacheOptions, isBinaryCacheAddr } from "./nix/binary_cache.ts";
export { type NixCachePathInfoOptions, NixCachePathInfoService } from "./nix/path_info.ts";
