/**
 * FUSE mount mechanics: checking a mountpoint, mounting `/dev/fuse` (plain `mount(2)` as root,
 * `fusermount3` with descriptor passing otherwise), reading /proc/self/mountinfo, and
 * unmounting. The request loop over the mounted device is in `session.ts`.
 *
 * @module
 */
import { clip } from "../base/errors.ts";
import { AT_FDCWD, close, Errno, getgid, getuid, LibcError, O_RDWR, openAt } from "../sys/libc.ts";
import {
  MNT_DETACH,
  MNT_FORCE,
  mount,
  MS_NODEV,
  MS_NOSUID,
  MS_RDONLY,
  recvFd,
  setCloexec,
  socketPair,
  umount,
} from "../sys/mount.ts";
import type { Logger } from "./session.ts";

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

/**
 * The current mounts, from /proc/self/mountinfo.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readMountInfo } from "./mount.ts";
 * assert.ok(readMountInfo().some((m) => m.mountpoint === "/"));
 * ```
 */
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
 * import { checkMountpoint } from "./mount.ts";
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

/** How to mount, see {@linkcode mountFuse}. */
export interface MountOptions {
  /** Name shown in /proc/mounts (fsname and subtype). */
  fsname: string;
  /** Let other users access the mount (non-root needs `user_allow_other` in /etc/fuse.conf). */
  allowOther: boolean;
  /** Mount through `fusermount3` instead of `mount(2)` (which needs root). */
  viaFusermount: boolean;
}

/**
 * Mounts a read-only FUSE filesystem at `mountpoint` (a real path, see
 * {@linkcode checkMountpoint}) and returns the open `/dev/fuse` descriptor to serve it on.
 */
export function mountFuse(mountpoint: string, opts: MountOptions): Promise<number> | number {
  return opts.viaFusermount
    ? fusermountOpen(mountpoint, opts.fsname, opts.allowOther)
    : syscallMount(mountpoint, opts.fsname, opts.allowOther);
}

/** What {@linkcode unmountFuse} needs to know about a mount. */
export interface MountedFuse {
  /** The mount point. */
  mountpoint: string;
  /** `major:minor` of the mounted filesystem (empty when unknown). */
  dev: string;
  /** Mounted through `fusermount3` (so unmounted through it too). */
  viaFusermount: boolean;
}

/**
 * Unmounts; a busy mount is detached lazily, or with `force` (root only) its connection is
 * aborted. An unmount that finds the filesystem already gone succeeds.
 */
export async function unmountFuse(
  m: MountedFuse,
  force: boolean,
  log: Logger,
): Promise<void> {
  if (m.viaFusermount) await fusermountUnmount(m);
  else syscallUnmount(m, force, log);
}

/** Whether the mount is still in the mount table. */
export function stillMounted(m: MountedFuse): boolean {
  try {
    return readMountInfo().some((i) => m.dev ? i.dev === m.dev : i.mountpoint === m.mountpoint);
  } catch {
    return false;
  }
}

function syscallUnmount(m: MountedFuse, force: boolean, log: Logger): void {
  try {
    return umount(m.mountpoint, 0);
  } catch (e) {
    if (!(e instanceof LibcError)) throw e;
    if (e.errno === Errno.EINVAL && !stillMounted(m)) return; // already unmounted elsewhere
    if (e.errno !== Errno.EBUSY && e.errno !== Errno.EINVAL) throw e;
  }
  log("warn", `${m.mountpoint} is busy: ${force ? "aborting" : "detaching lazily"}`);
  // MNT_FORCE makes FUSE abort the connection, which wakes the session's blocked reads.
  if (force) {
    try {
      umount(m.mountpoint, MNT_FORCE);
    } catch { /* the detach below decides */ }
  }
  try {
    umount(m.mountpoint, MNT_DETACH);
  } catch (e) {
    if (stillMounted(m)) throw e;
  }
}

async function fusermountUnmount(m: MountedFuse): Promise<void> {
  const run = (args: string[]) =>
    new Deno.Command("fusermount3", { args, stdout: "null", stderr: "piped" }).output();
  let r = await run(["-u", "--", m.mountpoint]);
  if (!r.success && stillMounted(m)) r = await run(["-u", "-z", "--", m.mountpoint]);
  if (!r.success && stillMounted(m)) {
    throw new Error(`fusermount3 -u failed: ${new TextDecoder().decode(r.stderr).trim()}`);
  }
}

function syscallMount(mountpoint: string, fsname: string, allowOther: boolean): number {
  let fd: number;
  try {
    fd = openAt(AT_FDCWD, new TextEncoder().encode("/dev/fuse"), O_RDWR);
  } catch (e) {
    if (!(e instanceof LibcError) || e.errno !== Errno.ENOENT) throw e;
    throw new LibcError(
      e.errno,
      "open",
      e.path,
      "load the fuse module or pass --device /dev/fuse",
    );
  }
  const data = `fd=${fd},rootmode=40000,user_id=${getuid()},group_id=${getgid()}` +
    `,default_permissions${allowOther ? ",allow_other" : ""}`;
  try {
    mount(fsname, mountpoint, `fuse.${fsname}`, MS_RDONLY | MS_NOSUID | MS_NODEV, data);
  } catch (e) {
    close(fd);
    throw e;
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
  const [ours, theirs] = socketPair();
  // Only the child's end may be inherited.
  setCloexec(ours);
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
    close(ours);
    close(theirs);
    throw new Error("cannot run fusermount3 (install fuse3)", { cause: e });
  }
  // Close our copy of the child's end so recvmsg sees EOF if fusermount3 fails.
  close(theirs);
  const received = recvFd(ours);
  const [fd, status] = await Promise.all([received, child.output()]);
  close(ours);
  if (!status.success || fd < 0) {
    if (fd >= 0) close(fd);
    const msg = new TextDecoder().decode(status.stderr).trim();
    const hint = /open \/dev\/fuse: Permission denied/.test(msg)
      ? " (/dev/fuse must be readable and writable by you: usually mode 0666; or mount as root)"
      : "";
    throw new Error(
      `fusermount3 failed to mount ${mountpoint}: ${msg || `exit ${status.code}`}${hint}`,
    );
  }
  setCloexec(fd);
  return fd;
}
