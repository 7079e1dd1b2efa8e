/**
 * `nixcas mount MOUNTPOINT`: the store as a read-only filesystem, in the foreground.
 *
 * @module
 */
import type { CommandSpec } from "./args.ts";
import {
  action,
  loggerFor,
  openServices,
  SERVICE_ADDR_OPTIONS,
  type ServiceAddrOptions,
} from "./common.ts";
import { enableNativeBlake3 } from "../hash/blake3_native.ts";

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
    "listing the root is refused unless --list-root. As root it mounts with mount(2); other " +
    "users mount through fusermount3 (Debian's fuse3), which needs /dev/fuse readable and " +
    "writable by them.",
  arguments: [[
    "<mountpoint>",
    "an existing, empty directory with nothing mounted on it (anything else is refused)",
  ]],
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
    const [{ checkMountpoint }, { mountStore }] = await Promise.all([
      import("../fuse/mount.ts"),
      import("../fuse/mod.ts"),
    ]);
    // Checked before the services are opened: a bad mountpoint is the likelier mistake.
    const real = checkMountpoint(mountpoint);
    // A long-running read server: the SQLite file is memory-mapped. A Nix cache read through
    // (nix+ path info address) stores what it fetches, so the store is opened for writing.
    const readThrough = /^nix\+/.test(opts.pathInfoServiceAddr ?? "");
    const services = await openServices(opts, { readOnly: !readThrough, readServer: true });
    try {
      // A server checks every chunk it hands out: native BLAKE3 hashes ≈2.5x faster. Loaded
      // (≈20–70 ms) before the first request, so that the first reads get it too.
      await enableNativeBlake3();
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
