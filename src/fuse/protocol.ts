/**
 * The Linux FUSE kernel protocol (7.31 subset): opcodes, flags, struct layouts and encoders
 * for the replies a read-only filesystem sends. All integers are little-endian (x86-64,
 * aarch64).
 *
 * @module
 */

/** Protocol major version. */
export const FUSE_KERNEL_VERSION = 7;
/** Highest minor version we speak; struct layouts below are those of 7.31. */
export const FUSE_KERNEL_MINOR_VERSION = 31;

/** Request opcodes (`enum fuse_opcode`). */
export const Op = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  GETLK: 31,
  SETLK: 32,
  SETLKW: 33,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  BMAP: 37,
  DESTROY: 38,
  IOCTL: 39,
  POLL: 40,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
  COPY_FILE_RANGE: 47,
  SYNCFS: 50,
  TMPFILE: 51,
  STATX: 52,
} as const;

const OP_NAMES = new Map<number, string>(Object.entries(Op).map(([name, code]) => [code, name]));

/**
 * The kernel's name of an opcode (`LOOKUP`, `READ`, …), or `opcode N` for one we do not know.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Op, opName } from "./protocol.ts";
 * assert.equal(opName(Op.GETATTR), "GETATTR");
 * assert.equal(opName(999), "opcode 999");
 * ```
 */
export function opName(opcode: number): string {
  return OP_NAMES.get(opcode) ?? `opcode ${opcode}`;
}

/** Opcodes that would modify the filesystem; all answered with EROFS. */
export const WRITE_OPS: ReadonlySet<number> = new Set([
  Op.SETATTR,
  Op.SYMLINK,
  Op.MKNOD,
  Op.MKDIR,
  Op.UNLINK,
  Op.RMDIR,
  Op.RENAME,
  Op.LINK,
  Op.WRITE,
  Op.SETXATTR,
  Op.REMOVEXATTR,
  Op.CREATE,
  Op.FALLOCATE,
  Op.RENAME2,
  Op.COPY_FILE_RANGE,
  Op.TMPFILE,
]);

/** INIT flags (`fuse_init_in.flags` / `fuse_init_out.flags`). */
export const InitFlag = {
  ASYNC_READ: 1 << 0,
  DO_READDIRPLUS: 1 << 13,
  PARALLEL_DIROPS: 1 << 18,
  MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23,
} as const;

/** `fuse_open_out.open_flags`. */
export const OpenFlag = {
  DIRECT_IO: 1 << 0,
  KEEP_CACHE: 1 << 1,
  CACHE_DIR: 1 << 3,
  NOFLUSH: 1 << 5,
} as const;

/** File type bits of `st_mode`. */
export const S_IFDIR = 0o040000;
/** Regular file type bits of `st_mode`. */
export const S_IFREG = 0o100000;
/** Symlink type bits of `st_mode`. */
export const S_IFLNK = 0o120000;

/** Size of `fuse_in_header`. */
export const IN_HEADER_SIZE = 40;
/** Size of `fuse_out_header`. */
export const OUT_HEADER_SIZE = 16;
/** Size of `fuse_attr`. */
export const ATTR_SIZE = 88;
/** Size of `fuse_entry_out`. */
export const ENTRY_OUT_SIZE = 128;
/** Size of `fuse_attr_out`. */
export const ATTR_OUT_SIZE = 104;
/** Size of a `fuse_dirent` header (before the name). */
export const DIRENT_SIZE = 24;

/** Attributes of one inode, as the filesystem reports them. */
export interface Attr {
  /** Inode number. */
  ino: number;
  /** Size in bytes. */
  size: number;
  /** `st_mode`: type and permission bits. */
  mode: number;
  /** Link count. */
  nlink: number;
}

/** A positive lookup answer: the inode and its attributes. */
export interface Entry {
  /** The attributes (their `ino` is the entry's node id). */
  attr: Attr;
}

/** One directory entry; `attr` is null for `.` and `..` (the kernel skips those in READDIRPLUS). */
export interface DirEntry {
  /** Raw name bytes. */
  name: Uint8Array;
  /** Attributes of the entry; `attr.ino` and the type bits of `attr.mode` are what READDIR needs. */
  attr: Attr;
  /** False for `.` and `..`: listed, but not looked up by READDIRPLUS. */
  lookup: boolean;
}

// 64-bit fields as two 32-bit halves: BigInt conversions are slow on hot paths.
function setU64(dv: DataView, off: number, v: number): void {
  dv.setUint32(off, v >>> 0, true);
  dv.setUint32(off + 4, Math.floor(v / 0x1_0000_0000), true);
}

/** `d_type` from the type bits of a mode. */
export function direntType(mode: number): number {
  return (mode & 0o170000) >> 12;
}

/** Writes a `fuse_attr` at `off`. Times are the epoch and owners root, as in /nix/store. */
export function writeAttr(dv: DataView, off: number, a: Attr): void {
  setU64(dv, off, a.ino);
  setU64(dv, off + 8, a.size);
  setU64(dv, off + 16, Math.ceil(a.size / 512)); // blocks
  // atime/mtime/ctime (24..47) and their nsec (48..59) stay zero.
  dv.setUint32(off + 60, a.mode, true);
  dv.setUint32(off + 64, a.nlink, true);
  // uid, gid, rdev (68..79) stay zero.
  dv.setUint32(off + 80, 4096, true); // blksize: what stdio uses as buffer size
}

/** Writes a `fuse_entry_out` at `off`; `ttl` seconds for both the entry and its attributes. */
export function writeEntry(dv: DataView, off: number, attr: Attr, ttl: number): void {
  setU64(dv, off, attr.ino); // nodeid
  // generation (off + 8) stays 0: inode numbers are never reused.
  setU64(dv, off + 16, ttl); // entry_valid
  setU64(dv, off + 24, ttl); // attr_valid; the nsec parts stay 0
  writeAttr(dv, off + 40, attr);
}

/** A `fuse_entry_out`. */
export function encodeEntry(attr: Attr, ttl: number): Uint8Array {
  const b = new Uint8Array(ENTRY_OUT_SIZE);
  writeEntry(new DataView(b.buffer), 0, attr, ttl);
  return b;
}

/** A `fuse_attr_out`. */
export function encodeAttrOut(attr: Attr, ttl: number): Uint8Array {
  const b = new Uint8Array(ATTR_OUT_SIZE);
  const dv = new DataView(b.buffer);
  setU64(dv, 0, ttl);
  writeAttr(dv, 16, attr);
  return b;
}

/** A `fuse_open_out`. */
export function encodeOpenOut(fh: number, openFlags: number): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  setU64(dv, 0, fh);
  dv.setUint32(8, openFlags, true);
  return b;
}

/** A `fuse_kstatfs` inside `fuse_statfs_out`. */
export function encodeStatfs(files: number): Uint8Array {
  const b = new Uint8Array(80);
  const dv = new DataView(b.buffer);
  setU64(dv, 24, files);
  dv.setUint32(40, 4096, true); // bsize
  dv.setUint32(44, 255, true); // namelen
  dv.setUint32(48, 4096, true); // frsize
  return b;
}

/**
 * Packs directory entries from index `offset` into at most `size` bytes (`fuse_dirent` or
 * `fuse_direntplus` records). Each record's `off` is the index of the next entry, which is what
 * the kernel hands back as the offset of the following READDIR.
 */
export function encodeDirents(
  entries: readonly DirEntry[],
  offset: number,
  size: number,
  plus: boolean,
  ttl: number,
): Uint8Array {
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  let pos = 0;
  for (let i = offset; i < entries.length; i++) {
    const e = entries[i];
    const recLen = (DIRENT_SIZE + e.name.length + 7) & ~7;
    const need = (plus ? ENTRY_OUT_SIZE : 0) + recLen;
    if (pos + need > size) break;
    if (plus) {
      // A zeroed entry (nodeid 0) tells the kernel not to instantiate a dentry.
      if (e.lookup) writeEntry(dv, pos, e.attr, ttl);
      pos += ENTRY_OUT_SIZE;
    }
    setU64(dv, pos, e.attr.ino);
    setU64(dv, pos + 8, i + 1);
    dv.setUint32(pos + 16, e.name.length, true);
    dv.setUint32(pos + 20, direntType(e.attr.mode), true);
    out.set(e.name, pos + DIRENT_SIZE);
    pos += recLen;
  }
  return out.subarray(0, pos);
}
