/**
 * The filesystem walker the importer is built on: byte-exact names and symlink targets through
 * libc (see `../../sys/libc.ts`), entries in byte-wise order, symlinks never followed, and
 * FIFOs, sockets and devices refused, the same rules as Nix's `dump`.
 *
 * @module
 */
import { isValidName } from "../directory.ts";
import { compareBytes } from "../../base/bytes.ts";
import { InvalidRequestError } from "../../base/errors.ts";
import * as libc from "../../sys/libc.ts";

/**
 * A FIFO, socket, device (or unknown inode type) was found where Nix allows none.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { importPath, UnsupportedFileTypeError } from "@nixcas/nixcas/castore";
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
 * import { walk, type WalkEntryBase } from "./walk.ts";
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
 * import { walk, type WalkDirectory } from "./walk.ts";
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
 * import { walk, type WalkFile } from "./walk.ts";
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
 * import { walk, type WalkSymlink } from "./walk.ts";
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
 * import { walk, type WalkEnd } from "./walk.ts";
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
 * import { walk, type WalkEntry } from "./walk.ts";
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
 * import { walk } from "./walk.ts";
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
