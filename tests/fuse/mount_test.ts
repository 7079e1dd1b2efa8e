// The seed's FUSE test list (store/src/fs/tests.rs), each on a real mount.
import assert from "node:assert/strict";
import {
  BLOB_A,
  BLOB_A_NAME,
  BLOB_B,
  BLOB_B_NAME,
  DIRECTORY_COMPLICATED_NAME,
  DIRECTORY_WITH_KEEP,
  DIRECTORY_WITH_KEEP_NAME,
  genSvcs,
  HAVE_FUSE,
  HELLOWORLD_BLOB_NAME,
  populate,
  run,
  type Services,
  SYMLINK_NAME,
  SYMLINK_NAME2,
  withMount,
} from "./helpers.ts";
import { directorySize } from "../../src/castore/directory.ts";

type Populate = (s: Services) => Promise<void>;

/** A mount test: populates fresh services, mounts them, runs the body, unmounts. */
function mountTest(
  name: string,
  pops: Populate[],
  body: (mnt: string, logs: string[]) => Promise<void>,
  listRoot = false,
) {
  Deno.test({
    name,
    ignore: !HAVE_FUSE,
    fn: async () => {
      const s = genSvcs();
      for (const p of pops) await p(s);
      await withMount(s, body, { listRoot });
    },
  });
}

const errCode = (e: unknown) => (e as { code?: string }).code;

async function readDirNames(p: string): Promise<Deno.DirEntry[]> {
  const out: Deno.DirEntry[] = [];
  for await (const e of Deno.readDir(p)) out.push(e);
  return out;
}

mountTest("mount", [], async (mnt) => {
  const info = Deno.readTextFileSync("/proc/self/mountinfo");
  assert.ok(info.includes(` ${mnt} `), "mount is listed");
  assert.ok(info.includes("fuse.nixcas"));
  const root = await Deno.stat(mnt);
  assert.ok(root.isDirectory);
  assert.equal(root.mode! & 0o777, 0o555);
});

mountTest("root listing is refused", [populate.blobA], async (mnt) => {
  await assert.rejects(readDirNames(mnt), Deno.errors.PermissionDenied);
});

mountTest("root listing when allowed", [populate.blobA], async (mnt) => {
  const names = await readDirNames(mnt);
  assert.deepEqual(names.map((e) => e.name), [BLOB_A_NAME]);
  const st = await Deno.stat(`${mnt}/${names[0].name}`);
  assert.ok(st.isFile);
  assert.equal(st.mode! & 0o222, 0, "read-only");
  assert.equal(st.size, BLOB_A.length);
}, true);

mountTest("stat a file at the root", [populate.blobA], async (mnt) => {
  const st = await Deno.stat(`${mnt}/${BLOB_A_NAME}`);
  assert.ok(st.isFile);
  assert.equal(st.mode! & 0o222, 0);
  assert.equal(st.size, BLOB_A.length);
});

mountTest("read a file at the root", [populate.blobA], async (mnt) => {
  assert.deepEqual(await Deno.readFile(`${mnt}/${BLOB_A_NAME}`), BLOB_A);
});

mountTest("read a large file at the root", [populate.blobB], async (mnt) => {
  const p = `${mnt}/${BLOB_B_NAME}`;
  const st = await Deno.stat(p);
  assert.ok(st.isFile);
  assert.equal(st.mode! & 0o222, 0);
  assert.equal(st.size, BLOB_B.length);
  const data = await Deno.readFile(p);
  assert.equal(data.length, BLOB_B.length);
  assert.ok(data.every((x, i) => x === BLOB_B[i]), "contents match");
});

mountTest("readlink a symlink", [populate.symlink], async (mnt) => {
  const p = `${mnt}/${SYMLINK_NAME}`;
  assert.equal(await Deno.readLink(p), BLOB_A_NAME);
  // Following it fails: the target is not populated.
  await assert.rejects(Deno.stat(p), Deno.errors.NotFound);
  assert.ok((await Deno.lstat(p)).isSymlink);
  await assert.rejects(Deno.readFile(p), Deno.errors.NotFound);
});

mountTest("read and stat through a symlink", [populate.blobA, populate.symlink], async (mnt) => {
  const pLink = `${mnt}/${SYMLINK_NAME}`, pBlob = `${mnt}/${BLOB_A_NAME}`;
  const stLink = await Deno.stat(pLink), stBlob = await Deno.stat(pBlob);
  assert.equal(stLink.isFile, stBlob.isFile);
  assert.equal(stLink.size, stBlob.size);
  assert.equal(stLink.ino, stBlob.ino);
  assert.deepEqual(await Deno.readFile(pLink), await Deno.readFile(pBlob));
});

mountTest("stat a directory", [populate.directoryWithKeep], async (mnt) => {
  const st = await Deno.stat(`${mnt}/${DIRECTORY_WITH_KEEP_NAME}`);
  assert.ok(st.isDirectory);
  assert.equal(st.mode! & 0o222, 0);
});

mountTest("read a blob inside a directory", [populate.directoryWithKeep], async (mnt) => {
  const p = `${mnt}/${DIRECTORY_WITH_KEEP_NAME}/.keep`;
  const st = await Deno.stat(p);
  assert.ok(st.isFile);
  assert.equal(st.mode! & 0o222, 0);
  assert.deepEqual(await Deno.readFile(p), new Uint8Array(0));
});

mountTest("read a blob deep inside a directory", [populate.directoryComplicated], async (mnt) => {
  const p = `${mnt}/${DIRECTORY_COMPLICATED_NAME}/keep/.keep`;
  const st = await Deno.stat(p);
  assert.ok(st.isFile);
  assert.equal(st.mode! & 0o222, 0);
  assert.deepEqual(await Deno.readFile(p), new Uint8Array(0));
});

mountTest("readdir", [populate.directoryComplicated], async (mnt) => {
  const p = `${mnt}/${DIRECTORY_COMPLICATED_NAME}`;
  const es = await readDirNames(p);
  // Deno skips . and ..; entries come in name order.
  assert.deepEqual(es.map((e) => e.name), [".keep", "aa", "keep"]);
  assert.ok(es[0].isFile);
  assert.equal((await Deno.stat(`${p}/.keep`)).size, 0);
  assert.ok(es[1].isSymlink);
  assert.ok(es[2].isDirectory);
});

mountTest(
  "readdir deep without touching the parent",
  [populate.directoryComplicated],
  async (mnt) => {
    const p = `${mnt}/${DIRECTORY_COMPLICATED_NAME}/keep`;
    const es = await readDirNames(p);
    assert.deepEqual(es.map((e) => e.name), [".keep"]);
    assert.ok(es[0].isFile);
    assert.equal((await Deno.stat(`${p}/.keep`)).size, 0);
  },
);

mountTest(
  "attributes like /nix/store",
  [populate.blobA, populate.directoryWithKeep, populate.symlink, populate.helloworld],
  async (mnt) => {
    const file = await Deno.lstat(`${mnt}/${BLOB_A_NAME}`);
    const exe = await Deno.lstat(`${mnt}/${HELLOWORLD_BLOB_NAME}`);
    const dir = await Deno.lstat(`${mnt}/${DIRECTORY_WITH_KEEP_NAME}`);
    const link = await Deno.lstat(`${mnt}/${SYMLINK_NAME}`);
    assert.equal(file.mode! & 0o777, 0o444);
    assert.equal(exe.mode! & 0o777, 0o555);
    assert.equal(dir.mode! & 0o777, 0o555);
    assert.equal(link.mode! & 0o777, 0o444);
    assert.equal(file.size, BLOB_A.length);
    assert.equal(dir.size, directorySize(DIRECTORY_WITH_KEEP));
    // uid, gid 0 and all times the epoch; stat(1) because Deno leaves ctime out.
    const names = [BLOB_A_NAME, HELLOWORLD_BLOB_NAME, DIRECTORY_WITH_KEEP_NAME, SYMLINK_NAME];
    const out = await run("stat", ["-c", "%u %g %X %Y %Z", ...names.map((n) => `${mnt}/${n}`)]);
    assert.equal(new TextDecoder().decode(out), "0 0 0 0 0\n".repeat(4));
  },
);

mountTest(
  "same inode for the same directory",
  [populate.directoryWithKeep, populate.directoryComplicated],
  async (mnt) => {
    const a = await Deno.stat(`${mnt}/${DIRECTORY_WITH_KEEP_NAME}`);
    const b = await Deno.stat(`${mnt}/${DIRECTORY_COMPLICATED_NAME}/keep`);
    assert.equal(a.ino, b.ino);
  },
);

mountTest("same inode for the same file", [populate.directoryComplicated], async (mnt) => {
  const a = await Deno.stat(`${mnt}/${DIRECTORY_COMPLICATED_NAME}/.keep`);
  const b = await Deno.stat(`${mnt}/${DIRECTORY_COMPLICATED_NAME}/keep/.keep`);
  assert.equal(a.ino, b.ino);
});

mountTest(
  "same inode for the same symlink target",
  [populate.directoryComplicated, populate.symlink2],
  async (mnt) => {
    const a = await Deno.lstat(`${mnt}/${DIRECTORY_COMPLICATED_NAME}/aa`);
    const b = await Deno.lstat(`${mnt}/${SYMLINK_NAME2}`);
    assert.equal(a.ino, b.ino);
  },
);

mountTest("wrong names in the root", [populate.blobA], async (mnt) => {
  const miss = (n: string) => assert.rejects(Deno.stat(`${mnt}/${n}`), Deno.errors.NotFound);
  await miss("00000000000000000000000000000000-tes"); // wrong name
  await miss("0000000000000000000000000000000-test"); // invalid hash
  await miss("not-a-store-path");
  await Deno.stat(`${mnt}/${BLOB_A_NAME}`);
  await miss("00000000000000000000000000000000-tes"); // right hash, wrong name
});

mountTest("writes are refused", [populate.blobA], async (mnt) => {
  const roCode = (e: unknown) => errCode(e) === "EROFS" || /read-only/i.test(String(e));
  await assert.rejects(Deno.writeFile(`${mnt}/${BLOB_A_NAME}`, new Uint8Array(1)), roCode);
  await assert.rejects(Deno.writeFile(`${mnt}/new-file`, new Uint8Array(1)), roCode);
  await assert.rejects(Deno.mkdir(`${mnt}/new-dir`), roCode);
});

mountTest("missing directory is EIO", [populate.pathInfoWithoutDirectory], async (mnt, logs) => {
  const p = `${mnt}/${DIRECTORY_WITH_KEEP_NAME}`;
  // stat works: it does not need the Directory.
  assert.ok((await Deno.stat(p)).isDirectory);
  const isEio = (e: unknown) => errCode(e) === "EIO" || /Input\/output error/.test(String(e));
  await assert.rejects(readDirNames(p), isEio);
  await assert.rejects(Deno.stat(`${p}/.keep`), isEio);
  assert.ok(logs.some((l) => l.startsWith("error:") && l.includes("not found")), "logged");
  // Each log line names the operation that failed (the kernel's name for it).
  assert.ok(logs.some((l) => /^error: LOOKUP .*not found/.test(l)), logs.join("\n"));
  assert.ok(
    logs.some((l) => /^error: (OPENDIR|READDIR(PLUS)?) .*not found/.test(l)),
    logs.join("\n"),
  );
  // The mount keeps serving.
  assert.ok((await Deno.stat(p)).isDirectory);
});

mountTest("missing blob is EIO", [populate.blobAWithoutBlob], async (mnt, logs) => {
  const p = `${mnt}/${BLOB_A_NAME}`;
  assert.equal((await Deno.stat(p)).size, BLOB_A.length);
  const isEio = (e: unknown) => errCode(e) === "EIO" || /Input\/output error/.test(String(e));
  await assert.rejects(Deno.readFile(p), isEio);
  assert.ok(logs.some((l) => l.startsWith("error:") && l.includes("not found")), "logged");
  assert.ok(logs.some((l) => /^error: OPEN .*not found/.test(l)), logs.join("\n"));
  assert.ok((await Deno.stat(p)).isFile);
});
