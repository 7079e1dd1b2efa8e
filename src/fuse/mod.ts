/**
 * The store as a read-only FUSE filesystem, spoken over `/dev/fuse` from TypeScript.
 *
 * @example
 * ```ts ignore
 * import { mountStore } from "./mod.ts";
 * const handle = await mountStore({ mountpoint: "/mnt/store", blobs, directories, pathInfos });
 * Deno.addSignalListener("SIGINT", () => handle.unmount());
 * await handle.unmounted;
 * ```
 *
 * @module
 */
import type { BlobService } from "../castore/blob_service.ts";
import type { DirectoryService } from "../castore/directory_service.ts";
import type { PathInfoService } from "../store/path_info_service.ts";
import { FuseSession, type Logger } from "./session.ts";
import { StoreFs } from "./store_fs.ts";

export { FuseErrno, FuseSession, type Logger, type LogLevel } from "./session.ts";
export { checkMountpoint, readMountInfo } from "./mount.ts";
export { StoreFs } from "./store_fs.ts";

/** Options for {@linkcode mountStore}. */
export interface MountStoreOptions {
  /** Existing directory to mount on. */
  mountpoint: string;
  /** File contents. */
  blobs: BlobService;
  /** Directory structure. */
  directories: DirectoryService;
  /** Store paths shown in the root. */
  pathInfos: PathInfoService;
  /** Allow listing the root; otherwise `ls` of the root fails with EPERM. */
  listRoot?: boolean;
  /** Let other users access the mount. */
  allowOther?: boolean;
  /** `mount(2)` (root), `fusermount3`, or `auto` (by uid, the default). */
  method?: "syscall" | "fusermount" | "auto";
  /** Concurrent blocking reads of /dev/fuse. Default 4. */
  readers?: number;
  /** Kernel readahead in KiB (root only). Default 1024. */
  readaheadKb?: number;
  /** Log sink; EIO causes are logged at `error`. */
  log?: Logger;
}

/** A mounted store. */
export interface MountHandle {
  /** The absolute mount point. */
  readonly mountpoint: string;
  /** Resolves once the filesystem is unmounted (by us or externally) and serving has stopped. */
  readonly unmounted: Promise<void>;
  /**
   * Unmounts and resolves when serving has stopped. A busy mount is detached lazily and served
   * until its files are closed, or with `force` (root only) its connection is aborted.
   */
  unmount(opts?: { force?: boolean }): Promise<void>;
}

/** Mounts the store read-only at `mountpoint` and serves it until unmounted. */
export async function mountStore(opts: MountStoreOptions): Promise<MountHandle> {
  const fs = new StoreFs(opts);
  const session = await FuseSession.mount(fs, {
    mountpoint: opts.mountpoint,
    allowOther: opts.allowOther,
    method: opts.method,
    readers: opts.readers,
    readaheadKb: opts.readaheadKb,
    log: opts.log,
  });
  return {
    mountpoint: session.mountpoint,
    unmounted: session.closed,
    unmount: (o) => session.unmount(o),
  };
}
