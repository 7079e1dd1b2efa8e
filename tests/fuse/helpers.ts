/**
 * Fixtures and a mount helper for the FUSE tests: the seed's populate functions over memory
 * services, and {@linkcode withMount}, which always unmounts (lazily as a last resort).
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import type { BlobService } from "../../src/castore/blob_service.ts";
import { putBlob } from "../../src/castore/blob_util.ts";
import { type B3Digest, blake3 } from "../../src/castore/digest.ts";
import { toHex } from "../../src/base/bytes.ts";
import {
  type AnyNode,
  type Directory,
  directoryDigest,
  directoryNodeFor,
  makeDirectory,
  toNodeMessage,
} from "../../src/castore/directory.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import type { DirectoryService } from "../../src/castore/directory_service.ts";
import { type MountHandle, mountStore, type MountStoreOptions } from "../../src/fuse/mod.ts";
import { StorePath } from "../../src/store/store_path.ts";
import { type PathInfo, PathInfoSchema } from "../../src/gen/tvix/store/protos/pathinfo_pb.ts";
import type { NarCalculation, PathInfoService } from "../../src/store/path_info_service.ts";

/** True when this machine can mount FUSE filesystems. */
export const HAVE_FUSE: boolean = (() => {
  try {
    Deno.statSync("/dev/fuse");
    return true;
  } catch {
    return false;
  }
})();
if (!HAVE_FUSE) console.error("/dev/fuse is missing: skipping FUSE mount tests");

/** A PathInfoService over a Map, keyed by the store path digest of the root node's name. */
export class MapPathInfoService implements PathInfoService {
  /** Stored infos by hex digest. */
  readonly infos = new Map<string, PathInfo>();
  /** @inheritdoc */
  get(digest: Uint8Array): Promise<PathInfo | null> {
    return Promise.resolve(this.infos.get(toHex(digest)) ?? null);
  }
  /** @inheritdoc */
  put(info: PathInfo): Promise<PathInfo> {
    const name = (info.node!.node.value as { name: Uint8Array }).name;
    const parsed = StorePath.fromBytes(name);
    this.infos.set(toHex(parsed.digest), info);
    return Promise.resolve(info);
  }
  /** @inheritdoc */
  calculateNar(_node: AnyNode): Promise<NarCalculation> {
    return Promise.reject(new Error("not implemented"));
  }
  /** @inheritdoc */
  async *list(): AsyncIterable<PathInfo> {
    yield* this.infos.values();
  }
  /** @inheritdoc */
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** The three services a mount needs. */
export interface Services {
  /** Blobs. */
  blobs: BlobService;
  /** Directories. */
  directories: DirectoryService;
  /** Path infos. */
  pathInfos: MapPathInfoService;
}

/** Fresh memory services. */
export function genSvcs(): Services {
  return {
    blobs: new MemoryBlobService(),
    directories: new MemoryDirectoryService(),
    pathInfos: new MapPathInfoService(),
  };
}

const enc = new TextEncoder();
/** UTF-8 bytes of a string. */
export const b = (s: string): Uint8Array => enc.encode(s);

/** Store path names used by the seed's tests. */
export const BLOB_A_NAME = "00000000000000000000000000000000-test";
/** A large file. */
export const BLOB_B_NAME = "55555555555555555555555555555555-test";
/** An executable file. */
export const HELLOWORLD_BLOB_NAME = "66666666666666666666666666666666-test";
/** A symlink to BLOB_A_NAME. */
export const SYMLINK_NAME = "11111111111111111111111111111111-test";
/** A symlink to /nix/store/somewhereelse. */
export const SYMLINK_NAME2 = "44444444444444444444444444444444-test";
/** A directory holding an empty `.keep`. */
export const DIRECTORY_WITH_KEEP_NAME = "22222222222222222222222222222222-test";
/** `.keep`, `aa` -> /nix/store/somewhereelse, `keep/` = DIRECTORY_WITH_KEEP. */
export const DIRECTORY_COMPLICATED_NAME = "33333333333333333333333333333333-test";

/** Deterministic pseudo-random bytes. */
export function pattern(len: number, seed = 1): Uint8Array {
  const out = new Uint8Array(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Fixture contents. */
export const BLOB_A: Uint8Array = new Uint8Array([0x00, 0x01, 0x02]);
/** Over 3 MiB, not a multiple of anything. */
export const BLOB_B: Uint8Array = pattern(3 * 1024 * 1024 + 12345, 7);
/** "Hello World!". */
export const HELLOWORLD: Uint8Array = b("Hello World!");
/** The empty blob. */
export const EMPTY: Uint8Array = new Uint8Array(0);

/** DIRECTORY_WITH_KEEP: one empty file `.keep`. */
export const DIRECTORY_WITH_KEEP: Directory = makeDirectory({
  files: [{
    $typeName: "tvix.castore.v1.FileNode",
    name: b(".keep"),
    digest: blake3(EMPTY).bytes,
    size: 0,
    executable: false,
  }],
});

/** DIRECTORY_COMPLICATED: `.keep`, `aa` (symlink), `keep/` (DIRECTORY_WITH_KEEP). */
export const DIRECTORY_COMPLICATED: Directory = makeDirectory({
  directories: [directoryNodeFor(b("keep"), DIRECTORY_WITH_KEEP)],
  files: [{
    $typeName: "tvix.castore.v1.FileNode",
    name: b(".keep"),
    digest: blake3(EMPTY).bytes,
    size: 0,
    executable: false,
  }],
  symlinks: [{
    $typeName: "tvix.castore.v1.SymlinkNode",
    name: b("aa"),
    target: b("/nix/store/somewhereelse"),
  }],
});

/** A PathInfo for a root node. */
export function pathInfo(node: AnyNode): PathInfo {
  return create(PathInfoSchema, { node: toNodeMessage(node) });
}

/** A file root node. */
export function fileNode(name: string | Uint8Array, data: Uint8Array, executable = false): AnyNode {
  return {
    case: "file",
    value: {
      $typeName: "tvix.castore.v1.FileNode",
      name: typeof name === "string" ? b(name) : name,
      digest: blake3(data).bytes,
      size: data.length,
      executable,
    },
  };
}

/** A symlink root node. */
export function symlinkNode(name: string, target: string): AnyNode {
  return {
    case: "symlink",
    value: { $typeName: "tvix.castore.v1.SymlinkNode", name: b(name), target: b(target) },
  };
}

/** A directory root node. */
export function dirNode(name: string, dir: Directory): AnyNode {
  return { case: "directory", value: directoryNodeFor(b(name), dir) };
}

/** Seed populate functions. */
export const populate = {
  async blobA(s: Services) {
    await putBlob(s.blobs, BLOB_A);
    await s.pathInfos.put(pathInfo(fileNode(BLOB_A_NAME, BLOB_A)));
  },
  async blobB(s: Services) {
    await putBlob(s.blobs, BLOB_B);
    await s.pathInfos.put(pathInfo(fileNode(BLOB_B_NAME, BLOB_B)));
  },
  async helloworld(s: Services) {
    await putBlob(s.blobs, HELLOWORLD);
    await s.pathInfos.put(pathInfo(fileNode(HELLOWORLD_BLOB_NAME, HELLOWORLD, true)));
  },
  async symlink(s: Services) {
    await s.pathInfos.put(pathInfo(symlinkNode(SYMLINK_NAME, BLOB_A_NAME)));
  },
  async symlink2(s: Services) {
    await s.pathInfos.put(pathInfo(symlinkNode(SYMLINK_NAME2, "/nix/store/somewhereelse")));
  },
  async directoryWithKeep(s: Services) {
    await putBlob(s.blobs, EMPTY);
    await s.directories.put(DIRECTORY_WITH_KEEP);
    await s.pathInfos.put(pathInfo(dirNode(DIRECTORY_WITH_KEEP_NAME, DIRECTORY_WITH_KEEP)));
  },
  async pathInfoWithoutDirectory(s: Services) {
    await s.pathInfos.put(pathInfo(dirNode(DIRECTORY_WITH_KEEP_NAME, DIRECTORY_WITH_KEEP)));
  },
  async blobAWithoutBlob(s: Services) {
    await s.pathInfos.put(pathInfo(fileNode(BLOB_A_NAME, BLOB_A)));
  },
  async directoryComplicated(s: Services) {
    await putBlob(s.blobs, EMPTY);
    await s.directories.put(DIRECTORY_WITH_KEEP);
    await s.directories.put(DIRECTORY_COMPLICATED);
    await s.pathInfos.put(pathInfo(dirNode(DIRECTORY_COMPLICATED_NAME, DIRECTORY_COMPLICATED)));
  },
};

/** Log lines collected during a mount. */
export type LogLines = string[];

/**
 * Mounts `svcs` on a fresh temporary directory, runs `fn`, and always unmounts (a lazy
 * `umount -l` of that mountpoint if the clean unmount does not finish) and removes the
 * directory.
 */
export async function withMount(
  svcs: Services,
  fn: (mnt: string, logs: LogLines, handle: MountHandle) => Promise<void>,
  opts: Partial<MountStoreOptions> & { watchdogMs?: number } = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "nixcas-fuse-" });
  const logs: LogLines = [];
  let handle: MountHandle | null = null;
  try {
    handle = await mountStore({
      ...svcs,
      mountpoint: dir,
      log: (level, msg) => logs.push(`${level}: ${msg}`),
      ...opts,
    });
    // A hung request would hang this process for good (its own threads wait on itself), so a
    // watchdog aborts the connection: pending file operations then fail instead.
    const h = handle;
    const watchdog = setTimeout(() => {
      console.error(`watchdog: aborting the mount at ${dir}`);
      h.unmount({ force: true }).catch(() => {});
    }, opts.watchdogMs ?? 60_000);
    try {
      await fn(handle.mountpoint, logs, handle);
    } finally {
      clearTimeout(watchdog);
    }
  } finally {
    if (handle) await unmountOrDetach(handle, dir);
    await Deno.remove(dir).catch(() => {});
  }
}

/**
 * Unmounts, aborting the connection when the mount is busy (Deno 2.9 leaks the directory fd
 * when a `Deno.readDir` iteration fails); falls back to `umount -l` on the mountpoint.
 */
export async function unmountOrDetach(handle: MountHandle, dir: string): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), 5000));
  try {
    const r = await Promise.race([
      handle.unmount({ force: true }).then(() => "ok" as const),
      timeout,
    ]);
    if (r === "ok") return;
  } catch (e) {
    console.error(`unmount failed: ${e}`);
  } finally {
    clearTimeout(timer);
  }
  await new Deno.Command("umount", { args: ["-l", dir] }).output();
  await handle.unmounted;
}

/** Runs a command and returns its stdout bytes; throws with stderr when it fails. */
export async function run(cmd: string, args: string[]): Promise<Uint8Array> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return out.stdout;
}

/** The digest of some bytes. */
export const digestOf = (data: Uint8Array): B3Digest => blake3(data);
/** The digest of a directory. */
export const dirDigest = (d: Directory): B3Digest => directoryDigest(d);
