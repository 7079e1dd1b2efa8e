/**
 * The one libc binding (Deno FFI): every symbol bound on its first use, one errno table, one
 * error class ({@linkcode LibcError}), and byte-exact filesystem access for walking trees to
 * import. The other `sys/` modules (`mount.ts`, `libcrypto.ts`) call libc through
 * {@linkcode libc} here.
 *
 * Deno's own fs APIs (and `node:fs`) replace non-UTF-8 bytes in file names with U+FFFD, but Nix
 * and castore names are raw bytes, so the importer reads names, symlink targets and metadata
 * through libc instead. Names and paths are `Uint8Array` everywhere; `string` arguments are
 * encoded as UTF-8 for convenience.
 *
 * Linux only (glibc ≥ 2.33 for the `fstatat` symbol), x86_64 and aarch64: `struct stat` is laid
 * out differently on the two, see {@linkcode parseStat}.
 *
 * Metadata calls are synchronous (a few microseconds each, and errno is only reliable on the
 * calling thread); content reads have nonblocking variants ({@linkcode preadAsync}) that run on
 * Deno's blocking thread pool so several files are read while the event loop hashes.
 *
 * @module
 */

/** `dirfd` meaning "relative to the current directory" (paths may also be absolute). */
export const AT_FDCWD: number = -100;
/** `fstatat` flag: do not follow a final symlink. */
export const AT_SYMLINK_NOFOLLOW = 0x100;
/** `fstatat` flag: an empty path means the descriptor itself. */
export const AT_EMPTY_PATH = 0x1000;

/** Open flags (Linux values; identical on x86_64 and aarch64 except the ones below). */
export const O_RDONLY = 0;
/** Open for writing only. */
export const O_WRONLY = 1;
/** Open for reading and writing. */
export const O_RDWR = 2;
/** Create if missing. */
export const O_CREAT = 0o100;
/** With O_CREAT: fail if it exists. */
export const O_EXCL = 0o200;
/** Do not block (opening a FIFO by accident must not hang the walk). */
export const O_NONBLOCK = 0o4000;
/** Close on exec, so children never inherit our descriptors. */
export const O_CLOEXEC = 0o2000000;
const AARCH64 = Deno.build.arch === "aarch64";
/** Fail unless a directory (aarch64 uses different bits than x86_64). */
export const O_DIRECTORY = AARCH64 ? 0o40000 : 0o200000;
/** Fail on a final symlink instead of following it. */
export const O_NOFOLLOW = AARCH64 ? 0o100000 : 0o400000;

/** File type mask of `st_mode`. */
export const S_IFMT = 0o170000;
/** Socket. */
export const S_IFSOCK = 0o140000;
/** Symbolic link. */
export const S_IFLNK = 0o120000;
/** Regular file. */
export const S_IFREG = 0o100000;
/** Block device. */
export const S_IFBLK = 0o060000;
/** Directory. */
export const S_IFDIR = 0o040000;
/** Character device. */
export const S_IFCHR = 0o020000;
/** FIFO (named pipe). */
export const S_IFIFO = 0o010000;

/**
 * What a `st_mode` says an inode is. {@linkcode UnsupportedFileTypeError.kind} names the kind
 * of an inode an import refused.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import { type FileKind, UnsupportedFileTypeError } from "@nixcas/nixcas/castore";
 * import { importStorePath } from "@nixcas/nixcas/store";
 * const dir = await Deno.makeTempDir();
 * const listener = Deno.listen({ transport: "unix", path: `${dir}/control.sock` });
 * const store = await openStore("memory://");
 * let kind: FileKind | undefined;
 * try {
 *   await importStorePath(dir, store);
 * } catch (e) {
 *   if (!(e instanceof UnsupportedFileTypeError)) throw e;
 *   kind = e.kind;
 * }
 * assert.equal(kind, "socket"); // Nix stores no sockets
 * listener.close();
 * await store.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export type FileKind =
  | "file"
  | "directory"
  | "symlink"
  | "fifo"
  | "socket"
  | "block device"
  | "char device"
  | "unknown";

/** The kind of inode from `st_mode`. */
export function fileKind(mode: number): FileKind {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "file";
    case S_IFDIR:
      return "directory";
    case S_IFLNK:
      return "symlink";
    case S_IFIFO:
      return "fifo";
    case S_IFSOCK:
      return "socket";
    case S_IFBLK:
      return "block device";
    case S_IFCHR:
      return "char device";
    default:
      return "unknown";
  }
}

/** The fields of `struct stat` the importer (and tests) use. */
export interface Stat {
  /** Device of the containing filesystem. */
  dev: bigint;
  /** Inode number. */
  ino: bigint;
  /** Type and permission bits. */
  mode: number;
  /** Hard link count. */
  nlink: number;
  /** Owner. */
  uid: number;
  /** Group. */
  gid: number;
  /** Device number for device nodes. */
  rdev: bigint;
  /** Size in bytes (for symlinks: the target's length). */
  size: number;
  /** Modification time, seconds. */
  mtimeSec: number;
  /** Modification time, nanoseconds part. */
  mtimeNsec: number;
}

/** Size of the `struct stat` buffer: 144 bytes on x86_64, 128 on aarch64 (asm-generic). */
export const STAT_SIZE = AARCH64 ? 128 : 144;

/**
 * Parses a `struct stat` as filled by `fstatat` for `arch`. x86_64 has its own layout
 * (`st_nlink` is 64-bit and comes before `st_mode`); aarch64 uses the asm-generic one.
 */
export function parseStat(buf: Uint8Array, arch: string = Deno.build.arch): Stat {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (arch === "x86_64") {
    return {
      dev: v.getBigUint64(0, true),
      ino: v.getBigUint64(8, true),
      nlink: Number(v.getBigUint64(16, true)),
      mode: v.getUint32(24, true),
      uid: v.getUint32(28, true),
      gid: v.getUint32(32, true),
      rdev: v.getBigUint64(40, true),
      size: Number(v.getBigInt64(48, true)),
      mtimeSec: Number(v.getBigInt64(88, true)),
      mtimeNsec: Number(v.getBigInt64(96, true)),
    };
  }
  if (arch === "aarch64") {
    return {
      dev: v.getBigUint64(0, true),
      ino: v.getBigUint64(8, true),
      mode: v.getUint32(16, true),
      nlink: v.getUint32(20, true),
      uid: v.getUint32(24, true),
      gid: v.getUint32(28, true),
      rdev: v.getBigUint64(32, true),
      size: Number(v.getBigInt64(48, true)),
      mtimeSec: Number(v.getBigInt64(88, true)),
      mtimeNsec: Number(v.getBigInt64(96, true)),
    };
  }
  throw new Error(`struct stat layout unknown for architecture ${arch}`);
}

const SYMBOLS = {
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
  openat: { parameters: ["i32", "buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  dup: { parameters: ["i32"], result: "i32" },
  fstatat: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  fdopendir: { parameters: ["i32"], result: "pointer" },
  readdir64: { parameters: ["pointer"], result: "pointer" },
  closedir: { parameters: ["pointer"], result: "i32" },
  rewinddir: { parameters: ["pointer"], result: "void" },
  readlinkat: { parameters: ["i32", "buffer", "buffer", "usize"], result: "isize" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  pread64: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  readAsync: {
    name: "read",
    parameters: ["i32", "buffer", "usize"],
    result: "isize",
    nonblocking: true,
  },
  preadAsync: {
    name: "pread64",
    parameters: ["i32", "buffer", "usize", "i64"],
    result: "isize",
    nonblocking: true,
  },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  pwrite64: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  pwriteAsync: {
    name: "pwrite64",
    parameters: ["i32", "buffer", "usize", "i64"],
    result: "isize",
    nonblocking: true,
  },
  pwritevAsync: {
    name: "pwritev",
    parameters: ["i32", "buffer", "i32", "i64"],
    result: "isize",
    nonblocking: true,
  },
  getpidAsync: { name: "getpid", parameters: [], result: "i32", nonblocking: true },
  fdatasync: { parameters: ["i32"], result: "i32" },
  fdatasyncAsync: { name: "fdatasync", parameters: ["i32"], result: "i32", nonblocking: true },
  ftruncate64: { parameters: ["i32", "i64"], result: "i32" },
  fchmod: { parameters: ["i32", "u32"], result: "i32" },
  fchmodat: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  mkdirat: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  symlinkat: { parameters: ["buffer", "i32", "buffer"], result: "i32" },
  mkfifoat: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  writev: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  writevAsync: {
    name: "writev",
    parameters: ["i32", "buffer", "i32"],
    result: "isize",
    nonblocking: true,
  },
  getuid: { parameters: [], result: "u32" },
  // glibc: gives freed heap memory back to the system (servers after a burst).
  malloc_trim: { parameters: ["usize"], result: "i32" },
  madvise: { parameters: ["pointer", "usize", "i32"], result: "i32" },
  getgid: { parameters: [], result: "u32" },
  // mount.ts: mount(2), and the descriptor passing of fusermount3.
  mount: { parameters: ["buffer", "buffer", "buffer", "u64", "buffer"], result: "i32" },
  umount2: { parameters: ["buffer", "i32"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  recvmsgAsync: {
    name: "recvmsg",
    parameters: ["i32", "buffer", "i32"],
    result: "isize",
    nonblocking: true,
  },
  // libcrypto.ts: loads libcrypto on the thread pool ahead of its first use.
  dlopenAsync: {
    name: "dlopen",
    parameters: ["buffer", "i32"],
    result: "pointer",
    nonblocking: true,
  },
} as const;

/** The libc symbols {@linkcode libc} gives. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let lib: Libc | null = null;

/**
 * The raw libc symbols, for the `sys/` modules (elsewhere, call the wrappers, which check for
 * errors). Each symbol is bound on its first use, so importing this module needs no
 * --allow-ffi: Deno compiles a call stub per bound symbol, ≈0.17 ms each, and binding all of
 * them up front cost ≈5 ms of every start. Without FFI permission the first use throws
 * `Deno.errors.NotCapable` saying so.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { getuid, libc } from "./libc.ts";
 * assert.equal(libc().getuid(), getuid()); // the raw symbol and its wrapper
 * ```
 */
export function libc(): Libc {
  if (lib) return lib;
  const symbols = {} as Libc;
  for (const name of Object.keys(SYMBOLS) as (keyof typeof SYMBOLS)[]) {
    Object.defineProperty(symbols, name, {
      configurable: true,
      get() {
        const fn = bind(name);
        Object.defineProperty(symbols, name, { value: fn });
        return fn;
      },
    });
  }
  return lib = symbols;
}

function bind<K extends keyof typeof SYMBOLS>(name: K): Libc[K] {
  try {
    return Deno.dlopen("libc.so.6", { [name]: SYMBOLS[name] }).symbols[name] as Libc[K];
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
      throw new Deno.errors.NotCapable(
        "nixcas calls libc through FFI: run deno with --allow-ffi (or -A)",
        { cause: e },
      );
    }
    throw e;
  }
}

// errno lives at a fixed address per thread; this module instance only ever runs on one thread
// (each worker loads its own copy), so the cell is looked up once.
let errnoCell: Int32Array | null = null;

function errnoView(): Int32Array {
  errnoCell ??= new Int32Array(
    Deno.UnsafePointerView.getArrayBuffer(libc().__errno_location()!, 4),
  );
  return errnoCell;
}

/**
 * errno of this thread, valid only right after a failed synchronous call: nonblocking calls
 * run on another thread, whose errno is lost.
 */
export function errno(): number {
  return errnoView()[0];
}

/** Sets errno, needed to tell `readdir`'s end of stream (NULL, errno unchanged) from failure. */
function setErrno(value: number): void {
  errnoView()[0] = value;
}

/**
 * Linux errno values by name (the same on x86_64 and aarch64): those libc reports to the
 * importer and those the FUSE layer answers the kernel with.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Errno, errnoName } from "./libc.ts";
 * assert.equal(Errno.ENOENT, 2);
 * assert.equal(errnoName(Errno.ENOENT), "ENOENT");
 * assert.equal(errnoName(4095), "E4095"); // not in the table
 * ```
 */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOTTY: 25,
  ETXTBSY: 26,
  EFBIG: 27,
  ENOSPC: 28,
  EROFS: 30,
  EMLINK: 31,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENODATA: 61,
  EOVERFLOW: 75,
  EOPNOTSUPP: 95,
  ENOTCONN: 107,
  ESTALE: 116,
} as const;

let errnoNames: Map<number, string> | null = null;

/** The name of an errno value, e.g. `ENOENT` (`E<number>` when not in {@linkcode Errno}). */
export function errnoName(value: number): string {
  errnoNames ??= new Map(Object.entries(Errno).map(([name, n]) => [n, name]));
  return errnoNames.get(value) ?? `E${value}`;
}

/** The message libc gives for an errno value. */
export function strerror(value: number): string {
  const p = libc().strerror(value);
  return p ? Deno.UnsafePointerView.getCString(p) : `errno ${value}`;
}

/**
 * A failed libc call. The message starts with the errno name and the path at fault, e.g.
 * `ENOENT: /tmp/x/missing (fstatat: No such file or directory)` (or `EMFILE: socketpair: Too
 * many open files` for a call on no path), then the hint if one is given.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Errno, LibcError, lstat } from "./libc.ts";
 * let err: unknown;
 * try {
 *   lstat("/nonexistent/x");
 * } catch (x) {
 *   err = x;
 * }
 * assert.ok(err instanceof LibcError);
 * assert.equal(err.errno, Errno.ENOENT);
 * assert.equal(err.code, "ENOENT");
 * assert.equal(err.message, "ENOENT: /nonexistent/x (fstatat: No such file or directory)");
 * ```
 */
export class LibcError extends Error {
  /** The errno value. */
  readonly errno: number;
  /** Its symbolic name, e.g. `ENOENT` (or `E<number>` when unknown here). */
  readonly code: string;
  /** The libc function that failed. */
  readonly syscall: string;
  /** The path at fault, raw bytes (may be empty). */
  readonly path: Uint8Array;

  /**
   * Creates the error; the message is derived from the fields, plus `hint` (what to do about
   * it) when given. A string `path` is kept as its UTF-8 bytes.
   */
  constructor(errnoValue: number, syscall: string, path: string | Uint8Array, hint?: string) {
    const code = errnoName(errnoValue);
    const bytes = toBytes(path);
    const where = bytes.length ? `${displayPath(bytes)} (${syscall}: ` : `${syscall}: `;
    const why = `${strerror(errnoValue)}${bytes.length ? ")" : ""}`;
    super(`${code}: ${where}${why}${hint ? `; ${hint}` : ""}`);
    this.name = "LibcError";
    this.errno = errnoValue;
    this.code = code;
    this.syscall = syscall;
    this.path = bytes;
  }
}

function fail(syscall: string, path: Uint8Array): never {
  throw new LibcError(errno(), syscall, path);
}

const utf8 = new TextEncoder();
const strict = new TextDecoder("utf-8", { fatal: true });

/** A path as bytes: strings are UTF-8 encoded, byte arrays are returned as they are. */
export function toBytes(path: string | Uint8Array): Uint8Array {
  return typeof path === "string" ? utf8.encode(path) : path;
}

/**
 * A path (or name) for messages: valid UTF-8 is shown as text, every other byte as `\xNN`;
 * control characters and backslashes are escaped too, so the rendering is unambiguous.
 */
export function displayPath(path: string | Uint8Array): string {
  const b = toBytes(path);
  let out = "";
  for (let i = 0; i < b.length;) {
    const c = b[i];
    if (c < 0x80) {
      out += c < 0x20 || c === 0x7f || c === 0x5c
        ? `\\x${c.toString(16).padStart(2, "0")}`
        : String.fromCharCode(c);
      i++;
      continue;
    }
    // Try the one multi-byte sequence the lead byte announces; escape the byte if it is bad.
    const len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
    if (len && i + len <= b.length) {
      try {
        out += strict.decode(b.subarray(i, i + len));
        i += len;
        continue;
      } catch { /* not valid UTF-8: escape below */ }
    }
    out += `\\x${c.toString(16)}`;
    i++;
  }
  return out;
}

/**
 * `path` plus a NUL terminator, for libc (a string is UTF-8 encoded). Rejects embedded NULs
 * (libc would cut the name) with EINVAL.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cstr, LibcError } from "./libc.ts";
 * assert.deepEqual(cstr("ab"), new Uint8Array([0x61, 0x62, 0]));
 * assert.throws(() => cstr("a\0b"), LibcError);
 * ```
 */
export function cstr(path: string | Uint8Array): Uint8Array<ArrayBuffer> {
  const bytes = toBytes(path);
  if (bytes.includes(0)) {
    throw new LibcError(Errno.EINVAL, "path", bytes);
  }
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** The address of a buffer, for building C structs that point at other buffers. */
export function addressOf(buf: Uint8Array | BigUint64Array): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}

/** `dir` + `/` + `name` (no `/` doubled when `dir` ends with one). */
export function joinPath(dir: Uint8Array, name: Uint8Array): Uint8Array {
  const slash = dir.length > 0 && dir[dir.length - 1] !== 0x2f ? 1 : 0;
  const out = new Uint8Array(dir.length + slash + name.length);
  out.set(dir);
  if (slash) out[dir.length] = 0x2f;
  out.set(name, dir.length + slash);
  return out;
}

/** `path` without trailing slashes (but `/` stays `/`). */
export function stripTrailingSlashes(path: Uint8Array): Uint8Array {
  let end = path.length;
  while (end > 1 && path[end - 1] === 0x2f) end--;
  return path.subarray(0, end);
}

/** The last component of `path` (after stripping trailing slashes). */
export function basename(path: Uint8Array): Uint8Array {
  const p = stripTrailingSlashes(path);
  return p.subarray(p.lastIndexOf(0x2f) + 1);
}

/**
 * `fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)`: metadata of `name` itself, never of a symlink's
 * target. `errPath` (default `name`) is the path errors name.
 */
export function lstatAt(dirfd: number, name: Uint8Array, errPath: Uint8Array = name): Stat {
  const buf = new Uint8Array(STAT_SIZE);
  if (libc().fstatat(dirfd, cstr(name), buf, AT_SYMLINK_NOFOLLOW) !== 0) fail("fstatat", errPath);
  return parseStat(buf);
}

/** `lstat(path)`: metadata without following a final symlink. */
export function lstat(path: string | Uint8Array): Stat {
  return lstatAt(AT_FDCWD, toBytes(path));
}

const EMPTY = new Uint8Array(1);

/** `fstat(fd)` (as `fstatat(fd, "", AT_EMPTY_PATH)`). */
export function fstat(fd: number, errPath: Uint8Array = new Uint8Array()): Stat {
  const buf = new Uint8Array(STAT_SIZE);
  if (libc().fstatat(fd, EMPTY, buf, AT_EMPTY_PATH) !== 0) fail("fstat", errPath);
  return parseStat(buf);
}

/** `openat(dirfd, name, flags, mode)`; returns the descriptor. O_CLOEXEC is always added. */
export function openAt(
  dirfd: number,
  name: Uint8Array,
  flags: number,
  mode = 0,
  errPath: Uint8Array = name,
): number {
  const fd = libc().openat(dirfd, cstr(name), flags | O_CLOEXEC, mode);
  if (fd < 0) fail("openat", errPath);
  return fd;
}

/** Opens a directory for walking: fails on a symlink (O_NOFOLLOW) or a non-directory. */
export function openDirAt(dirfd: number, name: Uint8Array, errPath: Uint8Array = name): number {
  return openAt(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, errPath);
}

/**
 * Opens a file for reading without following a symlink. O_NONBLOCK so that a FIFO swapped in
 * after the stat cannot hang the open; it changes nothing for regular files.
 */
export function openFileAt(dirfd: number, name: Uint8Array, errPath: Uint8Array = name): number {
  return openAt(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK, 0, errPath);
}

/** `close(fd)`. Errors are thrown (EBADF means a bug). */
export function close(fd: number): void {
  if (libc().close(fd) !== 0) fail("close", new Uint8Array());
}

/** One directory entry as `readdir` returns it. */
export interface DirEntry {
  /** The raw name bytes. */
  name: Uint8Array;
  /** Inode number. */
  ino: bigint;
  /** `d_type` (DT_UNKNOWN = 0 on filesystems that do not fill it). */
  type: number;
}

/** `d_type` values. */
export const DT_UNKNOWN = 0, DT_FIFO = 1, DT_CHR = 2, DT_DIR = 4, DT_BLK = 6, DT_REG = 8;
/** `d_type` of a symlink and a socket. */
export const DT_LNK = 10, DT_SOCK = 12;

// struct dirent64: d_ino u64 @0, d_off i64 @8, d_reclen u16 @16, d_type u8 @18, d_name @19.
// The same on x86_64 and aarch64.
const D_NAME = 19;

/**
 * All entries of the open directory `dirfd` except `.` and `..`, in the order the filesystem
 * gives them. `dirfd` stays open and usable (the stream works on a duplicate).
 */
export function readDir(dirfd: number, errPath: Uint8Array = new Uint8Array()): DirEntry[] {
  const l = libc();
  const dup = l.dup(dirfd);
  if (dup < 0) fail("dup", errPath);
  const dir = l.fdopendir(dup);
  if (!dir) {
    const e = errno();
    l.close(dup);
    throw new LibcError(e, "fdopendir", errPath);
  }
  const out: DirEntry[] = [];
  try {
    // The duplicate shares the file offset with dirfd: start from the beginning every time.
    l.rewinddir(dir);
    for (;;) {
      setErrno(0);
      const ent = l.readdir64(dir);
      if (!ent) {
        const e = errno();
        if (e !== 0) throw new LibcError(e, "readdir", errPath);
        break;
      }
      const v = new Deno.UnsafePointerView(ent);
      const reclen = v.getUint16(16);
      const rec = new Uint8Array(reclen - D_NAME);
      v.copyInto(rec, D_NAME);
      const nul = rec.indexOf(0);
      const name = rec.slice(0, nul < 0 ? rec.length : nul);
      if (name.length === 1 && name[0] === 0x2e) continue;
      if (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e) continue;
      out.push({ name, ino: v.getBigUint64(0), type: v.getUint8(18) });
    }
  } finally {
    // Closes the duplicate only; the caller's descriptor stays open.
    l.closedir(dir);
  }
  return out;
}

/** `readlinkat(dirfd, name)`: the raw target bytes. `sizeHint` is `st_size` when known. */
export function readlinkAt(
  dirfd: number,
  name: Uint8Array,
  sizeHint = 0,
  errPath: Uint8Array = name,
): Uint8Array {
  const c = cstr(name);
  // st_size can be 0 on some filesystems (procfs), and the link may change: grow until it fits.
  let cap = Math.max(sizeHint + 1, 256);
  for (;;) {
    const buf = new Uint8Array(cap);
    const n = Number(libc().readlinkat(dirfd, c, buf, BigInt(cap)));
    if (n < 0) fail("readlinkat", errPath);
    if (n < cap) return buf.slice(0, n);
    cap *= 2;
  }
}

const EINTR = Errno.EINTR;

/** `read(fd, buf)` on this thread; returns the byte count (0 at end of file). */
export function read(fd: number, buf: Uint8Array, errPath: Uint8Array = new Uint8Array()): number {
  for (;;) {
    const n = Number(libc().read(fd, buf, BigInt(buf.length)));
    if (n >= 0) return n;
    if (errno() !== EINTR) fail("read", errPath);
  }
}

/** `pread(fd, buf, offset)` on this thread; returns the byte count (0 at end of file). */
export function pread(
  fd: number,
  buf: Uint8Array,
  offset: number,
  errPath: Uint8Array = new Uint8Array(),
): number {
  for (;;) {
    const n = Number(libc().pread64(fd, buf, BigInt(buf.length), BigInt(offset)));
    if (n >= 0) return n;
    if (errno() !== EINTR) fail("pread", errPath);
  }
}

/**
 * `pread(fd, buf, offset)` on Deno's blocking thread pool: the event loop keeps running, and
 * several reads proceed at once. `buf` must not be touched until the promise settles.
 */
export async function preadAsync(
  fd: number,
  buf: Uint8Array,
  offset: number,
  errPath: Uint8Array = new Uint8Array(),
): Promise<number> {
  const n = Number(await libc().preadAsync(fd, buf, BigInt(buf.length), BigInt(offset)));
  if (n >= 0) return n;
  // errno belongs to the pool thread; pread is idempotent, so repeat it here to learn why.
  return pread(fd, buf, offset, errPath);
}

/**
 * `read(fd, buf)` on Deno's blocking thread pool (for pipes and other unseekable descriptors).
 * On failure the error is `EIO` unless a retry on this thread reports the real errno.
 */
export async function readAsync(
  fd: number,
  buf: Uint8Array,
  errPath: Uint8Array = new Uint8Array(),
): Promise<number> {
  const n = Number(await libc().readAsync(fd, buf, BigInt(buf.length)));
  if (n >= 0) return n;
  return read(fd, buf, errPath);
}

/**
 * `read(fd, buf)` on Deno's blocking thread pool, for descriptors whose reads block until
 * something arrives (such as `/dev/fuse`): the byte count, or -1 on failure. Unlike
 * {@linkcode readAsync} a failure is not retried here (that read would block this thread), so
 * its errno, which belongs to the pool thread, is lost.
 */
export async function tryReadAsync(fd: number, buf: Uint8Array): Promise<number> {
  return Number(await libc().readAsync(fd, buf, BigInt(buf.length)));
}

/**
 * `writev(fd, iov, count)` on this thread: `iov` holds `count` pairs of (address, length), see
 * {@linkcode addressOf}. Returns the byte count written; the buffers must stay alive until it
 * returns.
 */
export function writev(
  fd: number,
  iov: BigUint64Array,
  count: number,
  errPath: Uint8Array = new Uint8Array(),
): number {
  for (;;) {
    const n = Number(libc().writev(fd, iov, count));
    if (n >= 0) return n;
    if (errno() !== EINTR) fail("writev", errPath);
  }
}

/**
 * Writes all of `parts` to `fd` (a pipe, a terminal, a file) with `writev` on Deno's blocking
 * thread pool, from where they lie, up to {@linkcode IOV_MAX} at a time; short writes continue
 * where they stopped. None of `parts` may be touched until the promise settles. A failure is
 * retried on this thread, where it throws {@linkcode LibcError} with its errno (`EPIPE` for a
 * closed pipe, `EAGAIN` for a non-blocking descriptor that is full); `at` then tells what was
 * written.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AT_FDCWD, close, O_WRONLY, openAt, toBytes, writevAllAsync } from "./libc.ts";
 * const path = await Deno.makeTempFile();
 * const fd = openAt(AT_FDCWD, toBytes(path), O_WRONLY);
 * const enc = new TextEncoder();
 * await writevAllAsync(fd, [enc.encode("Hello, "), new Uint8Array(), enc.encode("world!\n")]);
 * close(fd);
 * assert.equal(await Deno.readTextFile(path), "Hello, world!\n");
 * await Deno.remove(path);
 * ```
 */
export async function writevAllAsync(
  fd: number,
  parts: readonly Uint8Array[],
  errPath: Uint8Array = new Uint8Array(),
  at: WriteProgress = { part: 0, offset: 0 },
): Promise<void> {
  let i = at.part;
  let skip = at.offset; // bytes of parts[i] already written
  while (i < parts.length) {
    at.part = i;
    at.offset = skip;
    const n = Math.min(IOV_MAX, parts.length - i);
    // (address, length) pairs as 32-bit words: no BigInt per part.
    const iov = new BigUint64Array(n * 2);
    const words = new Uint32Array(iov.buffer);
    let total = 0;
    for (let k = 0; k < n; k++) {
      const p = parts[i + k];
      const off = k === 0 ? skip : 0;
      const len = p.length - off;
      const addr = len > 0 ? addressNumber(p) + off : 0;
      words[4 * k] = addr % 0x1_0000_0000;
      words[4 * k + 1] = Math.floor(addr / 0x1_0000_0000);
      words[4 * k + 2] = len;
      total += len;
    }
    if (total === 0) {
      i += n;
      skip = 0;
      continue;
    }
    let done = Number(await libc().writevAsync(fd, iov, n));
    // The pool thread's errno is lost: this thread's writev fails again and says why (or
    // writes, when the failure was passing).
    if (done < 0) done = writev(fd, iov, n, errPath);
    // Step over what was written.
    while (done > 0 || (i < parts.length && parts[i].length - skip === 0)) {
      const left = parts[i].length - skip;
      if (done >= left) {
        done -= left;
        i++;
        skip = 0;
      } else {
        skip += done;
        done = 0;
      }
    }
  }
  at.part = i;
  at.offset = skip;
}

// Base addresses of the buffers parts lie in: many parts are views of a few buffers, and
// taking a pointer costs more than a lookup. (Buffers here never move: Deno's are off-heap.)
const bases = new WeakMap<ArrayBufferLike, number>();

function addressNumber(p: Uint8Array): number {
  let base = bases.get(p.buffer);
  if (base === undefined) {
    const whole = new Uint8Array(p.buffer, 0, 1);
    base = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(whole)));
    bases.set(p.buffer, base);
  }
  return base + p.byteOffset;
}

/** How far {@linkcode writevAllAsync} got: the first part not wholly written, and its bytes out. */
export interface WriteProgress {
  /** Index of the first part not wholly written. */
  part: number;
  /** Bytes of that part written. */
  offset: number;
}

const HUGE_PAGE = 2 << 20;
const MADV_HUGEPAGE = 14;

/**
 * A zeroed buffer of `size` bytes (of a `SharedArrayBuffer` with `shared`) for bulk data that
 * is about to be written: where the kernel allows transparent huge pages on request
 * (`madvise`), its 2 MiB-aligned part is backed by them, so faulting it in costs one fault per
 * 2 MiB instead of 512 (here a 4 KiB fault costs ≈2.5 µs: 64 MiB took 36 ms, with huge pages
 * 6–11 ms). It takes up to 2 MiB more address space, never touched. A plain buffer where that
 * is not possible.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { largeBuffer } from "./libc.ts";
 * const buf = largeBuffer(4 << 20);
 * assert.equal(buf.length, 4 << 20);
 * assert.ok(buf.every((b) => b === 0));
 * assert.ok(largeBuffer(1 << 20, true).buffer instanceof SharedArrayBuffer);
 * ```
 */
export function largeBuffer(size: number, shared = false): Uint8Array {
  if (size < HUGE_PAGE || Deno.build.os !== "linux") {
    return new Uint8Array(shared ? new SharedArrayBuffer(size) : new ArrayBuffer(size));
  }
  const len = size + HUGE_PAGE;
  const whole = new Uint8Array(shared ? new SharedArrayBuffer(len) : new ArrayBuffer(len));
  try {
    const addr = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(whole)));
    const skip = (HUGE_PAGE - (addr % HUGE_PAGE)) % HUGE_PAGE;
    const span = size - (size % HUGE_PAGE);
    // Advice only: a refusal (no THP, an old kernel) leaves ordinary pages.
    libc().madvise(Deno.UnsafePointer.create(BigInt(addr + skip)), BigInt(span), MADV_HUGEPAGE);
    return whole.subarray(skip, skip + size);
  } catch {
    return whole.subarray(0, size); // no FFI: ordinary pages
  }
}

/**
 * Gives the C heap's free memory back to the system (glibc's `malloc_trim`): after a burst of
 * work, glibc keeps what it freed, so a server's RSS stays at its peak. True when memory was
 * released; false where there is nothing to give back or no glibc.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { trimHeap } from "./libc.ts";
 * assert.equal(typeof trimHeap(), "boolean");
 * ```
 */
export function trimHeap(): boolean {
  try {
    return libc().malloc_trim(0n) === 1;
  } catch {
    return false; // not glibc, or no FFI permission
  }
}

/** The real user id of this process. */
export function getuid(): number {
  return libc().getuid();
}

/** The real group id of this process. */
export function getgid(): number {
  return libc().getgid();
}

/**
 * Writes all of `buf` at `offset` with `pwrite` on Deno's blocking thread pool. `buf` must not
 * be touched until the promise settles.
 */
export async function pwriteAllAsync(
  fd: number,
  buf: Uint8Array,
  offset: number,
  errPath: Uint8Array = new Uint8Array(),
): Promise<void> {
  for (let done = 0; done < buf.length;) {
    const piece = buf.subarray(done);
    const n = Number(
      await libc().pwriteAsync(fd, piece, BigInt(piece.length), BigInt(offset + done)),
    );
    if (n < 0) {
      // errno belongs to the pool thread; writing the same bytes at the same offset again is
      // harmless, so finish here, where a failure tells why.
      return pwriteAll(fd, piece, offset + done, errPath);
    }
    done += n;
  }
}

/** Most buffers one `pwritev` takes (Linux's IOV_MAX). */
export const IOV_MAX = 1024;

/**
 * One `pwritev` of up to {@linkcode IOV_MAX} buffers at `offset`, from where they lie, on Deno's
 * blocking thread pool: the bytes written, or a negative number on failure (the pool thread's
 * errno is lost: retry the rest synchronously to learn why). No buffer may be touched until the
 * promise settles.
 */
export async function pwritevAsync(
  fd: number,
  parts: Uint8Array[],
  offset: number,
): Promise<number> {
  const iov = new BigUint64Array(parts.length * 2);
  parts.forEach((p, k) => {
    iov[2 * k] = p.length > 0 ? BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(p))) : 0n;
    iov[2 * k + 1] = BigInt(p.length);
  });
  return Number(await libc().pwritevAsync(fd, iov, parts.length, BigInt(offset)));
}

/**
 * Resolves in a later turn of the event loop, after the I/O completions due now have been
 * handled: a no-op call (`getpid`) through Deno's blocking thread pool. It is what
 * `setImmediate` does, without loading Deno's Node layer (≈5 ms), or `MessageChannel`'s
 * first use (≈2.5 ms); this costs ≈0.1–0.5 ms the first time and ≈0.05 ms after.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nextTurn } from "./libc.ts";
 * const order: string[] = [];
 * const turn = nextTurn().then(() => order.push("next turn"));
 * await Promise.resolve().then(() => order.push("microtask"));
 * await turn;
 * assert.equal(order.join(", "), "microtask, next turn");
 * ```
 */
export async function nextTurn(): Promise<void> {
  await libc().getpidAsync();
}

/** `fdatasync(fd)` on Deno's blocking thread pool. */
export async function fdatasyncAsync(
  fd: number,
  errPath: Uint8Array = new Uint8Array(),
): Promise<void> {
  if ((await libc().fdatasyncAsync(fd)) === 0) return;
  fdatasync(fd, errPath); // again here, where a failure tells why
}

/** `ftruncate(fd, length)`. */
export function ftruncate(
  fd: number,
  length: number,
  errPath: Uint8Array = new Uint8Array(),
): void {
  for (;;) {
    if (libc().ftruncate64(fd, BigInt(length)) === 0) return;
    if (errno() !== EINTR) fail("ftruncate", errPath);
  }
}

/** `pwrite` of all of `buf` at `offset` on this thread. */
export function pwriteAll(
  fd: number,
  buf: Uint8Array,
  offset: number,
  errPath: Uint8Array = new Uint8Array(),
): void {
  for (let done = 0; done < buf.length;) {
    const piece = buf.subarray(done);
    const n = Number(libc().pwrite64(fd, piece, BigInt(piece.length), BigInt(offset + done)));
    if (n >= 0) done += n;
    else if (errno() !== EINTR) fail("pwrite", errPath);
  }
}

/** `fdatasync(fd)` on this thread. */
export function fdatasync(fd: number, errPath: Uint8Array = new Uint8Array()): void {
  for (;;) {
    if (libc().fdatasync(fd) === 0) return;
    if (errno() !== EINTR) fail("fdatasync", errPath);
  }
}

// ---- creation helpers (tests, and tools that build trees with raw names) ----

/** `mkdirat(dirfd, name, mode)` (the umask applies, as for mkdir). */
export function mkdirAt(dirfd: number, name: Uint8Array, mode = 0o755): void {
  if (libc().mkdirat(dirfd, cstr(name), mode) !== 0) fail("mkdirat", name);
}

/**
 * Creates a new regular file `name` with `data` and exactly the permission bits `mode` (set with
 * fchmod afterwards, so the umask does not apply). Fails if it exists.
 */
export function createFileAt(
  dirfd: number,
  name: Uint8Array,
  data: Uint8Array = new Uint8Array(),
  mode = 0o644,
): void {
  const fd = openAt(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
  try {
    for (let off = 0; off < data.length;) {
      const chunk = data.subarray(off);
      const n = Number(libc().write(fd, chunk, BigInt(chunk.length)));
      if (n < 0) {
        if (errno() === EINTR) continue;
        fail("write", name);
      }
      off += n;
    }
    if (libc().fchmod(fd, mode) !== 0) fail("fchmod", name);
  } finally {
    libc().close(fd);
  }
}

/** `fchmodat(dirfd, name, mode)`: sets permission bits exactly (follows symlinks, as chmod). */
export function chmodAt(dirfd: number, name: Uint8Array, mode: number): void {
  if (libc().fchmodat(dirfd, cstr(name), mode, 0) !== 0) fail("fchmodat", name);
}

/** `symlinkat(target, dirfd, name)`: creates `name` pointing at the raw bytes `target`. */
export function symlinkAt(target: Uint8Array, dirfd: number, name: Uint8Array): void {
  if (libc().symlinkat(cstr(target), dirfd, cstr(name)) !== 0) fail("symlinkat", name);
}

/** `mkfifoat(dirfd, name, mode)`: creates a named pipe. */
export function mkfifoAt(dirfd: number, name: Uint8Array, mode = 0o644): void {
  if (libc().mkfifoat(dirfd, cstr(name), mode) !== 0) fail("mkfifoat", name);
}
