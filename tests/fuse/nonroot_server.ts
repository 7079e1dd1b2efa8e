// A tiny FUSE server for the non-root test: one file `hello` in the root, mounted through
// fusermount3 (the default when not root). Needs no npm packages, so it runs as any user.
import { FuseErrno, type FuseOps, FuseSession } from "../../src/fuse/session.ts";
import { S_IFDIR, S_IFREG } from "../../src/fuse/protocol.ts";

const DATA = new TextEncoder().encode("hello from an unprivileged mount\n");
const file = { ino: 2, size: DATA.length, mode: S_IFREG | 0o444, nlink: 1 };
const root = { ino: 1, size: 0, mode: S_IFDIR | 0o555, nlink: 1 };
const ops: FuseOps = {
  lookup: (parent, name) => {
    if (parent === 1 && new TextDecoder().decode(name) === "hello") return file;
    throw new FuseErrno(2);
  },
  getattr: (ino) => ino === 1 ? root : file,
  readlink: () => {
    throw new FuseErrno(22);
  },
  open: () => ({ fh: 1, keepCache: true }),
  read: (_ino, _fh, offset, size) => DATA.subarray(offset, offset + size),
  release: () => {},
  opendir: () => ({ fh: 0, keepCache: true }),
  readdir: () => [],
  releasedir: () => {},
  inodeCount: () => 2,
};
const session = await FuseSession.mount(ops, { mountpoint: Deno.args[0] });
console.log(`mounted ${session.mountpoint}`);
const stop = () => void session.unmount();
Deno.addSignalListener("SIGTERM", stop);
await session.closed;
console.log("unmounted");
Deno.exit(0);
