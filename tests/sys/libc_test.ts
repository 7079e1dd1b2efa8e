import assert from "node:assert/strict";
import * as libc from "../../src/sys/libc.ts";

const enc = new TextEncoder();
const b = (s: string) => enc.encode(s);

/** A temp dir, its path bytes and an open descriptor; removed (recursively) afterwards. */
async function withTempDir(fn: (dir: Uint8Array, fd: number) => Promise<void> | void) {
  const dir = await Deno.makeTempDir({ prefix: "nixcas-libc-" });
  const fd = libc.openDirAt(libc.AT_FDCWD, b(dir));
  try {
    await fn(b(dir), fd);
  } finally {
    libc.close(fd);
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("parseStat: x86_64 and aarch64 layouts", () => {
  // x86_64: dev@0 ino@8 nlink(u64)@16 mode@24 uid@28 gid@32 rdev@40 size@48 mtime@88
  const x = new Uint8Array(144);
  const xv = new DataView(x.buffer);
  xv.setBigUint64(0, 7n, true);
  xv.setBigUint64(8, 42n, true);
  xv.setBigUint64(16, 3n, true);
  xv.setUint32(24, 0o100744, true);
  xv.setUint32(28, 1000, true);
  xv.setUint32(32, 100, true);
  xv.setBigUint64(40, 9n, true);
  xv.setBigInt64(48, 123456789n, true);
  xv.setBigInt64(88, 1700000000n, true);
  xv.setBigInt64(96, 5n, true);
  assert.deepEqual(libc.parseStat(x, "x86_64"), {
    dev: 7n,
    ino: 42n,
    nlink: 3,
    mode: 0o100744,
    uid: 1000,
    gid: 100,
    rdev: 9n,
    size: 123456789,
    mtimeSec: 1700000000,
    mtimeNsec: 5,
  });
  // aarch64 (asm-generic): dev@0 ino@8 mode@16 nlink(u32)@20 uid@24 gid@28 rdev@32 size@48
  const a = new Uint8Array(128);
  const av = new DataView(a.buffer);
  av.setBigUint64(0, 7n, true);
  av.setBigUint64(8, 42n, true);
  av.setUint32(16, 0o120777, true);
  av.setUint32(20, 3, true);
  av.setUint32(24, 1000, true);
  av.setUint32(28, 100, true);
  av.setBigUint64(32, 9n, true);
  av.setBigInt64(48, 11n, true);
  av.setBigInt64(88, 1700000000n, true);
  av.setBigInt64(96, 5n, true);
  assert.deepEqual(libc.parseStat(a, "aarch64"), {
    dev: 7n,
    ino: 42n,
    nlink: 3,
    mode: 0o120777,
    uid: 1000,
    gid: 100,
    rdev: 9n,
    size: 11,
    mtimeSec: 1700000000,
    mtimeNsec: 5,
  });
  assert.throws(() => libc.parseStat(a, "riscv64"), /riscv64/);
});

Deno.test("lstatAt agrees with Deno.lstat for a file, a directory and a symlink", async () => {
  await withTempDir((dir, fd) => {
    libc.createFileAt(fd, b("f"), b("hello"), 0o645);
    libc.mkdirAt(fd, b("d"));
    libc.symlinkAt(b("/nowhere/at/all"), fd, b("l"));
    const d = new TextDecoder().decode(dir);
    for (const name of ["f", "d", "l"]) {
      const ours = libc.lstatAt(fd, b(name));
      const theirs = Deno.lstatSync(`${d}/${name}`);
      assert.equal(ours.ino, BigInt(theirs.ino!));
      assert.equal(ours.mode, theirs.mode);
      assert.equal(ours.size, theirs.size);
      assert.equal(ours.nlink, theirs.nlink);
      assert.equal(ours.mtimeSec, Math.floor(theirs.mtime!.getTime() / 1000));
    }
    assert.equal(libc.fileKind(libc.lstatAt(fd, b("f")).mode), "file");
    assert.equal(libc.lstatAt(fd, b("f")).mode & 0o7777, 0o645); // exact, despite the umask
    assert.equal(libc.fileKind(libc.lstatAt(fd, b("d")).mode), "directory");
    assert.equal(libc.fileKind(libc.lstatAt(fd, b("l")).mode), "symlink");
    assert.equal(libc.lstatAt(fd, b("l")).size, "/nowhere/at/all".length);
    // fstat of an open descriptor sees the same inode
    const f = libc.openFileAt(fd, b("f"));
    assert.equal(libc.fstat(f).ino, libc.lstatAt(fd, b("f")).ino);
    libc.close(f);
  });
});

Deno.test("readDir returns raw non-UTF-8 names that Deno.readDir mangles", async () => {
  await withTempDir(async (dir, fd) => {
    const names = [
      new Uint8Array([0x66, 0xff, 0xfe]),
      new Uint8Array([0x80]),
      b("é"),
      b("plain"),
    ];
    for (const n of names) libc.createFileAt(fd, n);
    libc.mkfifoAt(fd, b("pipe"));
    const got = libc.readDir(fd).map((e) => e.name);
    const key = (n: Uint8Array) => Array.from(n).join(",");
    assert.deepEqual(
      got.map(key).sort(),
      [...names, b("pipe")].map(key).sort(),
    );
    // Reading again restarts from the beginning (the stream works on a duplicate descriptor).
    assert.equal(libc.readDir(fd).length, 5);
    // d_type is filled on common filesystems (or DT_UNKNOWN).
    const pipe = libc.readDir(fd).find((e) => key(e.name) === key(b("pipe")))!;
    assert.ok(pipe.type === libc.DT_FIFO || pipe.type === libc.DT_UNKNOWN);
    assert.equal(libc.fileKind(libc.lstatAt(fd, b("pipe")).mode), "fifo");
    // Why this module exists: Deno's own API loses the bytes.
    const lossy: string[] = [];
    for await (const e of Deno.readDir(new TextDecoder().decode(dir))) lossy.push(e.name);
    assert.ok(lossy.some((n) => n.includes("\uFFFD")));
  });
});

Deno.test("readDir of many entries and of an empty directory", async () => {
  await withTempDir((_dir, fd) => {
    assert.deepEqual(libc.readDir(fd), []);
    for (let i = 0; i < 600; i++) libc.createFileAt(fd, b(`file-${i}`.padEnd(40, "x")));
    assert.equal(libc.readDir(fd).length, 600);
  });
});

Deno.test("readlinkAt returns raw target bytes, also for long targets", async () => {
  await withTempDir((_dir, fd) => {
    const raw = new Uint8Array([0x2f, 0x6e, 0xff, 0x41, 0xc3]);
    libc.symlinkAt(raw, fd, b("raw"));
    assert.deepEqual(libc.readlinkAt(fd, b("raw")), raw);
    const long = b("x/".repeat(700) + "end");
    libc.symlinkAt(long, fd, b("long"));
    assert.deepEqual(libc.readlinkAt(fd, b("long")), long); // no size hint: grows the buffer
    assert.deepEqual(libc.readlinkAt(fd, b("long"), long.length), long);
    assert.throws(() => libc.readlinkAt(fd, b("missing")), /^LibcError: ENOENT: missing/);
  });
});

Deno.test("pread, read and preadAsync (concurrently) read the right bytes", async () => {
  await withTempDir(async (_dir, fd) => {
    const data = new Uint8Array(3 << 20);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 11)) & 0xff;
    libc.createFileAt(fd, b("big"), data);
    const f = libc.openFileAt(fd, b("big"));
    try {
      const small = new Uint8Array(10);
      assert.equal(libc.pread(f, small, 1000), 10);
      assert.deepEqual(small, data.subarray(1000, 1010));
      assert.equal(libc.read(f, small), 10);
      assert.deepEqual(small, data.subarray(0, 10));
      const bufs = [0, 1, 2].map(() => new Uint8Array(1 << 20));
      const ns = await Promise.all(bufs.map((buf, i) => libc.preadAsync(f, buf, i << 20)));
      assert.deepEqual(ns, [1 << 20, 1 << 20, 1 << 20]);
      bufs.forEach((buf, i) => assert.deepEqual(buf, data.subarray(i << 20, (i + 1) << 20)));
      assert.equal(await libc.preadAsync(f, bufs[0], data.length), 0); // end of file
      const tail = new Uint8Array(100);
      assert.equal(await libc.readAsync(f, tail), 100);
      assert.deepEqual(tail, data.subarray(10, 110));
    } finally {
      libc.close(f);
    }
    // Errors from the thread pool still carry the real errno.
    const d = libc.openDirAt(fd, b("."));
    await assert.rejects(
      libc.preadAsync(d, new Uint8Array(4), 0, b("adir")),
      /^LibcError: EISDIR: adir/,
    );
    libc.close(d);
  });
});

Deno.test("errors name the errno and the path, with non-UTF-8 bytes escaped", async () => {
  await withTempDir((dir, fd) => {
    const missing = libc.joinPath(dir, new Uint8Array([0x6e, 0xff, 0x6f]));
    assert.throws(() => libc.lstatAt(libc.AT_FDCWD, missing), (e: unknown) => {
      assert.ok(e instanceof libc.LibcError);
      assert.equal(e.code, "ENOENT");
      assert.equal(e.errno, 2);
      assert.equal(e.syscall, "fstatat");
      assert.deepEqual(e.path, missing);
      assert.equal(
        e.message,
        `ENOENT: ${new TextDecoder().decode(dir)}/n\\xffo (fstatat: No such file or directory)`,
      );
      return true;
    });
    libc.createFileAt(fd, b("file"));
    libc.symlinkAt(b("file"), fd, b("link"));
    assert.throws(() => libc.openDirAt(fd, b("file")), /^LibcError: ENOTDIR: file/);
    assert.throws(() => libc.openFileAt(fd, b("link")), /^LibcError: ELOOP: link/); // O_NOFOLLOW
    assert.throws(() => libc.openDirAt(fd, b("link")), /^LibcError: (ELOOP|ENOTDIR): link/);
    assert.throws(() => libc.createFileAt(fd, b("file")), /^LibcError: EEXIST: file/);
    assert.throws(() => libc.lstat(new Uint8Array([0x61, 0, 0x62])), /EINVAL: a\\x00b/);
  });
});

Deno.test("opening a FIFO does not block", async () => {
  await withTempDir((_dir, fd) => {
    libc.mkfifoAt(fd, b("fifo"), 0o600);
    const f = libc.openFileAt(fd, b("fifo")); // O_NONBLOCK: returns at once
    assert.equal(libc.fileKind(libc.fstat(f).mode), "fifo");
    libc.close(f);
  });
});

Deno.test("path helpers", () => {
  assert.deepEqual(libc.joinPath(b("/a"), b("b")), b("/a/b"));
  assert.deepEqual(libc.joinPath(b("/"), b("b")), b("/b"));
  assert.deepEqual(libc.basename(b("/x/y//")), b("y"));
  assert.deepEqual(libc.basename(b("y")), b("y"));
  assert.deepEqual(libc.stripTrailingSlashes(b("/")), b("/"));
  assert.equal(libc.displayPath(b("é/ok")), "é/ok");
  assert.equal(
    libc.displayPath(new Uint8Array([0x61, 0xff, 0x0a, 0x5c, 0xc3])),
    "a\\xff\\x0a\\x5c\\xc3",
  );
  assert.equal(libc.displayPath(b("😀")), "😀");
  assert.equal(libc.fileKind(0o020644), "char device");
  assert.equal(libc.fileKind(0o060644), "block device");
  assert.equal(libc.fileKind(0o140755), "socket");
});

Deno.test("one errno table: every name maps to its number and back", () => {
  for (const [name, value] of Object.entries(libc.Errno)) {
    assert.equal(libc.errnoName(value), name);
    assert.equal(new libc.LibcError(value, "x", b("p")).code, name);
  }
  // The values the FUSE layer answers with, and some the importer reports.
  assert.equal(libc.Errno.ENOSYS, 38);
  assert.equal(libc.Errno.ENOTCONN, 107);
  assert.equal(libc.Errno.ENAMETOOLONG, 36);
  assert.equal(libc.errnoName(4095), "E4095");
});

Deno.test("an error on no path reads 'CODE: call: why'; a hint follows the reason", () => {
  assert.throws(() => libc.close(-1), (e: unknown) => {
    assert.ok(e instanceof libc.LibcError);
    assert.equal(e.message, "EBADF: close: Bad file descriptor");
    assert.deepEqual(e.path, new Uint8Array());
    return true;
  });
  const e = new libc.LibcError(libc.Errno.ENOENT, "open", "/dev/fuse", "load the fuse module");
  assert.equal(
    e.message,
    "ENOENT: /dev/fuse (open: No such file or directory); load the fuse module",
  );
  assert.deepEqual(e.path, b("/dev/fuse"));
});

Deno.test("cstr: strings and bytes NUL-terminated, an embedded NUL refused", () => {
  assert.deepEqual(libc.cstr("/a"), new Uint8Array([0x2f, 0x61, 0]));
  assert.deepEqual(libc.cstr(new Uint8Array([0xff])), new Uint8Array([0xff, 0]));
  assert.throws(() => libc.cstr("a\0b"), /^LibcError: EINVAL: a\\x00b \(path: /);
});

Deno.test("writev writes its pieces in order; tryReadAsync reads on the thread pool", async () => {
  await withTempDir(async (dir, fd) => {
    libc.createFileAt(fd, b("f"));
    const path = libc.joinPath(dir, b("f"));
    const w = libc.openAt(libc.AT_FDCWD, path, libc.O_WRONLY);
    const head = b("head,"), body = b("body");
    const iov = new BigUint64Array([
      libc.addressOf(head),
      BigInt(head.length),
      libc.addressOf(body),
      BigInt(body.length),
    ]);
    assert.equal(libc.writev(w, iov, 2), 9);
    libc.close(w);
    assert.throws(() => libc.writev(w, iov, 2), /^LibcError: EBADF: writev: /);
    const r = libc.openFileAt(libc.AT_FDCWD, path);
    const buf = new Uint8Array(16);
    assert.equal(await libc.tryReadAsync(r, buf), 9);
    assert.equal(new TextDecoder().decode(buf.subarray(0, 9)), "head,body");
    libc.close(r);
    assert.equal(await libc.tryReadAsync(r, buf), -1); // closed: errno is lost, no retry
  });
});

Deno.test("getuid and getgid are this process's ids", () => {
  const id = (flag: string) =>
    Number(new TextDecoder().decode(new Deno.Command("id", { args: [flag] }).outputSync().stdout));
  assert.equal(libc.getuid(), id("-u"));
  assert.equal(libc.getgid(), id("-g"));
});

Deno.test("without FFI permission: the module loads, the first call says to allow FFI", async () => {
  const url = new URL("../../src/sys/libc.ts", import.meta.url);
  const dir = await Deno.makeTempDir({ prefix: "nixcas-libc-" });
  try {
    const script = `${dir}/child.ts`;
    await Deno.writeTextFile(
      script,
      `import * as libc from ${JSON.stringify(url.href)};
      try {
        libc.lstat("/");
      } catch (e) {
        console.log(e instanceof Deno.errors.NotCapable, (e as Error).message);
      }`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", `--allow-read`, script],
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.equal(
      new TextDecoder().decode(out.stdout).trim(),
      "true nixcas calls libc through FFI: run deno with --allow-ffi (or -A)",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
