/**
 * The store as a read-only FUSE filesystem, spoken over `/dev/fuse` from TypeScript: each store
 * path is a directory entry of the mount's root. {@linkcode mountStore} mounts it; as root
 * through `mount(2)`, otherwise through `fusermount3`.
 *
 * @module
 */
import type { BlobService } from "../castore/blob_service.ts";
import type { DirectoryService } from "../castore/directory_service.ts";
import type { PathInfoService } from "../store/path_info_service.ts";
import { FuseSession, type Logger } from "./session.ts";
import { StoreFs } from "./store_fs.ts";

export type { Logger, LogLevel } from "./session.ts";

/**
 * Options for {@linkcode mountStore}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import { mountStore, type MountStoreOptions } from "@nixcas/nixcas/fuse";
 * import { importStorePath } from "@nixcas/nixcas/store";
 * // Mounting needs /dev/fuse (and root, or fusermount3 for other users).
 * const haveFuse = await Deno.stat("/dev/fuse").then(() => true, () => false);
 * if (haveFuse) {
 *   const dir = await Deno.makeTempDir();
 *   await Deno.mkdir(`${dir}/mnt`);
 *   await Deno.writeTextFile(`${dir}/hello.txt`, "Hello, world!\n");
 *   const store = await openStore("memory://");
 *   const { storePath } = await importStorePath(`${dir}/hello.txt`, store);
 *   const opts: MountStoreOptions = { mountpoint: `${dir}/mnt`, ...store, listRoot: true };
 *   const handle = await mountStore(opts);
 *   // With listRoot, the root lists every store path.
 *   const names = await Array.fromAsync(Deno.readDir(`${dir}/mnt`), (e) => e.name);
 *   await handle.unmount();
 *   assert.deepEqual(names, [storePath.toString()]);
 *   await store.close();
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
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

/**
 * A mounted store, as {@linkcode mountStore} returns it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import { type MountHandle, mountStore } from "@nixcas/nixcas/fuse";
 * import { importStorePath } from "@nixcas/nixcas/store";
 * // Mounting needs /dev/fuse (and root, or fusermount3 for other users).
 * const haveFuse = await Deno.stat("/dev/fuse").then(() => true, () => false);
 * if (haveFuse) {
 *   const dir = await Deno.makeTempDir();
 *   await Deno.mkdir(`${dir}/mnt`);
 *   await Deno.writeTextFile(`${dir}/hello.txt`, "Hello, world!\n");
 *   const store = await openStore("memory://");
 *   const { storePath } = await importStorePath(`${dir}/hello.txt`, store);
 *   const handle: MountHandle = await mountStore({ mountpoint: `${dir}/mnt`, ...store });
 *   const file = `${handle.mountpoint}/${storePath}`;
 *   assert.equal(await Deno.readTextFile(file), "Hello, world!\n");
 *   await handle.unmount();
 *   await handle.unmounted; // already resolved
 *   // The empty directory is back:
 *   await assert.rejects(Deno.readTextFile(file), Deno.errors.NotFound);
 *   await store.close();
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
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

/**
 * Mounts the store read-only at `mountpoint` and serves it until unmounted.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import { mountStore } from "@nixcas/nixcas/fuse";
 * import { importStorePath } from "@nixcas/nixcas/store";
 * // Mounting needs /dev/fuse (and root, or fusermount3 for other users).
 * const haveFuse = await Deno.stat("/dev/fuse").then(() => true, () => false);
 * if (haveFuse) {
 *   const dir = await Deno.makeTempDir();
 *   await Deno.mkdir(`${dir}/mnt`);
 *   await Deno.writeTextFile(`${dir}/hello.txt`, "Hello, world!\n");
 *   const store = await openStore("memory://");
 *   const { storePath } = await importStorePath(`${dir}/hello.txt`, store);
 *   const handle = await mountStore({ mountpoint: `${dir}/mnt`, ...store });
 *   try {
 *     const text = await Deno.readTextFile(`${dir}/mnt/${storePath}`);
 *     assert.equal(text, "Hello, world!\n");
 *     // Read-only, whoever asks:
 *     await assert.rejects(Deno.writeTextFile(`${dir}/mnt/${storePath}`, "changed"));
 *   } finally {
 *     await handle.unmount();
 *   }
 *   await store.close();
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
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
