/**
 * nixcas: a content-addressed store for Nix store paths, wire-compatible with tvix-store.
 *
 * This module is the common surface: open a store by address, import a path as
 * `nix-store --add` does, read it back as files or as a NAR, and the errors every service
 * throws. The rest is in sub-modules: `@nixcas/nixcas/castore` (blobs, directories, the
 * filesystem importer), `/nar`, `/store` (store paths, PathInfo), `/backends` (memory, SQLite,
 * addresses), `/grpc` (gRPC clients), `/server` (the daemon), `/fuse` (mounting a store) and
 * `/cli`. Run as a program (`deno run -A mod.ts <command>`), it is the `nixcas` command line.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   B3Digest,
 *   descendTo,
 *   fromNodeMessage,
 *   importStorePath,
 *   openStore,
 *   readBlob,
 * } from "@nixcas/nixcas";
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/hello/bin`, { recursive: true });
 * await Deno.writeTextFile(`${dir}/hello/bin/greeting`, "Hello, Nix!\n");
 * const store = await openStore("memory://");
 * const { storePath } = await importStorePath(`${dir}/hello`, store);
 * assert.equal(storePath.name, "hello");
 * const info = await store.pathInfos.get(storePath.digest);
 * const node = await descendTo(store.directories, fromNodeMessage(info!.node), "bin/greeting");
 * assert.equal(node?.case, "file");
 * const bytes = await readBlob(store.blobs, B3Digest.fromBytes(node.value.digest));
 * assert.equal(new TextDecoder().decode(bytes), "Hello, Nix!\n");
 * await store.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
// Re-exported from the defining modules rather than the sub-path modules: `deno run mod.ts`
// then loads no more modules than the CLI needs.
export {
  CorruptDataError,
  DecompressionError,
  InvalidRequestError,
  NotFoundError,
  PreconditionError,
  StorageError,
  UnavailableError,
} from "./src/base/errors.ts";
export {
  compress,
  type Compression,
  type CompressOptions,
  decompress,
  parseCompression,
} from "./src/compress/compression.ts";
export { B3Digest } from "./src/castore/digest.ts";
export { type AnyNode, type Directory, fromNodeMessage } from "./src/castore/directory.ts";
export type { BlobService } from "./src/castore/blob_service.ts";
export type { DirectoryService } from "./src/castore/directory_service.ts";
export { putBlob, readBlob } from "./src/castore/blob_util.ts";
export { descendTo } from "./src/castore/traverse.ts";
export { renderNar } from "./src/nar/render.ts";
export * as nixbase32 from "./src/store/nixbase32.ts";
export { StorePath } from "./src/store/store_path.ts";
export type { PathInfo, PathInfoService } from "./src/store/path_info_service.ts";
export { type ImportResult, importStorePath, type StoreImportOptions } from "./src/store/import.ts";
export { openStore, type Store } from "./src/backends/open.ts";
export type { OpenOptions } from "./src/backends/sqlite/blob.ts";

import { main } from "./src/cli/main.ts";
if (import.meta.main) {
  await main();
  // Every command has finished its work and awaited its output by now; exiting here skips the
  // runtime's teardown (≈3 ms of every command).
  Deno.exit(0);
}
