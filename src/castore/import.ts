/**
 * Importing a filesystem tree into castore (tvix's `ingest_path`): file contents become blobs,
 * directories become Directory messages put leaves first, and the root node is returned.
 *
 * Names and symlink targets are raw bytes (read through libc, see `../sys/libc.ts`), entries
 * are sorted byte-wise, symlinks are never followed (a root symlink is imported as a symlink), a
 * regular file is executable iff its owner-execute bit is set, and FIFOs, sockets and devices
 * are errors — the same rules as Nix's `dump`.
 *
 * @module
 */
import { B3_LEN, type B3Digest } from "./digest.ts";
import { HASH_BUFFER_LEN, returnHashBuffer, takeHashBuffer } from "../hash/blake3.ts";
import {
  type AnyNode,
  directoryDigest,
  type DirectoryNode,
  directorySize,
  type FileNode,
  isValidName,
  makeDirectory,
  type SymlinkNode,
} from "./directory.ts";
import { compareBytes } from "../base/bytes.ts";
import { InvalidRequestError, StorageError } from "../base/errors.ts";
import { type BlobService, type BlobWriter, CHUNK_SIZE } from "./blob_service.ts";
import { putSmallBlob } from "./blob_util.ts";
import type { DirectoryPutter, DirectoryService } from "./directory_service.ts";
import * as libc from "../sys/libc.ts";
import type { NarSlot, OrderedNarHasher } from "../nar/hash.ts";
import { NarWriter } from "../nar/writer.ts";

/**
 * A FIFO, socket, device (or unknown inode type) was found where Nix allows none.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   importPath,
 *   MemoryBlobService,
 *   MemoryDirectoryService,
 *   UnsupportedFileTypeError,
 * } from "../../mod.ts";
 * const dir = await Deno.makeTempDir();
 * const listener = Deno.listen({ transport: "unix", path: `${dir}/app.sock` });
 * await assert.rejects(
 *   importPath(dir, new MemoryBlobService(), new MemoryDirectoryService()),
 *   (e) => {
 *     assert(e instanceof UnsupportedFileTypeError);
 *     assert.equal(e.kind, "socket");
 *     assert.equal(new TextDecoder().decode(e.path), `${dir}/app.sock`);
 *     return true;
 *   },
 * );
 * listener.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class UnsupportedFileTypeError extends InvalidRequestError {
  /** What was found, e.g. `fifo`. */
  readonly kind: libc.FileKind;
  /** The path at fault, raw bytes. */
  readonly path: Uint8Array;

  /** Creates the error: `unsupported file type (<kind>): <path>`. */
  constructor(kind: libc.FileKind, path: Uint8Array) {
    super(`unsupported file type (${kind}): ${libc.displayPath(path)}`);
    this.name = "UnsupportedFileTypeError";
    this.kind = kind;
    this.path = path;
  }
}

/**
 * Fields every walk entry has.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { walk, type WalkEntryBase } from "../../mod.ts";
 * const tmp = await Deno.makeTempDir();
 * await Deno.mkdir(`${tmp}/hello/bin`, { recursive: true });
 * await Deno.writeTextFile(`${tmp}/hello/bin/hello`, "#!/bin/sh\necho hi\n");
 * await Deno.writeTextFile(`${tmp}/hello/README`, "Hello, world!\n");
 * // An indented listing, like `tree`.
 * const line = (e: WalkEntryBase) => "  ".repeat(e.depth) + new TextDecoder().decode(e.name);
 * const lines = [...walk(`${tmp}/hello`)].filter((e) => e.kind !== "end").map(line);
 * assert.deepEqual(lines, ["hello", "  README", "  bin", "    hello"]);
 * await Deno.remove(tmp, { recursive: true });
 * ```
 */
export interface WalkEntryBase {
  /** The full path, raw bytes (the root is the path as given, trailing slashes removed). */
  path: Uint8Array;
  /** The last component, raw bytes: the node's name. */
  name: Uint8Array;
  /** 0 for the root, 1 for its entries, and so on. */
  depth: number;
}

/**
 * A directory is entered; its entries follow, then a matching {@linkcode WalkEnd}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { walk, type WalkDirectory } from "../../mod.ts";
 * const tmp = await Deno.makeTempDir();
 * await Deno.mkdir(`${tmp}/hello/share/doc`, { recursive: true });
 * const dirs: WalkDirectory[] = [];
 * for (const e of walk(`${tmp}/hello`)) if (e.kind === "directory") dirs.push(e);
 * const paths = dirs.map((d) => new TextDecoder().decode(d.path).slice(tmp.length));
 * assert.deepEqual(paths, ["/hello", "/hello/share", "/hello/share/doc"]);
 * await Deno.remove(tmp, { recursive: true });
 * ```
 */
export interface WalkDirectory extends WalkEntryBase {
  /** Discriminant. */
  kind: "directory";
  /** `st_mode` (ignored by Nix and castore for directories). */
  mode: number;
}

/**
 * A regular file.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { walk, type WalkFile } from "../../mod.ts";
 * const tmp = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${tmp}/README`, "Hello, world!\n");
 * await Deno.writeTextFile(`${tmp}/run.sh`, "#!/bin/sh\necho hi\n", { mode: 0o755 });
 * const files: WalkFile[] = [];
 * for (const e of walk(tmp)) if (e.kind === "file") files.push(e);
 * const dec = new TextDecoder();
 * const listing = files.map((f) => `${dec.decode(f.name)} ${f.size} ${f.executable}`);
 * assert.deepEqual(listing, ["README 14 false", "run.sh 18 true"]);
 * await Deno.remove(tmp, { recursive: true });
 * ```
 */
export interface WalkFile extends WalkEntryBase {
  /** Discriminant. */
  kind: "file";
  /** `st_mode`. */
  mode: number;
  /** `st_size` when it was stat'ed. */
  size: number;
  /** The owner-execute bit (`mode & 0o100`), the rule Nix uses. */
  executable: boolean;
  /**
   * True when `mode` and `size` were read (fstat) from the descriptor that the first
   * {@linkcode WalkFile.open} call returns, so they describe exactly what will be read.
   */
  statFromDescriptor: boolean;
  /**
   * Opens the file for reading (O_NOFOLLOW) relative to its already open parent directory and
   * returns the descriptor, which the caller must close. Only valid until the walk advances.
   */
  open(): number;
}

/**
 * A symbolic link (never followed).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { walk, type WalkSymlink } from "../../mod.ts";
 * const tmp = await Deno.makeTempDir();
 * await Deno.symlink("/nowhere", `${tmp}/dangling`); // its target need not exist
 * const [root, link] = walk(tmp);
 * assert.equal(root.kind, "directory");
 * assert(link.kind === "symlink");
 * const symlink: WalkSymlink = link;
 * assert.equal(new TextDecoder().decode(symlink.target), "/nowhere");
 * await Deno.remove(tmp, { recursive: true });
 * ```
 */
export interface WalkSymlink extends WalkEntryBase {
  /** Discriminant. */
  kind: "symlink";
  /** The raw target bytes. */
  target: Uint8Array;
}

/**
 * The directory at `path` has no more entries (emitted for the root directory too).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { walk, type WalkEnd } from "../../mod.ts";
 * const tmp = await Deno.makeTempDir();
 * await Deno.mkdir(`${tmp}/hello/bin`, { recursive: true });
 * await Deno.writeTextFile(`${tmp}/hello/bin/hello`, "#!/bin/sh\necho hi\n");
 * await Deno.writeTextFile(`${tmp}/hello/README`, "Hello, world!\n");
 * // Counts each directory's entries: a directory is complete at its "end".
 * const open: number[] = [];
 * const counts: string[] = [];
 * for (const e of walk(`${tmp}/hello`)) {
 *   if (e.kind !== "end" && e.depth > 0) open[open.length - 1]++;
 *   if (e.kind === "directory") open.push(0);
 *   if (e.kind === "end") {
 *     const end: WalkEnd = e;
 *     counts.push(`${new TextDecoder().decode(end.name)}: ${open.pop()}`);
 *   }
 * }
 * assert.deepEqual(counts, ["bin: 1", "hello: 2"]); // children first
 * await Deno.remove(tmp, { recursive: true });
 * ```
 */
export interface WalkEnd extends WalkEntryBase {
  /** Discriminant. */
  kind: "end";
}

/**
 * One step of {@linkcode walk}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { walk, type WalkEntry } from "../../mod.ts";
 * const dec = new TextDecoder();
 * // Like `ls -F`: directories get "/", executables "*", symlinks their target.
 * function describe(e: WalkEntry): string | null {
 *   const name = dec.decode(e.name);
 *   switch (e.kind) {
 *     case "directory":
 *       return `${name}/`;
 *     case "file":
 *       return e.executable ? `${name}*` : name;
 *     case "symlink":
 *       return `${name} -> ${dec.decode(e.target)}`;
 *     case "end":
 *       return null;
 *   }
 * }
 * const tmp = await Deno.makeTempDir();
 * await Deno.mkdir(`${tmp}/hello/bin`, { recursive: true });
 * await Deno.writeTextFile(`${tmp}/hello/bin/hello`, "#!/bin/sh\necho hi\n", { mode: 0o755 });
 * await Deno.symlink("bin/hello", `${tmp}/hello/run`);
 * const lines = [...walk(`${tmp}/hello`)].map(describe).filter((l) => l !== null);
 * assert.deepEqual(lines, ["hello/", "bin/", "hello*", "run -> bin/hello"]);
 * await Deno.remove(tmp, { recursive: true });
 * ```
 */
export type WalkEntry = WalkDirectory | WalkFile | WalkSymlink | WalkEnd;

/**
 * Walks the tree at `path` depth-first, parents before children, each directory's entries in
 * byte-wise name order, with a `"end"` entry after each directory's last entry (so both the
 * NAR order and leaves-first order can be derived in one pass). Symlinks are not followed, not
 * even at the root.
 *
 * Synchronous (metadata calls are microseconds) but usable with `for await`. Throws
 * {@linkcode UnsupportedFileTypeError} at a FIFO, socket or device and {@linkcode libc.LibcError}
 * (naming the path) when a call fails, e.g. `ENOENT: /x/missing (...)`. Descriptors are
 * released when the walk finishes, throws, or the consumer stops early.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { walk } from "../../mod.ts";
 * const tmp = await Deno.makeTempDir();
 * await Deno.mkdir(`${tmp}/hello/bin`, { recursive: true });
 * await Deno.writeTextFile(`${tmp}/hello/bin/hello`, "#!/bin/sh\necho hi\n", { mode: 0o755 });
 * await Deno.writeTextFile(`${tmp}/hello/README`, "Hello, world!\n");
 * const kinds = [...walk(`${tmp}/hello`)].map((e) => e.kind);
 * assert.deepEqual(kinds, ["directory", "file", "directory", "file", "end", "end"]);
 *
 * // Stopping early is fine: the walk's descriptors are released.
 * let firstExecutable: string | undefined;
 * for (const e of walk(`${tmp}/hello`)) {
 *   if (e.kind === "file" && e.executable) {
 *     firstExecutable = new TextDecoder().decode(e.path);
 *     break;
 *   }
 * }
 * assert.equal(firstExecutable, `${tmp}/hello/bin/hello`);
 * await Deno.remove(tmp, { recursive: true });
 * ```
 */
export function* walk(path: string | Uint8Array): Generator<WalkEntry, void, undefined> {
  const root = libc.stripTrailingSlashes(libc.toBytes(path));
  const rootName = libc.basename(root);
  if (!isValidName(rootName)) {
    throw new InvalidRequestError(
      `cannot import ${libc.displayPath(root)}: its last component is not a valid name`,
    );
  }
  // Bumped on every resume, so a file entry's open() can refuse once its parent fd may be gone.
  let step = 0;
  // A file the walk opened itself (to stat it through its descriptor) and has not handed over.
  let unclaimed = -1;
  const release = () => {
    if (unclaimed >= 0) libc.close(unclaimed);
    unclaimed = -1;
  };
  const fileEntry = (
    dirfd: number,
    at: Uint8Array,
    path: Uint8Array,
    name: Uint8Array,
    depth: number,
    st: libc.Stat,
    fd: number,
  ): WalkFile => {
    const mine = step;
    unclaimed = fd;
    return {
      kind: "file",
      path,
      name,
      depth,
      mode: st.mode,
      size: st.size,
      executable: (st.mode & 0o100) !== 0,
      statFromDescriptor: fd >= 0,
      open: () => {
        if (step !== mine) throw new Error("WalkFile.open() called after the walk moved on");
        if (unclaimed >= 0) {
          const mineFd = unclaimed;
          unclaimed = -1;
          return mineFd;
        }
        return libc.openFileAt(dirfd, at, path);
      },
    };
  };
  const entry = (
    dirfd: number,
    at: Uint8Array,
    path: Uint8Array,
    name: Uint8Array,
    depth: number,
    st: libc.Stat,
  ): WalkEntry => {
    const kind = libc.fileKind(st.mode);
    switch (kind) {
      case "directory":
        return { kind, path, name, depth, mode: st.mode };
      case "symlink":
        return { kind, path, name, depth, target: libc.readlinkAt(dirfd, at, st.size, path) };
      case "file":
        return fileEntry(dirfd, at, path, name, depth, st, -1);
      default:
        throw new UnsupportedFileTypeError(kind, path);
    }
  };
  // What readdir's d_type promises is checked on the object itself, saving the lstat: a
  // regular file is opened (O_NOFOLLOW, O_NONBLOCK) and stat'ed through its descriptor, a
  // symlink is read with readlinkat. If the entry changed meanwhile, lstat decides as usual.
  const child = (
    dirfd: number,
    d: libc.DirEntry,
    path: Uint8Array,
    depth: number,
  ): WalkEntry => {
    if (d.type === libc.DT_REG) {
      let fd = -1;
      try {
        fd = libc.openFileAt(dirfd, d.name, path);
      } catch (e) {
        if (!(e instanceof libc.LibcError && e.code === "ELOOP")) throw e;
      }
      if (fd >= 0) {
        let st: libc.Stat;
        try {
          st = libc.fstat(fd, path);
        } catch (e) {
          libc.close(fd);
          throw e;
        }
        if (libc.fileKind(st.mode) === "file") {
          return fileEntry(dirfd, d.name, path, d.name, depth, st, fd);
        }
        libc.close(fd);
      }
    } else if (d.type === libc.DT_LNK) {
      try {
        const target = libc.readlinkAt(dirfd, d.name, 0, path);
        return { kind: "symlink", path, name: d.name, depth, target };
      } catch (e) {
        if (!(e instanceof libc.LibcError && e.code === "EINVAL")) throw e;
      }
    }
    return entry(dirfd, d.name, path, d.name, depth, libc.lstatAt(dirfd, d.name, path));
  };

  const first = entry(libc.AT_FDCWD, root, root, rootName, 0, libc.lstatAt(libc.AT_FDCWD, root));
  try {
    yield first;
  } finally {
    release();
  }
  step++;
  if (first.kind !== "directory") return;

  interface Level {
    fd: number;
    path: Uint8Array;
    name: Uint8Array;
    entries: libc.DirEntry[];
    next: number;
  }
  const stack: Level[] = [];
  const enter = (dirfd: number, at: Uint8Array, path: Uint8Array, name: Uint8Array) => {
    const fd = libc.openDirAt(dirfd, at, path);
    try {
      const entries = libc.readDir(fd, path).sort((a, b) => compareBytes(a.name, b.name));
      stack.push({ fd, path, name, entries, next: 0 });
    } catch (e) {
      libc.close(fd);
      throw e;
    }
  };
  try {
    enter(libc.AT_FDCWD, root, root, rootName);
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      if (top.next === top.entries.length) {
        stack.pop();
        libc.close(top.fd);
        yield { kind: "end", path: top.path, name: top.name, depth: stack.length };
        step++;
        continue;
      }
      const d = top.entries[top.next++];
      const path = libc.joinPath(top.path, d.name);
      const e = child(top.fd, d, path, stack.length);
      yield e;
      release();
      step++;
      if (e.kind === "directory") enter(top.fd, d.name, path, d.name);
    }
  } finally {
    release();
    for (const level of stack) libc.close(level.fd);
  }
}

/**
 * Running totals reported by {@linkcode ImportOptions.onProgress}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   importPath,
 *   type ImportProgress,
 *   MemoryBlobService,
 *   MemoryDirectoryService,
 * } from "../../mod.ts";
 * const tmp = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${tmp}/README`, "Hello, world!\n");
 * await Deno.writeFile(`${tmp}/data.bin`, new Uint8Array(3 << 20)); // 3 MiB
 * const seen: ImportProgress[] = [];
 * await importPath(tmp, new MemoryBlobService(), new MemoryDirectoryService(), {
 *   onProgress: (p) => seen.push(p),
 * });
 * const total = (3 << 20) + 14;
 * assert.deepEqual(seen.at(-1), { files: 2, bytes: total, totalFiles: 2, totalBytes: total });
 * assert(seen.length > 2); // big files report after every chunk
 * await Deno.remove(tmp, { recursive: true });
 * ```
 */
export interface ImportProgress {
  /** Files completely uploaded so far. */
  files: number;
  /** File content bytes uploaded so far. */
  bytes: number;
  /** All files to upload, once known: at once for a single file, else when the walk ended. */
  totalFiles?: number;
  /** All file content bytes to upload, known when `totalFiles` is. */
  totalBytes?: number;
}

/**
 * Options of {@linkcode importPath}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   calculateNar,
 *   importPath,
 *   type ImportOptions,
 *   MemoryBlobService,
 *   MemoryDirectoryService,
 *   OrderedNarHasher,
 * } from "../../mod.ts";
 * const tmp = await Deno.makeTempDir();
 * await Deno.mkdir(`${tmp}/hello/bin`, { recursive: true });
 * await Deno.writeTextFile(`${tmp}/hello/bin/hello`, "#!/bin/sh\necho hi\n", { mode: 0o755 });
 * await Deno.writeTextFile(`${tmp}/hello/README`, "Hello, world!\n");
 * const narHasher = new OrderedNarHasher();
 * const opts: ImportOptions = { concurrency: 2, narHasher };
 * const blobs = new MemoryBlobService();
 * const directories = new MemoryDirectoryService();
 * const root = await importPath(`${tmp}/hello`, blobs, directories, opts);
 * // The NAR hashed during the import is the one rendered from the stored tree.
 * assert.deepEqual(await narHasher.result(), await calculateNar(root, blobs, directories));
 * await Deno.remove(tmp, { recursive: true });
 * ```
 */
export interface ImportOptions {
  /**
   * How many files are uploaded at once (default 8). It also bounds memory: up to 3 MiB of
   * buffers per big-file upload, and per unit 2 MiB (or 256 files) of small files handed to
   * `blobs` and not stored yet. The result does not depend on it.
   */
  concurrency?: number;
  /**
   * Called after every chunk and every finished file, with running totals (a tree of small
   * files also lets the event loop run every few files, so a progress timer keeps firing).
   */
  onProgress?: (progress: ImportProgress) => void;
  /**
   * Also hash the NAR of the tree in the same pass (files are read once): structure and file
   * contents go to this hasher in NAR order; read its `result()` after the import.
   */
  narHasher?: OrderedNarHasher;
}

// Files up to this size are read with one synchronous pread: from the page cache that takes a
// few microseconds, less than a round trip through the blocking thread pool.
const SYNC_READ_MAX = 64 * 1024;
// Chunks of one big file in flight at once (read, being hashed, or being stored).
const BIG_FILE_BUFFERS = 3;
// Past this many bytes held for the NAR hash behind a big file, the walk waits for uploads.
const HELD_MAX = 32 << 20;
// Small files are handed to the blob service without awaiting each one; per upload permit,
// this many bytes and files may be handed over and not stored yet before the walk waits.
const SMALL_BYTES_PER_PERMIT = 2 << 20;
const SMALL_FILES_PER_PERMIT = 256;
// Past this many bytes not yet hashed for the NAR (copies waiting for the SHA-256 thread), the
// walk waits.
const HASH_BACKLOG_MAX = 16 << 20;
// After this much synchronous work (file bytes, plus ENTRY_COST per entry) the walk lets the
// event loop run: the SHA-256 thread's results, batched commits and progress timers all wait
// for it, and the NAR hash's stage is this size, so each turn hands it one piece.
const TURN_BYTES = 256 << 10;
const ENTRY_COST = 4 << 10;
// castore's FileNode.size is a uint32.
const MAX_FILE_SIZE = 0xffff_ffff;

/** Thrown inside uploads that stop because another part of the import failed. */
const CANCELLED = new Error("import cancelled");

/**
 * Imports the file, directory or symlink at `path` into castore and returns its root node,
 * named with the basename of `path`.
 *
 * File contents are streamed into `blobs.openWrite()` in chunks of at most
 * {@linkcode CHUNK_SIZE} (memory does not grow with file size), up to `concurrency` files at once.
 * Directories go leaves first through one `directories.putMultipleStart()` putter, each distinct
 * directory once; the putter is closed (and its root digest checked) only when everything
 * succeeded. A root that is a file or symlink puts no directories.
 *
 * On error (a missing path, a FIFO, an unreadable file, a failing service) the walk stops, every
 * open blob writer is aborted, the putter is left unclosed, and the first error is thrown; it
 * names the path at fault.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   B3Digest,
 *   importPath,
 *   MemoryBlobService,
 *   MemoryDirectoryService,
 *   readBlob,
 * } from "../../mod.ts";
 * const tmp = await Deno.makeTempDir();
 * await Deno.mkdir(`${tmp}/hello/bin`, { recursive: true });
 * await Deno.writeTextFile(`${tmp}/hello/bin/hello`, "#!/bin/sh\necho hi\n", { mode: 0o755 });
 * await Deno.writeTextFile(`${tmp}/hello/README`, "Hello, world!\n");
 * await Deno.symlink("bin/hello", `${tmp}/hello/run`);
 *
 * const blobs = new MemoryBlobService();
 * const directories = new MemoryDirectoryService();
 * const root = await importPath(`${tmp}/hello`, blobs, directories);
 * assert(root.case === "directory");
 * assert.equal(new TextDecoder().decode(root.value.name), "hello");
 * assert.equal(root.value.size, 4); // README, bin, bin/hello and run
 * const dir = await directories.get(B3Digest.fromBytes(root.value.digest));
 * const readme = dir!.files[0];
 * const text = await readBlob(blobs, B3Digest.fromBytes(readme.digest));
 * assert.equal(new TextDecoder().decode(text), "Hello, world!\n");
 * await Deno.remove(tmp, { recursive: true });
 * ```
 */
export async function importPath(
  path: string | Uint8Array,
  blobs: BlobService,
  directories: DirectoryService,
  opts: ImportOptions = {},
): Promise<AnyNode> {
  const limit = Math.max(1, Math.floor(opts.concurrency ?? 8));
  let failure: { error: unknown } | null = null;
  const fail = (error: unknown) => {
    failure ??= { error };
  };

  // Uploads in flight: big files share `limit` permits (each holds up to BIG_FILE_BUFFERS 1 MiB
  // buffers); small files, read in one synchronous pread, get more, so their blob commits can be
  // batched.
  const bigPermits = semaphore(limit);
  const smallPermits = semaphore(limit * 8);
  const inflight = new Set<Promise<unknown>>();
  const narHasher = opts.narHasher ?? null;

  // Buffers the BLAKE3 hasher reads where they lie (a copy less per byte), while there are.
  const pool: Uint8Array[] = [];
  const getBuffer = () =>
    pool.pop() ?? (HASH_BUFFER_LEN === CHUNK_SIZE ? takeHashBuffer() : new Uint8Array(CHUNK_SIZE));
  const putBuffer = (b: Uint8Array) => {
    if (pool.length < BIG_FILE_BUFFERS * limit) pool.push(b);
    else returnHashBuffer(b);
  };
  const returnBuffers = () => {
    for (const b of pool.splice(0)) returnHashBuffer(b);
  };

  const progress: ImportProgress = { files: 0, bytes: 0 };
  const report = opts.onProgress ? () => opts.onProgress!({ ...progress }) : () => {};
  // What the walk found so far: the totals, once it ended.
  const walked = { files: 0, bytes: 0 };
  const written = (n: number) => {
    progress.bytes += n;
    report();
  };

  /** Reads exactly `buf.length` bytes at `offset`; a short file means it changed under us. */
  const readFull = async (fd: number, buf: Uint8Array, offset: number, path: Uint8Array) => {
    if (buf.length <= SYNC_READ_MAX) return readFullSync(fd, buf, offset, path);
    for (let got = 0; got < buf.length;) {
      const n = await libc.preadAsync(fd, buf.subarray(got), offset + got, path);
      if (n === 0) throw shrank(path);
      got += n;
    }
  };

  /** Streams one open file into a new blob; closes `fd`. */
  const upload = async (
    fd: number,
    path: Uint8Array,
    slot: NarSlot | null,
    walked: WalkFile,
  ) => {
    let w: BlobWriter | null = null;
    const bufs: Uint8Array[] = [];
    const walkedExecutable = walked.executable;
    try {
      // Size and mode from the descriptor we read, so the node matches the blob even if the
      // path was replaced after the walk stat'ed it.
      const st = walked.statFromDescriptor ? walked : libc.fstat(fd, path);
      const kind = libc.fileKind(st.mode);
      if (kind !== "file") throw new UnsupportedFileTypeError(kind, path);
      const size = st.size;
      if (size > MAX_FILE_SIZE) {
        throw new InvalidRequestError(
          `file too large for castore (${size} bytes, at most ${MAX_FILE_SIZE}): ${
            libc.displayPath(path)
          }`,
        );
      }
      if (slot && (size !== slot.size || ((st.mode & 0o100) !== 0) !== walkedExecutable)) {
        throw new StorageError(`file changed while importing: ${libc.displayPath(path)}`);
      }
      w = await blobs.openWrite();
      if (size <= CHUNK_SIZE) {
        // A small file gets its own exact buffer: many are in flight at once.
        let chunk: Uint8Array;
        if (size <= SYNC_READ_MAX) chunk = new Uint8Array(size);
        else {
          bufs.push(getBuffer());
          chunk = bufs[0].subarray(0, size);
        }
        await readFull(fd, chunk, 0, path);
        if (size > 0) {
          await both(slot?.write(chunk), w.write(chunk));
          written(size);
        }
      } else {
        // A big file. Each chunk is read on this thread (the thread pool is busy enough with
        // the NAR hash and the blob's writes: with reads there too, its threads outnumbered
        // the cores) and hashed into the blob here, while its NAR hash and its write run on the
        // pool. Neither is awaited before the next chunk: only running out of buffers stops
        // this thread, which with a wait per chunk sat idle 40% of the time.
        const free: Uint8Array[] = [];
        const busy = new Set<Promise<void>>();
        let error = null as { e: unknown } | null;
        let wake: (() => void) | null = null;
        try {
          for (let off = 0; off < size;) {
            if (failure) throw CANCELLED;
            let buf = free.pop();
            if (!buf && bufs.length < BIG_FILE_BUFFERS) bufs.push(buf = getBuffer());
            while (!buf && !error) {
              await new Promise<void>((resolve) => wake = resolve);
              buf = free.pop();
            }
            if (error) throw error.e;
            const chunk = buf!.subarray(0, Math.min(CHUNK_SIZE, size - off));
            readFullSync(fd, chunk, off, path);
            off += chunk.length;
            const done = both(slot?.write(chunk), w.write(chunk));
            written(chunk.length);
            track(busy, done);
            done.then(() => free.push(buf!), (e) => error ??= { e }).finally(() => {
              wake?.();
              wake = null;
            });
          }
          await Promise.all(busy);
        } finally {
          // No buffer goes back to the pool while the pool's threads may still read it.
          await Promise.allSettled([...busy]);
        }
      }
      if (failure) throw CANCELLED;
      slot?.end();
      const digest = await w.close();
      w = null;
      progress.files++;
      report();
      return { digest, size, executable: (st.mode & 0o100) !== 0 };
    } catch (e) {
      if (w) await w.abort().catch(() => {});
      throw e;
    } finally {
      libc.close(fd);
      for (const b of bufs) putBuffer(b);
    }
  };

  // NAR structure, written in walk order when the caller wants the NAR hash too.
  const nar = opts.narHasher ? new NarWriter(opts.narHasher.sink) : null;

  // Small blobs being stored (backends batch them, so many share one promise).
  const storing = new Set<Promise<void>>();
  // Small files handed to the blob service and not stored yet: their contents are held (by a
  // backend's batch, or a queue of requests) until then, so the walk bounds them.
  const unstoredMax = {
    bytes: limit * SMALL_BYTES_PER_PERMIT,
    files: limit * SMALL_FILES_PER_PERMIT,
  };
  const unstored = { bytes: 0, files: 0 };
  // Synchronous work since the event loop last ran.
  let sinceTurn = 0;

  /**
   * Lets the event loop run, then waits while too many small files wait to be stored or too
   * many bytes to be hashed: otherwise a tree of small files is read much faster than either
   * completes, and memory grows with the tree.
   */
  const breathe = async () => {
    sinceTurn = 0;
    await libc.nextTurn();
    while (
      !failure && storing.size > 0 &&
      (unstored.bytes > unstoredMax.bytes || unstored.files > unstoredMax.files)
    ) {
      await Promise.race(storing).catch(() => {}); // its error reaches `failure` through fail
    }
    while (!failure && narHasher && narHasher.backlogBytes > HASH_BACKLOG_MAX) {
      await libc.nextTurn(); // each turn delivers the SHA-256 thread's finished pieces
    }
  };

  /**
   * A small file whose size and mode the walk read from its open descriptor: read, hashed and
   * queued for storage without awaiting anything, which for trees of small files is most of
   * the work. Its contents are owned, so the NAR hasher may keep them without a copy.
   */
  const importSmallFile = (e: WalkFile): FileNode => {
    const fd = e.open();
    const data = new Uint8Array(e.size);
    try {
      readFullSync(fd, data, 0, e.path);
    } finally {
      libc.close(fd);
    }
    if (nar) {
      nar.fileStart(e.executable, e.size);
      nar.fileChunk(data);
      nar.fileEnd();
    }
    const { digest, stored } = putSmallBlob(blobs, data);
    if (!storing.has(stored)) {
      storing.add(stored);
      stored.then(() => storing.delete(stored), fail);
    }
    unstored.bytes += e.size;
    unstored.files++;
    const done = () => {
      unstored.bytes -= e.size;
      unstored.files--;
    };
    stored.then(done, done);
    progress.files++;
    written(e.size);
    return {
      $typeName: "tvix.castore.v1.FileNode",
      name: e.name,
      digest: digest.bytes,
      size: e.size,
      executable: e.executable,
    };
  };

  let putter: DirectoryPutter | null = null;
  const putDigests = new Set<string>();
  let putChain: Promise<void> = Promise.resolve();

  interface Frame {
    dirs: Promise<DirectoryNode>[];
    files: (FileNode | Promise<FileNode>)[];
    symlinks: SymlinkNode[];
  }
  const frames: Frame[] = [];
  let root: Promise<AnyNode> | null = null;
  // A promise nobody may await for a while must not count as an unhandled rejection; its
  // error reaches `failure` through the path that awaits it (or through the upload itself).
  const quiet = <T>(p: Promise<T>): Promise<T> => {
    p.catch(() => {});
    return p;
  };

  try {
    for (const e of walk(path)) {
      if (failure) break;
      sinceTurn += ENTRY_COST;
      if (sinceTurn >= TURN_BYTES) await breathe();
      if (nar && e.kind !== "end" && e.depth > 0) nar.entry(e.name);
      switch (e.kind) {
        case "directory":
          nar?.directoryStart();
          frames.push({ dirs: [], files: [], symlinks: [] });
          break;
        case "symlink": {
          const node: SymlinkNode = {
            $typeName: "tvix.castore.v1.SymlinkNode",
            name: e.name,
            target: e.target,
          };
          nar?.symlink(e.target);
          if (e.depth === 0) root = Promise.resolve({ case: "symlink", value: node });
          else frames[frames.length - 1].symlinks.push(node);
          break;
        }
        case "file": {
          walked.files++;
          walked.bytes += e.size;
          if (e.depth === 0) {
            progress.totalFiles = 1;
            progress.totalBytes = e.size;
          }
          if (e.statFromDescriptor && e.size <= SYNC_READ_MAX) {
            const node = importSmallFile(e);
            sinceTurn += e.size;
            if (e.depth === 0) root = Promise.resolve({ case: "file", value: node });
            else frames[frames.length - 1].files.push(node);
            // Files waiting behind a big one hold their contents for the NAR hash: bound it.
            while (opts.narHasher && opts.narHasher.heldBytes > HELD_MAX && inflight.size > 0) {
              await Promise.race(inflight);
            }
            break;
          }
          const permits = e.size <= SYNC_READ_MAX ? smallPermits : bigPermits;
          await permits.acquire();
          if (failure) {
            permits.release();
            break;
          }
          let fd: number;
          try {
            fd = e.open();
          } catch (err) {
            permits.release();
            throw err;
          }
          let slot: NarSlot | null = null;
          if (nar) {
            // The contents' place in the NAR is reserved now; the upload fills it.
            nar.fileStart(e.executable, e.size);
            nar.fileContentsElsewhere();
            slot = opts.narHasher!.slot(e.size);
            nar.fileEnd();
          }
          const uploading = upload(fd, e.path, slot, e).finally(permits.release);
          inflight.add(uploading);
          uploading.catch(fail).finally(() => inflight.delete(uploading));
          const node = quiet(uploading.then((r): FileNode => ({
            $typeName: "tvix.castore.v1.FileNode",
            name: e.name,
            digest: r.digest.bytes,
            size: r.size,
            executable: r.executable,
          })));
          if (e.depth === 0) root = quiet(node.then((value) => ({ case: "file", value })));
          else frames[frames.length - 1].files.push(node);
          break;
        }
        case "end": {
          nar?.directoryEnd();
          const frame = frames.pop()!;
          const built = quiet(
            Promise.all([Promise.all(frame.dirs), Promise.all(frame.files)]).then(
              ([ds, fs]) => {
                const dir = makeDirectory({ directories: ds, files: fs, symlinks: frame.symlinks });
                return { dir, digest: directoryDigest(dir) };
              },
            ),
          );
          // Puts run one after another in the order directories end: children before parents.
          putChain = putChain.then(async () => {
            const { dir, digest } = await built;
            if (putDigests.has(digest.key)) return;
            putDigests.add(digest.key);
            putter ??= directories.putMultipleStart();
            await putter.put(dir);
          });
          putChain.catch(fail);
          const node = quiet(built.then(({ dir, digest }): DirectoryNode => ({
            $typeName: "tvix.castore.v1.DirectoryNode",
            name: e.name,
            digest: digest.bytes,
            size: directorySize(dir),
          })));
          if (frames.length === 0) {
            root = quiet(node.then((value) => ({ case: "directory", value })));
          } else frames[frames.length - 1].dirs.push(node);
          break;
        }
      }
    }
    if (!failure) {
      if (progress.totalFiles === undefined) {
        progress.totalFiles = walked.files;
        progress.totalBytes = walked.bytes;
        report();
      }
      nar?.finish();
      const node = await root!;
      await putChain;
      await Promise.all(storing);
      if (node.case === "directory") {
        const digest = await putter!.close();
        if (!sameDigest(digest, node.value.digest)) {
          throw new StorageError(
            `directory putter returned root ${digest}, expected the imported root directory`,
          );
        }
      }
      returnBuffers();
      return node;
    }
  } catch (e) {
    fail(e);
  }
  // Let running uploads notice the failure, abort their writers and release their files.
  while (inflight.size > 0) await Promise.allSettled([...inflight]);
  returnBuffers();
  throw failure!.error;
}

/**
 * Waits for both; the first failure wins, but only once both settled, so no read, hash or
 * write is still using a buffer the caller is about to reuse or give back.
 */
async function both(
  a: Promise<void> | undefined,
  b: Promise<void> | undefined,
): Promise<void> {
  const [ra, rb] = await Promise.allSettled([a, b]);
  if (ra.status === "rejected") throw ra.reason;
  if (rb.status === "rejected") throw rb.reason;
}

/** Keeps `p` in `set` until it settles. */
function track(set: Set<Promise<void>>, p: Promise<void>): void {
  set.add(p);
  p.then(() => set.delete(p), () => set.delete(p));
}

/** Reads exactly `buf.length` bytes at `offset` on this thread; a short file changed under us. */
function readFullSync(fd: number, buf: Uint8Array, offset: number, path: Uint8Array): void {
  for (let got = 0; got < buf.length;) {
    const n = libc.pread(fd, buf.subarray(got), offset + got, path);
    if (n === 0) throw shrank(path);
    got += n;
  }
}

function shrank(path: Uint8Array): StorageError {
  return new StorageError(`file shrank while importing: ${libc.displayPath(path)}`);
}

/** A counting semaphore. */
function semaphore(n: number): { acquire(): Promise<void>; release(): void } {
  let free = n;
  const waiters: (() => void)[] = [];
  return {
    async acquire() {
      while (free === 0) await new Promise<void>((r) => waiters.push(r));
      free--;
    },
    release() {
      free++;
      waiters.shift()?.();
    },
  };
}

function sameDigest(a: B3Digest, b: Uint8Array): boolean {
  if (b.length !== B3_LEN) return false;
  for (let i = 0; i < B3_LEN; i++) if (a.bytes[i] !== b[i]) return false;
  return true;
}
