import assert from "node:assert/strict";
import * as libc from "../../src/sys/libc.ts";
import { mount, MS_RDONLY, recvFd, setCloexec, socketPair, umount } from "../../src/sys/mount.ts";

Deno.test("recvFd is -1 when the peer closes without sending a descriptor", async () => {
  const [a, b] = socketPair();
  setCloexec(a);
  libc.close(b);
  assert.equal(await recvFd(a), -1);
  libc.close(a);
});

Deno.test("mount and umount failures name the path, with the errno to act on", () => {
  const dir = Deno.makeTempDirSync({ prefix: "nixcas-mount-" });
  try {
    assert.throws(() => umount(dir, 0), (e: unknown) => {
      assert.ok(e instanceof libc.LibcError);
      // EINVAL: not a mount point (root); EPERM: not root.
      assert.ok(e.errno === libc.Errno.EINVAL || e.errno === libc.Errno.EPERM, e.message);
      assert.equal(e.syscall, "umount2");
      assert.ok(e.message.startsWith(`${e.code}: ${dir} (umount2: `), e.message);
      return true;
    });
    assert.throws(
      () => mount("none", dir, "nixcas-no-such-fs", MS_RDONLY, ""),
      (e: unknown) => {
        assert.ok(e instanceof libc.LibcError);
        // ENODEV: no such filesystem type (root); EPERM: not root.
        assert.ok(e.errno === libc.Errno.ENODEV || e.errno === libc.Errno.EPERM, e.message);
        assert.ok(e.message.startsWith(`${e.code}: ${dir} (mount: `), e.message);
        return true;
      },
    );
    assert.throws(() => umount(`${dir}\0x`, 0), /EINVAL: .*\\x00x \(path: /);
  } finally {
    Deno.removeSync(dir);
  }
});
