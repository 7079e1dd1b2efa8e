// Errors thrown by a filesystem's operations are logged with the operation's name.
import assert from "node:assert/strict";
import { FuseErrno, type FuseOps, FuseSession } from "../../src/fuse/session.ts";
import { S_IFDIR, S_IFREG } from "../../src/fuse/protocol.ts";
import { HAVE_FUSE, unmountOrDetach } from "./helpers.ts";

const root = { ino: 1, size: 0, mode: S_IFDIR | 0o555, nlink: 1 };
const file = { ino: 2, size: 5, mode: S_IFREG | 0o444, nlink: 1 };
const ops: FuseOps = {
  lookup: (_parent, name) => {
    if (new TextDecoder().decode(name) === "f") return file;
    throw new FuseErrno(2);
  },
  getattr: (ino) => ino === 1 ? root : file,
  readlink: () => {
    throw new FuseErrno(22);
  },
  open: () => ({ fh: 7, keepCache: false }),
  // A bug in the filesystem (not a FuseErrno): answered with EIO and logged with its stack.
  read: () => {
    throw new TypeError("boom in read");
  },
  release: () => {},
  opendir: () => ({ fh: 0, keepCache: false }),
  readdir: () => [],
  releasedir: () => {},
  inodeCount: () => 2,
};

Deno.test({
  name: "a failing FUSE operation is logged by name (READ), not by opcode number",
  ignore: !HAVE_FUSE,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "nixcas-fuselog-" });
    const logs: string[] = [];
    const session = await FuseSession.mount(ops, {
      mountpoint: dir,
      log: (level, msg) => logs.push(`${level}: ${msg}`),
    });
    try {
      await assert.rejects(Deno.readFile(`${dir}/f`), /Input\/output error|EIO/);
      const line = logs.find((l) => l.includes("boom in read"));
      assert.match(
        line ?? logs.join("\n"),
        /^error: READ of inode 2 failed: TypeError: boom in read/,
      );
    } finally {
      await unmountOrDetach({
        mountpoint: dir,
        unmounted: session.closed,
        unmount: (o) => session.unmount(o),
      }, dir);
      await Deno.remove(dir);
    }
  },
});
