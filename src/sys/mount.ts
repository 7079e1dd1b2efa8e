/**
 * Mount system calls through libc: `mount(2)`, `umount2(2)`, and the unix socket pair over
 * which `fusermount3` hands back the descriptor it opened (SCM_RIGHTS). Failures throw
 * {@linkcode LibcError} naming the path at fault.
 *
 * @module
 */
import { addressOf, cstr, errno, libc, LibcError } from "./libc.ts";

/** `mount(2)` flag: read-only. */
export const MS_RDONLY = 1n;
/** `mount(2)` flag: ignore set-user-id bits. */
export const MS_NOSUID = 2n;
/** `mount(2)` flag: no device nodes. */
export const MS_NODEV = 4n;
/** `umount2` flag: abort the connection of a busy FUSE mount. */
export const MNT_FORCE = 1;
/** `umount2` flag: detach now, clean up once no longer busy. */
export const MNT_DETACH = 2;

const AF_UNIX = 1, SOCK_STREAM = 1, SOL_SOCKET = 1, SCM_RIGHTS = 1;
const F_SETFD = 2, FD_CLOEXEC = 1;

/** `mount(source, target, fstype, flags, data)`. */
export function mount(
  source: string,
  target: string,
  fstype: string,
  flags: bigint,
  data: string,
): void {
  const r = libc().mount(cstr(source), cstr(target), cstr(fstype), flags, cstr(data));
  if (r !== 0) throw new LibcError(errno(), "mount", target);
}

/**
 * `umount2(target, flags)`. The caller reads {@linkcode LibcError.errno} to tell a busy mount
 * (EBUSY) or one already gone (EINVAL) from other failures.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Errno, LibcError } from "./libc.ts";
 * import { umount } from "./mount.ts";
 * const dir = Deno.makeTempDirSync();
 * let err: unknown;
 * try {
 *   umount(dir, 0); // nothing is mounted there
 * } catch (e) {
 *   err = e;
 * }
 * assert.ok(err instanceof LibcError);
 * assert.ok(err.errno === Errno.EINVAL || err.errno === Errno.EPERM, err.message);
 * Deno.removeSync(dir);
 * ```
 */
export function umount(target: string, flags: number): void {
  if (libc().umount2(cstr(target), flags) !== 0) throw new LibcError(errno(), "umount2", target);
}

/** Sets close-on-exec on `fd`, so that children do not inherit it. */
export function setCloexec(fd: number): void {
  if (libc().fcntl(fd, F_SETFD, FD_CLOEXEC) !== 0) throw new LibcError(errno(), "fcntl", "");
}

/** A connected pair of unix stream sockets; neither end is close-on-exec. */
export function socketPair(): [number, number] {
  const sv = new Int32Array(2);
  if (libc().socketpair(AF_UNIX, SOCK_STREAM, 0, sv) !== 0) {
    throw new LibcError(errno(), "socketpair", "");
  }
  return [sv[0], sv[1]];
}

/**
 * Receives one descriptor sent with SCM_RIGHTS over the unix socket `sock`, waiting on Deno's
 * blocking thread pool; -1 when the peer closed (or failed) without sending one.
 */
export async function recvFd(sock: number): Promise<number> {
  const data = new Uint8Array(1);
  const iov = new BigUint64Array([addressOf(data), 1n]);
  const control = new Uint8Array(24); // CMSG_SPACE(sizeof(int))
  const msg = new Uint8Array(56); // struct msghdr
  const mv = new DataView(msg.buffer);
  mv.setBigUint64(16, addressOf(iov), true); // msg_iov
  mv.setBigUint64(24, 1n, true); // msg_iovlen
  mv.setBigUint64(32, addressOf(control), true); // msg_control
  mv.setBigUint64(40, BigInt(control.length), true); // msg_controllen
  const n = Number(await libc().recvmsgAsync(sock, msg, 0));
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
