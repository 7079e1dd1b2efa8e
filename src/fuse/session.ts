/**
 * A FUSE session over `/dev/fuse`: the request loop and dispatch to a {@linkcode FuseOps}
 * implementation (mounting and unmounting are in `mount.ts`). Requests are served
 * concurrently: several blocking reads of the device are kept outstanding on Deno's blocking
 * pool, and each request is handled asynchronously, so a slow answer never holds up the others.
 *
 * @module
 */
import { addressOf, close, Errno, getuid, LibcError, tryReadAsync, writev } from "../sys/libc.ts";
import {
  checkMountpoint,
  type MountedFuse,
  mountFuse,
  readMountInfo,
  stillMounted,
  unmountFuse,
} from "./mount.ts";
import {
  type Attr,
  type DirEntry,
  encodeAttrOut,
  encodeDirents,
  encodeEntry,
  encodeOpenOut,
  encodeStatfs,
  FUSE_KERNEL_MINOR_VERSION,
  FUSE_KERNEL_VERSION,
  IN_HEADER_SIZE,
  InitFlag,
  Op,
  OpenFlag,
  opName,
  OUT_HEADER_SIZE,
  WRITE_OPS,
} from "./protocol.ts";

/** Thrown by {@linkcode FuseOps} methods to answer a request with an errno. */
export class FuseErrno extends Error {
  /** The positive errno value sent to the kernel. */
  readonly errno: number;
  /** Creates the error; `message` is for logs only. */
  constructor(code: number, message?: string) {
    super(message ?? `errno ${code}`);
    this.name = "FuseErrno";
    this.errno = code;
  }
}

/** Result of OPEN / OPENDIR. */
export interface Opened {
  /** File handle handed back with later requests. */
  fh: number;
  /** Keep the page cache (or the directory cache) across opens: contents are immutable. */
  keepCache: boolean;
}

/** What a filesystem implements; node ids are the inode numbers, 1 is the root. */
export interface FuseOps {
  /** Looks a name up in a directory. */
  lookup(parent: number, name: Uint8Array): Promise<Attr> | Attr;
  /** Attributes of an inode. */
  getattr(ino: number): Promise<Attr> | Attr;
  /** Target of a symlink. */
  readlink(ino: number): Promise<Uint8Array> | Uint8Array;
  /** Opens a file for reading. */
  open(ino: number): Promise<Opened> | Opened;
  /** Reads `size` bytes at `offset` (fewer only at the end of the file). */
  read(ino: number, fh: number, offset: number, size: number): Promise<Uint8Array> | Uint8Array;
  /** Closes a file handle. */
  release(ino: number, fh: number): Promise<void> | void;
  /** Opens a directory. */
  opendir(ino: number): Promise<Opened> | Opened;
  /** All entries of an open directory; the session pages through them by index. */
  readdir(ino: number, fh: number): Promise<readonly DirEntry[]> | readonly DirEntry[];
  /** Closes a directory handle. */
  releasedir(ino: number, fh: number): Promise<void> | void;
  /** Number of inodes known, for statfs. */
  inodeCount(): number;
}

/**
 * Log levels used by the FUSE layer: `error` for failures answered with EIO, `warn` for replies
 * the kernel did not take, `debug` for the protocol's details.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { LogLevel } from "@nixcas/nixcas/fuse";
 * const order: LogLevel[] = ["debug", "info", "warn", "error"];
 * const atLeast = (min: LogLevel) => (level: LogLevel) => order.indexOf(level) >= order.indexOf(min);
 * assert(atLeast("warn")("error"));
 * assert(!atLeast("warn")("debug"));
 * ```
 */
export type LogLevel = "debug" | "info" | "warn" | "error";
/**
 * A log sink.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import { type Logger, mountStore } from "@nixcas/nixcas/fuse";
 * const haveFuse = await Deno.stat("/dev/fuse").then(() => true, () => false);
 * if (haveFuse) {
 *   const dir = await Deno.makeTempDir();
 *   const store = await openStore("memory://");
 *   const lines: string[] = [];
 *   const log: Logger = (level, message) => lines.push(`${level}: ${message}`);
 *   const handle = await mountStore({ mountpoint: dir, ...store, log });
 *   await handle.unmount();
 *   // The kernel's INIT handshake is logged at debug level.
 *   assert(lines.some((l) => l.startsWith("debug: init: ")), lines.join("\n"));
 *   await store.close();
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export type Logger = (level: LogLevel, message: string) => void;

/** Options for {@linkcode FuseSession.mount}. */
export interface SessionOptions {
  /** Existing directory to mount on. */
  mountpoint: string;
  /** Name shown in /proc/mounts (fsname and subtype). Default `nixcas`. */
  fsname?: string;
  /** Let other users access the mount (non-root needs `user_allow_other` in /etc/fuse.conf). */
  allowOther?: boolean;
  /** How to mount: `mount(2)` (root only), `fusermount3`, or `auto` (by uid). Default `auto`. */
  method?: "syscall" | "fusermount" | "auto";
  /** Blocking device reads kept outstanding. Default 4. */
  readers?: number;
  /** Entry and attribute cache timeout in seconds. Default one day (contents are immutable). */
  ttl?: number;
  /**
   * Kernel readahead for the mount in KiB (root only, via /sys/class/bdi). The kernel starts
   * FUSE mounts at 128 KiB and INIT can only lower it; 1 MiB halves the cost of cold sequential
   * reads. Default 1024; 0 leaves it alone.
   */
  readaheadKb?: number;
  /** Log sink. */
  log?: Logger;
}

// Large enough for any request a read-only mount receives; the kernel wants >= 8 KiB.
const READ_BUF_SIZE = 132 * 1024;
const MAX_PAGES = 256; // 1 MiB per READ

/** A mounted FUSE filesystem being served. */
export class FuseSession {
  /** The absolute mount point. */
  readonly mountpoint: string;
  /** Resolves when the filesystem is unmounted and the session has stopped serving. */
  readonly closed: Promise<void>;
  /** INIT details (kernel version and negotiated flags), once known. */
  initInfo = "";
  /** Requests received, by opcode. */
  readonly requestCounts: number[] = [];

  #fd: number;
  #mount: MountedFuse;
  #closing = false;
  #ops: FuseOps;
  #ttl: number;
  #log: Logger;
  #iov = new BigUint64Array(4);
  #hdr = new Uint8Array(OUT_HEADER_SIZE);
  #hdrView = new DataView(this.#hdr.buffer);

  private constructor(
    ops: FuseOps,
    fd: number,
    mountpoint: string,
    viaFusermount: boolean,
    opts: SessionOptions,
  ) {
    this.#ops = ops;
    this.#fd = fd;
    this.mountpoint = mountpoint;
    this.#ttl = opts.ttl ?? 86400;
    this.#log = opts.log ?? (() => {});
    const dev = readMountInfo().findLast((m) => m.mountpoint === mountpoint)?.dev ?? "";
    this.#mount = { mountpoint, dev, viaFusermount };
    const ra = opts.readaheadKb ?? 1024;
    if (ra > 0 && dev && getuid() === 0) {
      try {
        Deno.writeTextFileSync(`/sys/class/bdi/${dev}/read_ahead_kb`, String(ra));
      } catch (e) {
        this.#log("debug", `cannot set readahead: ${e instanceof Error ? e.message : e}`);
      }
    }
    const readers = Math.max(1, opts.readers ?? 4);
    this.closed = Promise.all(Array.from({ length: readers }, () => this.#readerLoop()))
      .then(() => {
        try {
          close(this.#fd);
        } catch { /* the device is done with either way */ }
      });
  }

  /**
   * Mounts `ops` at `opts.mountpoint` and starts serving. Throws with a clear message when the
   * mountpoint is not usable (see {@linkcode checkMountpoint}) or mounting is not permitted.
   */
  static async mount(ops: FuseOps, opts: SessionOptions): Promise<FuseSession> {
    const mountpoint = checkMountpoint(opts.mountpoint);
    const fsname = opts.fsname ?? "nixcas";
    const method = opts.method ?? "auto";
    const viaFusermount = method === "fusermount" || (method === "auto" && getuid() !== 0);
    const fd = await mountFuse(mountpoint, {
      fsname,
      allowOther: opts.allowOther ?? false,
      viaFusermount,
    });
    return new FuseSession(ops, fd, mountpoint, viaFusermount, opts);
  }

  /**
   * Unmounts and waits until serving has stopped. A busy mount is detached lazily: it
   * disappears at once, and the session keeps serving open files until they are closed. With
   * `force` (root only) a busy mount's connection is aborted instead: open files then fail
   * with ENOTCONN, and serving stops at once.
   */
  async unmount(opts: { force?: boolean } = {}): Promise<void> {
    if (!this.#closing || opts.force) {
      this.#closing = true;
      await unmountFuse(this.#mount, opts.force ?? false, this.#log);
    }
    await this.closed;
  }

  async #readerLoop(): Promise<void> {
    const buf = new Uint8Array(READ_BUF_SIZE);
    let failures = 0;
    while (true) {
      const n = await tryReadAsync(this.#fd, buf);
      if (n <= 0) {
        // errno belongs to the worker thread, so decide from the mount table: ENODEV (the
        // normal end) means the mount is gone; anything else is retried a few times.
        if (this.#closing || !stillMounted(this.#mount) || ++failures > 100) return;
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      failures = 0;
      const dv = new DataView(buf.buffer, 0, n);
      const opcode = dv.getUint32(4, true);
      this.requestCounts[opcode] = (this.requestCounts[opcode] ?? 0) + 1;
      if (opcode === Op.INIT) {
        this.#init(dv);
        continue;
      }
      if (opcode === Op.DESTROY) {
        this.#reply(dv.getBigUint64(8, true), 0);
        return;
      }
      // Copy: the buffer is reused by the next read while this request is handled.
      const req = buf.slice(0, n);
      this.#dispatch(req, new DataView(req.buffer), opcode);
    }
  }

  #init(dv: DataView): void {
    const unique = dv.getBigUint64(8, true);
    const major = dv.getUint32(IN_HEADER_SIZE, true);
    const minor = dv.getUint32(IN_HEADER_SIZE + 4, true);
    const kernelReadahead = dv.getUint32(IN_HEADER_SIZE + 8, true);
    const kflags = dv.getUint32(IN_HEADER_SIZE + 12, true);
    if (major !== FUSE_KERNEL_VERSION) {
      this.#log("error", `unsupported FUSE protocol ${major}.${minor}`);
      return this.#reply(unique, -Errno.EINVAL);
    }
    const want = InitFlag.ASYNC_READ | InitFlag.DO_READDIRPLUS | InitFlag.PARALLEL_DIROPS |
      InitFlag.MAX_PAGES | InitFlag.CACHE_SYMLINKS;
    const flags = kflags & want;
    const out = new Uint8Array(64);
    const o = new DataView(out.buffer);
    o.setUint32(0, FUSE_KERNEL_VERSION, true);
    o.setUint32(4, Math.min(minor, FUSE_KERNEL_MINOR_VERSION), true);
    o.setUint32(8, Math.max(kernelReadahead, MAX_PAGES * 4096), true); // the kernel caps it
    o.setUint32(12, flags, true);
    o.setUint16(16, 64, true); // max_background: concurrent async reads
    o.setUint16(18, 48, true); // congestion_threshold
    o.setUint32(20, 4096, true); // max_write: the mount is read-only
    o.setUint32(24, 1, true); // time_gran
    o.setUint16(28, MAX_PAGES, true);
    this.initInfo = `kernel FUSE ${major}.${minor}, flags 0x${flags.toString(16)}`;
    this.#log("debug", `init: ${this.initInfo}`);
    this.#reply(unique, 0, out);
  }

  #dispatch(req: Uint8Array, dv: DataView, opcode: number): void {
    const unique = dv.getBigUint64(8, true);
    const nodeid = Number(dv.getBigUint64(16, true));
    const B = IN_HEADER_SIZE;
    const ops = this.#ops;
    const ttl = this.#ttl;
    const answer = (work: () => Promise<Uint8Array | null> | Uint8Array | null) => {
      let r: Promise<Uint8Array | null> | Uint8Array | null;
      try {
        r = work();
      } catch (e) {
        return this.#fail(unique, opcode, nodeid, e);
      }
      if (r instanceof Promise) {
        r.then(
          (body) => this.#reply(unique, 0, body ?? undefined),
          (e) => this.#fail(unique, opcode, nodeid, e),
        );
      } else this.#reply(unique, 0, r ?? undefined);
    };
    const then = <T>(v: Promise<T> | T, f: (x: T) => Uint8Array | null) =>
      v instanceof Promise ? v.then(f) : f(v);

    switch (opcode) {
      case Op.LOOKUP: {
        // The name is NUL-terminated.
        const end = req.indexOf(0, B);
        const name = req.subarray(B, end < 0 ? req.length : end);
        return answer(() => then(ops.lookup(nodeid, name), (a) => encodeEntry(a, ttl)));
      }
      case Op.GETATTR:
        return answer(() => then(ops.getattr(nodeid), (a) => encodeAttrOut(a, ttl)));
      case Op.READLINK:
        return answer(() => ops.readlink(nodeid));
      case Op.OPEN: {
        const flags = dv.getUint32(B, true);
        if ((flags & 3) !== 0) return this.#reply(unique, -Errno.EROFS);
        return answer(() =>
          // NOFLUSH: close(2) need not wait for us. Besides saving a round trip, a close on
          // the serving thread (Deno closes files synchronously) would otherwise deadlock.
          then(ops.open(nodeid), (o) =>
            encodeOpenOut(o.fh, OpenFlag.NOFLUSH | (o.keepCache ? OpenFlag.KEEP_CACHE : 0)))
        );
      }
      case Op.READ: {
        const fh = Number(dv.getBigUint64(B, true));
        const offset = Number(dv.getBigUint64(B + 8, true));
        const size = dv.getUint32(B + 16, true);
        return answer(() => ops.read(nodeid, fh, offset, size));
      }
      case Op.RELEASE: {
        const fh = Number(dv.getBigUint64(B, true));
        return answer(() => then(ops.release(nodeid, fh), () => null));
      }
      case Op.OPENDIR:
        return answer(() =>
          then(
            ops.opendir(nodeid),
            (o) => encodeOpenOut(o.fh, o.keepCache ? OpenFlag.KEEP_CACHE | OpenFlag.CACHE_DIR : 0),
          )
        );
      case Op.READDIR:
      case Op.READDIRPLUS: {
        const fh = Number(dv.getBigUint64(B, true));
        const offset = Number(dv.getBigUint64(B + 8, true));
        const size = dv.getUint32(B + 16, true);
        const plus = opcode === Op.READDIRPLUS;
        return answer(() =>
          then(ops.readdir(nodeid, fh), (list) => encodeDirents(list, offset, size, plus, ttl))
        );
      }
      case Op.RELEASEDIR: {
        const fh = Number(dv.getBigUint64(B, true));
        return answer(() => then(ops.releasedir(nodeid, fh), () => null));
      }
      case Op.STATFS:
        return this.#reply(unique, 0, encodeStatfs(ops.inodeCount()));
      case Op.FSYNC:
      case Op.FSYNCDIR:
        return this.#reply(unique, 0);
      case Op.FORGET:
      case Op.BATCH_FORGET:
      case Op.INTERRUPT:
        // No reply. Inodes are never freed: they name immutable content.
        return;
      default:
        // ENOSYS makes the kernel stop sending xattr, access, lseek, ... requests.
        return this.#reply(unique, WRITE_OPS.has(opcode) ? -Errno.EROFS : -Errno.ENOSYS);
    }
  }

  #fail(unique: bigint, opcode: number, nodeid: number, e: unknown): void {
    const op = `${opName(opcode)} of inode ${nodeid}`;
    if (e instanceof FuseErrno) {
      if (e.errno === Errno.EIO) this.#log("error", `${op}: ${e.message}`);
      return this.#reply(unique, -e.errno);
    }
    this.#log("error", `${op} failed: ${e instanceof Error ? e.stack ?? e.message : e}`);
    this.#reply(unique, -Errno.EIO);
  }

  // Replies are written synchronously from the JS thread, so the header and iovec buffers
  // can be shared; the body is sent in place (no copy of file data).
  #reply(unique: bigint, error: number, body?: Uint8Array): void {
    const len = OUT_HEADER_SIZE + (body?.length ?? 0);
    const h = this.#hdrView;
    h.setUint32(0, len, true);
    h.setInt32(4, error, true);
    h.setBigUint64(8, unique, true);
    this.#iov[0] = addressOf(this.#hdr);
    this.#iov[1] = BigInt(OUT_HEADER_SIZE);
    let cnt = 1;
    if (body && body.length) {
      this.#iov[2] = addressOf(body);
      this.#iov[3] = BigInt(body.length);
      cnt = 2;
    }
    let w: number;
    try {
      w = writev(this.#fd, this.#iov, cnt);
    } catch (e) {
      // ENOENT: the request was interrupted meanwhile; ENODEV: the mount is gone.
      const quiet = e instanceof LibcError &&
        (e.errno === Errno.ENOENT || e.errno === Errno.ENODEV);
      if (!this.#closing && !quiet) {
        this.#log("warn", `writev reply failed: ${e instanceof Error ? e.message : e}`);
      }
      return;
    }
    if (w !== len && !this.#closing) {
      this.#log("warn", `writev reply failed: ${w} of ${len} bytes written`);
    }
  }
}
