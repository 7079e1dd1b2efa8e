/**
 * Importing a filesystem path as a Nix store path: castore import, NAR hash, store path, then
 * the PathInfo (written last, so a PathInfo never points at missing data).
 *
 * @module
 */
import type { BlobService } from "../castore/blob/service.ts";
import type { AnyNode } from "../castore/directory.ts";
import type { DirectoryService } from "../castore/directory/service.ts";
import { importPath, type ImportProgress } from "../castore/import.ts";
import { OrderedNarHasher } from "../nar/hash.ts";
import { makePathInfo } from "./path_info.ts";
import { sourceStorePath, type StorePath, validateName } from "./store_path.ts";
import type { PathInfo, PathInfoService } from "./path_info/service.ts";

/** The services an import writes to. */
export interface StoreServices {
  /** Receives file contents. */
  blobs: BlobService;
  /** Receives directories. */
  directories: DirectoryService;
  /** Receives the PathInfo. */
  pathInfos: PathInfoService;
}

/** What {@linkcode importStorePath} produced. */
export interface ImportResult {
  /** The store path, as `nix-store --add` would print it. */
  storePath: StorePath;
  /** The PathInfo that was stored. */
  pathInfo: PathInfo;
}

/** Options of {@linkcode importStorePath}. */
export interface StoreImportOptions {
  /** Progress callback, see {@linkcode ImportProgress}. */
  onProgress?: (progress: ImportProgress) => void;
  /** Files uploaded at once. */
  concurrency?: number;
}

/** The last path component of `path` (ignoring trailing slashes). */
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
 * ```ts ignore
 * const { storePath } = await importStorePath("./src", services);
 * console.log(storePath.absolute); // /nix/store/<hash>-src
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
  const narHasher = new OrderedNarHasher();
  const root: AnyNode = await importPath(path, services.blobs, services.directories, {
    ...opts,
    narHasher,
  });
  const { narSize, narSha256 } = narHasher.result();
  const storePath = sourceStorePath(name, narSha256);
  const info = makePathInfo({ storePath, node: root, narSize, narSha256 });
  const pathInfo = await services.pathInfos.put(info);
  return { storePath, pathInfo };
}
