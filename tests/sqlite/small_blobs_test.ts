/**
 * Small blobs in an SQLite store: tiny ones live in their row, the bytes of bigger ones in the
 * pack file (written once, not into the write-ahead log and again into the database); copies
 * take no pack space; what was handed over before close, or committed before the process died,
 * is there afterwards.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { INLINE_MAX, SqliteBlobService } from "../../src/backends/sqlite/blob.ts";
import { putSmallBlob, readBlob } from "../../src/castore/blob_util.ts";
import { B3Digest } from "../../src/castore/digest.ts";
import { bytes } from "../fixtures.ts";

const CHILD = new URL("./small_blob_child.ts", import.meta.url).pathname;

interface Stats {
  inline: number;
  packed: number;
  used: number;
  free: number;
}

function stats(path: string): Stats {
  const db = new DatabaseSync(path, { readOnly: true });
  const one = (sql: string) => Object.values(db.prepare(sql).get()!)[0] as number;
  const s = {
    inline: one("SELECT count(*) FROM blobs WHERE data IS NOT NULL"),
    packed: one("SELECT count(*) FROM blobs WHERE chunks IS NOT NULL"),
    used: one("SELECT used FROM pack"),
    free: one("SELECT coalesce(sum(length), 0) FROM pack_free"),
  };
  db.close();
  return s;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("small blobs over INLINE_MAX keep their bytes in the pack, tiny ones in the row", () =>
  withDir(async (dir) => {
    const path = `${dir}/store.db`;
    const sizes = [0, 1, INLINE_MAX, INLINE_MAX + 1, 32 << 10, 300_000, 1 << 20];
    const blobs = new SqliteBlobService(path);
    const puts = sizes.map((n, i) => ({
      data: bytes(n, i),
      put: putSmallBlob(blobs, bytes(n, i)),
    }));
    await Promise.all(puts.map((p) => p.put.stored));
    await blobs.close();

    const s = stats(path);
    assert.equal(s.inline, 3, "0, 1 and INLINE_MAX bytes inline");
    assert.equal(s.packed, 4);
    const packedBytes = sizes.filter((n) => n > INLINE_MAX).reduce((a, b) => a + b, 0);
    // Only the pack holds them: the database file stays small.
    assert.ok(Deno.statSync(`${path}-pack`).size >= packedBytes);
    assert.ok(Deno.statSync(path).size < 256 << 10, `database ${Deno.statSync(path).size} bytes`);

    const again = new SqliteBlobService(path, { readOnly: true });
    try {
      for (const { data, put } of puts) {
        assert.deepEqual(await readBlob(again, put.digest), data, `${data.length} bytes`);
        // Read in pieces too, as FUSE does.
        const r = (await again.openRead(put.digest))!;
        const mid = Math.floor(data.length / 2);
        assert.deepEqual(await r.readAt(mid, 1000), data.subarray(mid, mid + 1000));
        await r.close();
      }
    } finally {
      await again.close();
    }
  }));

Deno.test("copies of small blobs take no pack space, in one batch or later", () =>
  withDir(async (dir) => {
    const path = `${dir}/store.db`;
    const size = 32 << 10;
    let blobs = new SqliteBlobService(path);
    // Twice in one batch, then once more in a later one.
    const a = putSmallBlob(blobs, bytes(size, 7));
    const b = putSmallBlob(blobs, bytes(size, 7));
    const c = putSmallBlob(blobs, bytes(size, 8));
    await Promise.all([a.stored, b.stored, c.stored]);
    assert.equal(a.digest.toString(), b.digest.toString());
    await putSmallBlob(blobs, bytes(size, 8)).stored;
    await blobs.close();
    blobs = new SqliteBlobService(path);
    await putSmallBlob(blobs, bytes(size, 7)).stored;
    await blobs.close();

    const s = stats(path);
    assert.equal(s.packed, 2);
    assert.equal(s.used - s.free, 2 * size, "live pack bytes: the two distinct blobs");
    blobs = new SqliteBlobService(path);
    try {
      assert.deepEqual(await readBlob(blobs, a.digest), bytes(size, 7));
      assert.deepEqual(await readBlob(blobs, c.digest), bytes(size, 8));
    } finally {
      await blobs.close();
    }
  }));

Deno.test("small blobs handed over just before close are stored", () =>
  withDir(async (dir) => {
    const path = `${dir}/store.db`;
    const blobs = new SqliteBlobService(path);
    const puts = [10, 32 << 10, 200_000].map((n, i) => putSmallBlob(blobs, bytes(n, i)));
    await blobs.close(); // before the batch's turn came
    for (const p of puts) await p.stored;
    const again = new SqliteBlobService(path, { readOnly: true });
    try {
      for (const p of puts) assert.ok(await again.has(p.digest), `${p.digest} stored`);
    } finally {
      await again.close();
    }
  }));

Deno.test("small blobs committed before the process died are there, intact", () =>
  withDir(async (dir) => {
    const path = `${dir}/store.db`;
    // The child stores blobs, reports each committed batch, keeps storing, and is killed.
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", CHILD, path],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const committed: { digest: string; seed: number; size: number }[] = [];
    let text = "";
    const dec = new TextDecoder();
    try {
      for await (const chunk of child.stdout) {
        text += dec.decode(chunk, { stream: true });
        const lines = text.split("\n");
        text = lines.pop()!;
        for (const l of lines) {
          const [digest, seed, size] = l.split(" ");
          committed.push({ digest, seed: Number(seed), size: Number(size) });
        }
        if (committed.length >= 400) break;
      }
    } finally {
      child.kill("SIGKILL");
      await child.status;
      await child.stderr.cancel();
    }
    assert.ok(committed.length >= 400, `child reported ${committed.length} blobs`);
    const blobs = new SqliteBlobService(path);
    try {
      for (const c of committed) {
        const got = await readBlob(blobs, B3Digest.parse(c.digest));
        assert.deepEqual(got, bytes(c.size, c.seed), `blob ${c.seed} (${c.size} bytes)`);
      }
    } finally {
      await blobs.close();
    }
    const s = stats(path);
    assert.ok(s.used >= s.free);
  }));
