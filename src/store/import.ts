/**
 * Importing a filesystem path as a Nix store path: castore import, NAR hash, store path, then
 * the PathInfo (written last, so a PathInfo never points at missing data).
 *
 * @module
 */
import type { BlobService } from "../castore/blob_service.ts";
import type { AnyNode } from "../castore/directory.ts";
import type { DirectoryService } from "../castore/directory_service.ts";
import { importPath, type ImportProgress } from "../castore/import/mod.ts";
import { NarImportObserver } from "../nar/hash.ts";
import { makePathInfo } from "./path_info.ts";
import { sourceStorePath, type StorePath, validateName } from "./store_path.ts";
import { NARInfo_CA_Hash, type PathInfo, type PathInfoService } from "./path_info_service.ts";

/**
 * The services an import writes to.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   MemoryBlobService,
 *   MemoryDirectoryService,
 *   MemoryPathInfoService,
 * } from "@nixcas/nixcas/backends";
 * import { importStorePath, type StoreServices } from "@nixcas/nixcas/store";
 * // Any three services will do, e.g. blobs on one backend and metadata on another.
 * const blobs = new MemoryBlobService();
 * const directories = new MemoryDirectoryService();
 * const services: StoreServices = {
 *   blobs,
 *   directories,
 *   pathInfos: new MemoryPathInfoService(blobs, directories),
 * };
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/hello.txt`, "Hello, world!\n");
 * const { storePath } = await importStorePath(`${dir}/hello.txt`, services);
 * assert.equal(storePath.absolute, "/nix/store/xrabnx1r49hn890prhx86h6iyn19p976-hello.txt");
 * assert(await services.pathInfos.get(storePath.digest));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export interface StoreServices {
  /** Receives file contents. */
  blobs: BlobService;
  /** Receives directories. */
  directories: DirectoryService;
  /** Receives the PathInfo. */
  pathInfos: PathInfoService;
}

/**
 * What {@linkcode importStorePath} produced.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import { type ImportResult, importStorePath, nixbase32 } from "@nixcas/nixcas/store";
 * // One line per import: store path, NAR size and NAR hash (as `nix path-info` shows them).
 * function describe({ storePath, pathInfo }: ImportResult): string {
 *   const narinfo = pathInfo.narinfo!;
 *   return `${storePath.absolute} ${narinfo.narSize} sha256:${
 *     nixbase32.encode(narinfo.narSha256)
 *   }`;
 * }
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/hello.txt`, "Hello, world!\n");
 * const store = await openStore("memory://");
 * const line = describe(await importStorePath(`${dir}/hello.txt`, store));
 * assert.equal(
 *   line,
 *   "/nix/store/xrabnx1r49hn890prhx86h6iyn19p976-hello.txt 128 " +
 *     "sha256:1kky6dc5n4sjgmxja7hnbzc718hf0anqj3qc3l9w9gwcifd3fjaq",
 * );
 * await store.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export interface ImportResult {
  /** The store path, as `nix-store --add` would print it. */
  storePath: StorePath;
  /** The PathInfo that was stored. */
  pathInfo: PathInfo;
}

/**
 * Options of {@linkcode importStorePath}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import type { ImportProgress } from "@nixcas/nixcas/castore";
 * import { importStorePath, type StoreImportOptions } from "@nixcas/nixcas/store";
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/site`);
 * await Deno.writeTextFile(`${dir}/site/index.html`, "<h1>Hi</h1>\n");
 * await Deno.writeTextFile(`${dir}/site/style.css`, "h1 { color: red }\n");
 * let last: ImportProgress = { files: 0, bytes: 0 };
 * const opts: StoreImportOptions = { concurrency: 2, onProgress: (p) => last = p };
 * const store = await openStore("memory://");
 * await importStorePath(`${dir}/site`, store, opts);
 * assert.deepEqual(last, { files: 2, bytes: 30, totalFiles: 2, totalBytes: 30 });
 * await store.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export interface StoreImportOptions {
  /** Progress callback, see {@linkcode ImportProgress}. */
  onProgress?: (progress: ImportProgress) => void;
  /** Files uploaded at once (default 8); also scales how much small-file data is in flight. */
  concurrency?: number;
}

/**
 * The last path component of `path` (ignoring trailing slashes).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { baseName } from "./import.ts";
 * assert.equal(baseName("/home/alice/src/"), "src");
 * assert.equal(baseName("hello.txt"), "hello.txt");
 * ```
 */
export function baseName(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  return trimmed.slice(trimmed.lastIndexOf("/") + 1) || trimmed;
}

/**
 * Imports `path` (file, directory or symlink, never followed) and registers it as a source store
 * path with no references, exactly the path `nix-store --add` prints. A basename that is not a
 * valid store path name is refused before any work.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   MemoryBlobService,
 *   MemoryDirectoryService,
 *   MemoryPathInfoService,
 * } from "@nixcas/nixcas/backends";
 * import { importStorePath, StorePathError } from "@nixcas/nixcas/store";
 * const tmp = await Deno.makeTempDir();
 * await Deno.mkdir(`${tmp}/hello/bin`, { recursive: true });
 * await Deno.writeTextFile(`${tmp}/hello/README`, "Hello, world!\n");
 * await Deno.writeTextFile(`${tmp}/hello/bin/hello`, "#!/bin/sh\necho hi\n", { mode: 0o755 });
 * await Deno.symlink("bin/hello", `${tmp}/hello/run`);
 *
 * const blobs = new MemoryBlobService();
 * const directories = new MemoryDirectoryService();
 * const pathInfos = new MemoryPathInfoService(blobs, directories);
 * const { storePath, pathInfo } = await importStorePath(`${tmp}/hello`, {
 *   blobs,
 *   directories,
 *   pathInfos,
 * });
 * assert.equal(storePath.absolute, "/nix/store/93nvhq507c1s79lhl682yg2r6czqd43b-hello");
 * assert.equal(pathInfo.narinfo?.narSize, 904n);
 * assert.deepEqual(await pathInfos.get(storePath.digest), pathInfo);
 *
 * // A basename that cannot be a store path name is refused before anything is stored.
 * await Deno.writeTextFile(`${tmp}/my notes.txt`, "");
 * await assert.rejects(
 *   importStorePath(`${tmp}/my notes.txt`, { blobs, directories, pathInfos }),
 *   StorePathError,
 * );
 * await Deno.remove(tmp, { recursive: true });
 * ```
 */
export async function importStorePath(
  path: string,
  services: StoreServices,
  opts: StoreImportOptions = {},
): Promise<ImportResult> {
  const name = baseName(path);
  validateName(name, path);
  // The NAR is hashed in the same pass that reads the files, so nothing is read twice.
  const nar = new NarImportObserver();
  const root: AnyNode = await importPath(path, services.blobs, services.directories, {
    ...opts,
    observer: nar,
  });
  const { narSize, narSha256 } = await nar.result();
  const storePath = sourceStorePath(name, narSha256);
  // Content-addressed as `nix-store --add` registers it (fixed:r:sha256), so Nix takes it
  // without a signature.
  const info = makePathInfo({
    storePath,
    node: root,
    narSize,
    narSha256,
    ca: { type: NARInfo_CA_Hash.NAR_SHA256, digest: narSha256 },
  });
  const pathInfo = await services.pathInfos.put(info);
  return { storePath, pathInfo };
}
