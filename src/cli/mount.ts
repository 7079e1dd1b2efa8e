/**
 * `nixcas mount MOUNTPOINT`: the store as a read-only filesystem, in the foreground.
 *
 * @module
 */
import type { CommandSpec } from "./args.ts";
import { useReadServerMode } from "../sqlite/db.ts";
import type { readMountInfo } from "../fuse/mod.ts";
import {
  action,
  CliError,
  loggerFor,
  openServices,
  SERVICE_ADDR_OPTIONS,
  type ServiceAddrOptions,
} from "./common.ts";

/** Refuses mountpoints that cannot work, with advice for a stale mount. */
function checkMountpoint(mountpoint: string, mounts: typeof readMountInfo): string {
  let real: string;
  try {
    real = Deno.realPathSync(mountpoint);
  } catch (e) {
    const msg = (e as Error).message;
    if (/not connected/i.test(msg)) {
      throw new CliError(
        `${mountpoint} is a stale FUSE mount (its server is gone); unmount it first with ` +
          `\`fusermount3 -u ${mountpoint}\` or, as root, \`umount -l ${mountpoint}\``,
      );
    }
    if (e instanceof Deno.errors.NotFound) {
      throw new CliError(`mountpoint ${mountpoint} does not exist`);
    }
    throw new CliError(`mountpoint ${mountpoint}: ${msg}`);
  }
  if (!Deno.statSync(real).isDirectory) throw new CliError(`mountpoint ${real} is not a directory`);
  if (mounts().some((m) => m.mountpoint === real)) {
    throw new CliError(`${real} is busy: something is already mounted there`);
  }
  try {
    Deno.statSync("/dev/fuse");
  } catch {
    throw new CliError("/dev/fuse is missing: load the fuse kernel module (modprobe fuse)");
  }
  return real;
}

/** Options of `mount`. */
export interface MountOptions extends ServiceAddrOptions {
  /** `--list-root`: allow listing the root directory. */
  listRoot?: boolean;
  /** `--allow-other`: let other users access the mount. */
  allowOther?: boolean;
}

/** `mount`. */
export const mountCommand: CommandSpec<MountOptions> = {
  name: "mount",
  description:
    "Mount the store read-only at MOUNTPOINT (like /nix/store) and serve it in the foreground " +
    "until SIGINT or SIGTERM, or until it is unmounted. Store paths are looked up by name; " +
    "listing the root is refused unless --list-root.",
  arguments: [["<mountpoint>", "an existing, empty directory"]],
  options: [
    { flags: "--list-root", description: "allow listing the root directory (every store path)" },
    {
      flags: "--allow-other",
      description: "let other users access the mount (needs user_allow_other for non-root)",
    },
    ...SERVICE_ADDR_OPTIONS,
  ],
  run: action(async (inv) => {
    const mountpoint = inv.args.mountpoint as string;
    const opts = inv.options;
    const log = loggerFor(inv);
    // Loaded here, not at startup: other commands never need the FUSE layer.
    const { mountStore, readMountInfo } = await import("../fuse/mod.ts");
    const real = checkMountpoint(mountpoint, readMountInfo);
    // A long-running read server: the SQLite file is memory-mapped.
    useReadServerMode();
    const services = await openServices(opts, { readOnly: true });
    try {
      const handle = await mountStore({
        mountpoint: real,
        ...services,
        listRoot: opts.listRoot ?? false,
        allowOther: opts.allowOther ?? false,
        log: (level, message) => log.log(level, message),
      });
      log.info(`mounted the store at ${handle.mountpoint}`);
      // The first signal unmounts; a busy mount is detached and served until its files are
      // closed. A second signal exits at once: closing /dev/fuse aborts the connection, and
      // files still open fail with ENOTCONN.
      let signals = 0;
      const stop = () => {
        if (++signals > 1) {
          log.warn("second signal: exiting; open files on the mount fail from now on");
          Deno.exit(1);
        }
        log.info("unmounting (send the signal again to exit at once)");
        handle.unmount().catch((e) => log.error(`unmount failed: ${(e as Error).message}`));
      };
      Deno.addSignalListener("SIGINT", stop);
      Deno.addSignalListener("SIGTERM", stop);
      try {
        await handle.unmounted;
      } finally {
        Deno.removeSignalListener("SIGINT", stop);
        Deno.removeSignalListener("SIGTERM", stop);
      }
      log.info("unmounted");
    } finally {
      await services.close();
    }
  }),
};
