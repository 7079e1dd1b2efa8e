/**
 * A FUSE session over `/dev/fuse`: mounting (plain `mount(2)` as root, `fusermount3` with fd
 * passing otherwise), the request loop, dispatch to a {@linkcode FuseOps} implementation, and
 * unmounting. Requests are served concurrently: several blocking reads of the device are kept
 * outstanding on Deno's blocking pool, and each request is handled asynchronously, so a slow
 * answer never holds up the others.
 *
 * @module
 */
import { clip } from "../base/errors.ts";
import { addressOf, cstr, Errno, errno, ErrnoError, libc } from "./ffi.ts";
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

/** Log levels used by the FUSE layer. */
export type LogLevel = "debug" | "info" | "warn" | "error";
/** A log sink. */
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

const MS_RDONLY = 1n, MS_NOSUID = 2n, MS_NODEV = 4n;
const MNT_FORCE = 1, MNT_DETACH = 2;
const O_RDWR = 2, O_CLOEXEC = 0o2000000;
const AF_UNIX = 1, SOCK_STREAM = 1, SOL_SOCKET = 1, SCM_RIGHTS = 1;
const F_SETFD = 2, FD_CLOEXEC = 1;
// Large enough for any request a read-only mount receives; the kernel wants >= 8 KiB.
const READ_BUF_SIZE = 132 * 1024;
const MAX_PAGES = 256; // 1 MiB per READ

/** Decodes the octal escapes (`\040`) /proc uses in mount points. */
function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
}

/** One line of /proc/self/mountinfo, reduced to what we need. */
export interface MountInfo {
  /** `major:minor` of the mounted filesystem. */
  dev: string;
  /** Mount point. */
  mountpoint: string;
  /** Filesystem type, e.g. `fuse.nixcas`. */
  fstype: string;
}

/** The current mounts, from /proc/self/mountinfo. */
export function readMountInfo(): MountInfo[] {
  const text = Deno.readTextFileSync("/proc/self/mountinfo");
  const out: MountInfo[] = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    const f = line.split(" ");
    const sep = f.indexOf("-", 6);
    out.push({ dev: f[2], mountpoint: unescapeMountPath(f[4]), fstype: f[sep + 1] ?? "" });
  }
  return out;
}

/**
 * Checks that `mountpoint` can be mounted on and returns its real path. Throws an error naming
 * it when it does not exist, is a stale FUSE mount (advising how to unmount it), is not a
 * directory, already has something mounted on it, or is not empty (a mount would hide its
 * files); also when /dev/fuse is missing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkMountpoint } from "./session.ts";
 * const dir = Deno.makeTempDirSync();
 * Deno.writeTextFileSync(`${dir}/file`, "");
 * assert.throws(() => checkMountpoint(dir), /is not empty/);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function checkMountpoint(mountpoint: string): string {
  let real: string;
  try {
    real = Deno.realPathSync(mountpoint);
  } catch (e) {
    const msg = (e as Error).message;
    if (/not connected/i.test(msg)) {
      throw new Error(
        `${mountpoint} is a stale FUSE mount (its server is gone); unmount it first with ` +
          `\`fusermount3 -u ${mountpoint}\` or, as root, \`umount -l ${mountpoint}\``,
        { cause: e },
      );
    }
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`mountpoint ${clip(mountpoint)} does not exist`, { cause: e });
    }
    // Deno's message repeats the path: a huge one is quoted short.
    throw new Error(
      `mountpoint ${clip(mountpoint)}: ${msg.replaceAll(mountpoint, clip(mountpoint))}`,
      {
        cause: e,
      },
    );
  }
  if (!Deno.statSync(real).isDirectory) throw new Error(`mountpoint ${real} is not a directory`);
  if (readMountInfo().some((m) => m.mountpoint === real)) {
    throw new Error(`${real} is busy: something is already mounted there`);
  }
  let empty: boolean;
  try {
    empty = Deno.readDirSync(real)[Symbol.iterator]().next().done ?? false;
  } catch (e) {
    throw new Error(`mountpoint ${real}: ${(e as Error).message}`, { cause: e });
  }
  if (!empty) {
    throw new Error(`mountpoint ${real} is not empty: a mount would hide its files`);
  }
  try {
    Deno.statSync("/dev/fuse");
  } catch {
    throw new Error("/dev/fuse is missing: load the fuse kernel module (modprobe fuse)");
  }
  return real;
}

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
  #dev = "";
  #closing = false;
  #viaFusermount: boolean;
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
    this.#viaFusermount = viaFusermount;
    this.#ttl = opts.ttl ?? 86400;
    this.#log = opts.log ?? (() => {});
    this.#dev = readMountInfo().findLast((m) => m.mountpoint === mountpoint)?.dev ?? "";
    const ra = opts.readaheadKb ?? 1024;
    if (ra > 0 && this.#dev && libc().getuid() === 0) {
      try {
        Deno.writeTextFileSync(`/sys/class/bdi/${this.#dev}/read_ahead_kb`, String(ra));
      } catch (e) {
        this.#log("debug", `cannot set readahead: ${e instanceof Error ? e.message : e}`);
      }
    }
    const readers = Math.max(1, opts.readers ?? 4);
    this.closed = Promise.all(Array.from({ length: readers }, () => this.#readerLoop()))
      .then(() => void libc().close(this.#fd));
  }

  /**
   * Mounts `ops` at `opts.mountpoint` and starts serving. Throws with a clear message when the
   * mountpoint is not usable (see {@linkcode checkMountpoint}) or mounting is not permitted.
   */
  static async mount(ops: FuseOps, opts: SessionOptions): Promise<FuseSession> {
    const mountpoint = checkMountpoint(opts.mountpoint);
    const fsname = opts.fsname ?? "nixcas";
    const method = opts.method ?? "auto";
    const viaFusermount = method === "fusermount" ||
      (method === "auto" && libc().getuid() !== 0);
    const fd = viaFusermount
      ? await fusermountOpen(mountpoint, fsname, opts.allowOther ?? false)
      : syscallMount(mountpoint, fsname, opts.allowOther ?? false);
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
      if (this.#viaFusermount) await this.#fusermountUnmount();
      else this.#syscallUnmount(opts.force ?? false);
    }
    await this.closed;
  }

  #syscallUnmount(force: boolean): void {
    const p = cstr(this.mountpoint);
    if (libc().umount2(p, 0) === 0) return;
    const e = errno();
    if (e === Errno.EINVAL && !this.#stillMounted()) return; // already unmounted elsewhere
    if (e !== Errno.EBUSY && e !== Errno.EINVAL) {
      throw new ErrnoError(`umount ${this.mountpoint}`, e);
    }
    this.#log("warn", `${this.mountpoint} is busy: ${force ? "aborting" : "detaching lazily"}`);
    // MNT_FORCE makes FUSE abort the connection, which wakes our blocked reads.
    if (force) libc().umount2(p, MNT_FORCE);
    if (libc().umount2(p, MNT_DETACH) !== 0 && this.#stillMounted()) {
      throw new ErrnoError(`umount2 ${this.mountpoint}`, errno());
    }
  }

  async #fusermountUnmount(): Promise<void> {
    const run = (args: string[]) =>
      new Deno.Command("fusermount3", { args, stdout: "null", stderr: "piped" }).output();
    let r = await run(["-u", "--", this.mountpoint]);
    if (!r.success && this.#stillMounted()) r = await run(["-u", "-z", "--", this.mountpoint]);
    if (!r.success && this.#stillMounted()) {
      throw new Error(`fusermount3 -u failed: ${new TextDecoder().decode(r.stderr).trim()}`);
    }
  }

  #stillMounted(): boolean {
    try {
      return readMountInfo().some((m) =>
        this.#dev ? m.dev === this.#dev : m.mountpoint === this.mountpoint
      );
    } catch {
      return false;
    }
  }

  async #readerLoop(): Promise<void> {
    const buf = new Uint8Array(READ_BUF_SIZE);
    let failures = 0;
    while (true) {
      const n = Number(await libc().read(this.#fd, buf, BigInt(buf.length)));
      if (n <= 0) {
        // errno belongs to the worker thread, so decide from the mount table: ENODEV (the
        // normal end) means the mount is gone; anything else is retried a few times.
        if (this.#closing || !this.#stillMounted() || ++failures > 100) return;
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
    const w = Number(libc().writev(this.#fd, this.#iov, cnt));
    if (w !== len && !this.#closing) {
      const e = errno();
      // ENOENT: the request was interrupted meanwhile; ENODEV: the mount is gone.
      if (e !== Errno.ENOENT && e !== Errno.ENODEV) {
        this.#log("warn", `writev reply failed: ${w}, errno ${e}`);
      }
    }
  }
}

function syscallMount(mountpoint: string, fsname: string, allowOther: boolean): number {
  const fd = libc().open(cstr("/dev/fuse"), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    const e = errno();
    throw new ErrnoError(
      e === Errno.ENOENT
        ? "/dev/fuse is missing (load the fuse module or pass --device /dev/fuse)"
        : "open /dev/fuse",
      e,
    );
  }
  const data = `fd=${fd},rootmode=40000,user_id=${libc().getuid()},group_id=${libc().getgid()}` +
    `,default_permissions${allowOther ? ",allow_other" : ""}`;
  const r = libc().mount(
    cstr(fsname),
    cstr(mountpoint),
    cstr(`fuse.${fsname}`),
    MS_RDONLY | MS_NOSUID | MS_NODEV,
    cstr(data),
  );
  if (r !== 0) {
    const e = errno();
    libc().close(fd);
    throw new ErrnoError(`mount ${mountpoint}`, e);
  }
  return fd;
}

/**
 * Mounts through the setuid `fusermount3`, which opens /dev/fuse, mounts, and sends the device
 * fd back over a unix socket (SCM_RIGHTS) named by `_FUSE_COMMFD`.
 */
async function fusermountOpen(
  mountpoint: string,
  fsname: string,
  allowOther: boolean,
): Promise<number> {
  const lc = libc();
  const sv = new Int32Array(2);
  if (lc.socketpair(AF_UNIX, SOCK_STREAM, 0, sv) !== 0) {
    throw new ErrnoError("socketpair", errno());
  }
  const [ours, theirs] = sv;
  // Only the child's end may be inherited.
  lc.fcntl(ours, F_SETFD, FD_CLOEXEC);
  const opts = `ro,nosuid,nodev,default_permissions,fsname=${fsname},subtype=${fsname}` +
    (allowOther ? ",allow_other" : "");
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("fusermount3", {
      args: ["-o", opts, "--", mountpoint],
      env: { _FUSE_COMMFD: String(theirs) },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    lc.close(ours);
    lc.close(theirs);
    throw new Error("cannot run fusermount3 (install fuse3)", { cause: e });
  }
  // Close our copy of the child's end so recvmsg sees EOF if fusermount3 fails.
  lc.close(theirs);
  const received = recvFd(ours);
  const [fd, status] = await Promise.all([received, child.output()]);
  lc.close(ours);
  if (!status.success || fd < 0) {
    if (fd >= 0) lc.close(fd);
    const msg = new TextDecoder().decode(status.stderr).trim();
    const hint = /open \/dev\/fuse: Permission denied/.test(msg)
      ? " (/dev/fuse must be readable and writable by you: usually mode 0666; or mount as root)"
      : "";
    throw new Error(
      `fusermount3 failed to mount ${mountpoint}: ${msg || `exit ${status.code}`}${hint}`,
    );
  }
  lc.fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
}

/** Receives one fd sent with SCM_RIGHTS; -1 when the peer closed without sending one. */
async function recvFd(sock: number): Promise<number> {
  const data = new Uint8Array(1);
  const iov = new BigUint64Array([addressOf(data), 1n]);
  const control = new Uint8Array(24); // CMSG_SPACE(sizeof(int))
  const msg = new Uint8Array(56); // struct msghdr
  const mv = new DataView(msg.buffer);
  mv.setBigUint64(16, addressOf(iov), true); // msg_iov
  mv.setBigUint64(24, 1n, true); // msg_iovlen
  mv.setBigUint64(32, addressOf(control), true); // msg_control
  mv.setBigUint64(40, BigInt(control.length), true); // msg_controllen
  const n = Number(await libc().recvmsg(sock, msg, 0));
  if (n <= 0) return -1;
  const cv = new DataView(control.buffer);
  const cmsgLen = Number(cv.getBigUint64(0, true));
  if (cmsgLen < 20 || cv.getInt32(8, true) !== SOL_SOCKET || cv.getInt32(12, true) !== SCM_RIGHTS) {
    return -1;
  }
  // Keep the buffers alive until the call has returned.
  void data, iov;
  return cv.getInt32(16, true);
}
