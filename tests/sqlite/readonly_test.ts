/**
 * Reading never creates a store: the reading commands (and `readOnly` openers) fail naming the
 * missing file and leave no file or directory behind; only writing commands create one. A store
 * on a read-only filesystem can be read (listed, looked up, its files and NARs served), and a
 * writing command there fails naming the file.
 */
import assert from "node:assert/strict";
import { SqliteBlobService } from "../../src/backends/sqlite/blob.ts";
import { readBlob } from "../../src/castore/blob_util.ts";
import { StorageError } from "../../src/base/errors.ts";
import { openStore } from "../../src/backends/open.ts";
import { have, nixcas, run, serviceFlags } from "../prereq.ts";

const td = new TextDecoder();

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

Deno.test("opening a missing store read-only fails naming it and creates nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/not/yet/store.db`;
    assert.throws(
      () => new SqliteBlobService(path, { readOnly: true }),
      (e) =>
        e instanceof StorageError &&
        e.message === `no store at ${path} (nothing has been imported there yet)`,
    );
    await assert.rejects(
      openStore(`sqlite://${path}`, {}, { readOnly: true }),
      (e) => e instanceof StorageError && e.message.includes(path),
    );
    assert.equal(await exists(`${dir}/not`), false);
    // Opening for writing (the default) still creates it.
    const store = await openStore(`sqlite://${path}`);
    await store.close();
    assert.ok(await exists(path));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a reader sees what a writer commits, and cannot write itself", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/store.db`;
  try {
    await new SqliteBlobService(path).close();
    const reader = new SqliteBlobService(path, { readOnly: true });
    const writer = new SqliteBlobService(path);
    try {
      const data = new Uint8Array(2 * 1024 * 1024 + 1).fill(3);
      const w = await writer.openWrite();
      await w.write(data);
      const digest = await w.close();
      assert.equal(await reader.has(digest), true);
      assert.deepEqual(await readBlob(reader, digest), data);
      const attempt = await reader.openWrite();
      await assert.rejects(
        attempt.write(data),
        (e) => e instanceof StorageError && /readonly/.test(e.message),
      );
      await attempt.abort();
    } finally {
      await writer.close();
      await reader.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reading commands on a missing store: an error naming it, nothing created", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/nonexistent/dir/x.db`;
    const explicit = serviceFlags(`sqlite://${path}`);
    const name = "q68fjxgpip9x7b5hz7gybb614cbh6khb-x";
    for (
      const args of [["list"], ["path-info", name], ["nar", name], ["ls", name], [
        "cat",
        `${name}/f`,
      ]]
    ) {
      const r = await nixcas([...args, ...explicit]);
      assert.equal(r.code, 1, `${args[0]}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`no store at ${path}`), args[0]);
    }
    assert.equal(await exists(`${dir}/nonexistent`), false);
    // The default store: the same, naming $NIXCAS_DIR/store.db.
    const env = { NIXCAS_DIR: `${dir}/home` };
    const list = await nixcas(["list"], { env });
    assert.equal(list.code, 1);
    assert.match(list.stderr, new RegExp(`no store at ${dir}/home/store.db`));
    assert.equal(await exists(`${dir}/home`), false);
    // A writing command creates it; then listing works (and lists nothing yet).
    await Deno.writeTextFile(`${dir}/hello`, "hello\n");
    const imp = await nixcas(["import", "--quiet", `${dir}/hello`], { env });
    assert.equal(imp.code, 0, imp.stderr);
    const again = await nixcas(["list"], { env });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(td.decode(again.stdout), td.decode(imp.stdout));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const root = Deno.uid() === 0;
if (!root) console.warn("skipping the read-only filesystem test: it mounts a tmpfs (needs root)");

Deno.test({
  name: "a store on a read-only filesystem: list, path-info, cat, nar work; import fails",
  ignore: !root || !have("read-only filesystem test", ["mount", "umount"]),
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const mnt = `${dir}/ro`;
    await Deno.mkdir(mnt);
    const mounted = await run("mount", ["-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt]);
    assert.equal(mounted.code, 0, mounted.stderr);
    try {
      const env = { NIXCAS_DIR: `${mnt}/nixcas` };
      const big = new Uint8Array(3 * 1024 * 1024 + 5).map((_, i) => (i * 7 + (i >> 11)) & 255);
      await Deno.mkdir(`${dir}/tree/sub`, { recursive: true });
      await Deno.writeFile(`${dir}/tree/big`, big);
      await Deno.writeTextFile(`${dir}/tree/sub/small`, "small\n");
      await Deno.symlink("sub/small", `${dir}/tree/link`);
      const imp = await nixcas(["import", "--quiet", `${dir}/tree`], { env });
      assert.equal(imp.code, 0, imp.stderr);
      const storePath = td.decode(imp.stdout).trim();
      const narBefore = await nixcas(["nar", storePath], { env });
      assert.equal(narBefore.code, 0, narBefore.stderr);
      const infoBefore = await nixcas(["path-info", "--json", storePath], { env });

      // Read-only connections leave SQLite's WAL index behind; a writer's last close removes it.
      const again = await nixcas(["import", "--quiet", `${dir}/tree`], { env });
      assert.equal(td.decode(again.stdout).trim(), storePath, again.stderr);
      const remount = async (how: string) => {
        const r = await run("mount", ["-o", `remount,${how}`, mnt]);
        assert.equal(r.code, 0, r.stderr);
      };
      const files = () => [...Deno.readDirSync(`${mnt}/nixcas`)].map((e) => e.name).sort();
      const readAll = async (state: string) => {
        const list = await nixcas(["list"], { env });
        assert.equal(list.code, 0, `${state}: ${list.stderr}`);
        assert.equal(td.decode(list.stdout).trim(), storePath);
        const info = await nixcas(["path-info", "--json", storePath], { env });
        assert.equal(info.code, 0, info.stderr);
        assert.deepEqual(info.stdout, infoBefore.stdout);
        const cat = await nixcas(["cat", `${storePath}/big`], { env });
        assert.equal(cat.code, 0, cat.stderr);
        assert.deepEqual(cat.stdout, big);
        const small = await nixcas(["cat", `${storePath}/sub/small`], { env });
        assert.equal(td.decode(small.stdout), "small\n");
        const nar = await nixcas(["nar", storePath], { env });
        assert.equal(nar.code, 0, nar.stderr);
        assert.deepEqual(nar.stdout, narBefore.stdout, state);
      };
      // No WAL index there: SQLite cannot create one, the file is read as immutable.
      await remount("ro");
      assert.deepEqual(files(), ["store.db", "store.db-pack"]);
      await readAll("without -shm");
      // With the index a reader left behind (made while writable).
      await remount("rw");
      assert.equal((await nixcas(["list"], { env })).code, 0);
      await remount("ro");
      assert.deepEqual(files(), ["store.db", "store.db-pack", "store.db-shm", "store.db-wal"]);
      await readAll("with -shm");

      // Writing there fails, naming the file.
      await Deno.writeTextFile(`${dir}/other`, "other\n");
      const write = await nixcas(["import", "--quiet", `${dir}/other`], { env });
      assert.equal(write.code, 1);
      assert.match(write.stderr, new RegExp(`${mnt}/nixcas/store.db`));
      assert.match(write.stderr, /read-only file system/i);
      assert.equal(write.stderr.trim().split("\n").length, 1, write.stderr);
    } finally {
      const u = await run("umount", [mnt]);
      await Deno.remove(dir, { recursive: true });
      assert.equal(u.code, 0, u.stderr);
    }
  },
});
