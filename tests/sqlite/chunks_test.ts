/**
 * SQLite big blobs become chunks on their first read: the list is derived once, checked against
 * the blob's digest, and stored (also by a read-only connection) for every later reader.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { SqliteBlobService } from "../../src/backends/sqlite/blob.ts";
import { putBlob, readBlob } from "../../src/castore/blob_util.ts";
import { type B3Digest, blake3 } from "../../src/castore/digest.ts";
import { openVerifiedRead } from "../../src/castore/verify.ts";
import { bytes } from "../fixtures.ts";
import { concat } from "../../src/base/bytes.ts";
import { forgetChunks } from "./rows.ts";
import { enableNativeBlake3 } from "../../src/hash/blake3_native.ts";

const MiB = 1 << 20;

function listed(path: string): number {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return (db.prepare("SELECT count(*) AS n FROM blobs WHERE parts IS NOT NULL").get() as {
      n: number;
    }).n;
  } finally {
    db.close();
  }
}

/** Stores `data` in the store at `path` with no chunk list, as an import without native BLAKE3. */
async function storedUnlisted(path: string, data: Uint8Array): Promise<B3Digest> {
  const writer = new SqliteBlobService(path);
  const digest = await putBlob(writer, data);
  await writer.close();
  forgetChunks(path, digest.bytes);
  return digest;
}

Deno.test("sqlite: a read-only reader derives a big blob's chunks once and stores them", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/store.db`;
  try {
    const data = bytes(5 * MiB + 123, 4);
    const writer = new SqliteBlobService(path);
    const digest = await putBlob(writer, data);
    await writer.close();
    forgetChunks(path, digest.bytes); // as an import leaves it
    assert.equal(listed(path), 0);
    const reader = new SqliteBlobService(path, { readOnly: true });
    try {
      const chunks = (await reader.chunks(digest))!;
      assert.deepEqual(chunks.map((c) => c.size), [MiB, MiB, MiB, MiB, MiB, 123]);
      chunks.forEach((c, i) => {
        assert.ok(c.digest.equals(blake3(data.subarray(i * MiB, i * MiB + c.size))), `chunk ${i}`);
      });
      assert.equal(listed(path), 1, "stored by the read-only reader's own connection");
      for (const c of chunks) assert.ok(await reader.has(c.digest));
      // Read through the chunks, in place and by offsets.
      const r = (await openVerifiedRead(reader, digest))!;
      try {
        const into = new Uint8Array(3 * MiB);
        assert.equal(await r.readInto!(MiB, into), 3 * MiB);
        assert.deepEqual(into, data.subarray(MiB, 4 * MiB));
        assert.deepEqual(await r.readAt(MiB - 2, 4), data.subarray(MiB - 2, MiB + 2));
      } finally {
        await r.close();
      }
    } finally {
      await reader.close();
    }
    // A new writer finds the list stored.
    const again = new SqliteBlobService(path);
    try {
      assert.equal((await again.chunks(digest))!.length, 6);
      assert.deepEqual(await readBlob(again, digest), data);
    } finally {
      await again.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sqlite: concurrent first reads of a big blob share one derivation", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/store.db`;
  try {
    const data = bytes(3 * MiB, 5);
    const writer = new SqliteBlobService(path);
    const digest = await putBlob(writer, data);
    await writer.close();
    forgetChunks(path, digest.bytes); // as an import leaves it
    const blobs = new SqliteBlobService(path);
    try {
      const lists = await Promise.all([1, 2, 3].map(() => blobs.chunks(digest)));
      assert.ok(lists[0] === lists[1] && lists[1] === lists[2], "the same pass");
      assert.equal(listed(path), 1);
      const rows = new DatabaseSync(path, { readOnly: true });
      const n = (rows.prepare("SELECT count(*) AS n FROM blobs").get() as { n: number }).n;
      rows.close();
      assert.equal(n, 4, "the blob and its 3 chunks");
    } finally {
      await blobs.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sqlite: a read server with native BLAKE3 loaded lists big blobs' chunks as it writes them", async () => {
  if (!(await enableNativeBlake3())) {
    console.warn("skipped: no native BLAKE3 (Debian libllvm15 or later)");
    return;
  }
  const dir = await Deno.makeTempDir();
  const path = `${dir}/store.db`;
  try {
    const blobs = new SqliteBlobService(path, { readServer: true });
    try {
      for (const [n, pieces] of [[MiB, 0], [MiB + 5, 2], [3 * MiB, 3], [2.5 * MiB, 3]]) {
        const data = bytes(n, n);
        const before = listed(path);
        // Written in odd pieces: the writer cuts its own 1 MiB pieces.
        const w = await blobs.openWrite();
        for (let o = 0; o < n; o += 300_001) await w.write(data.subarray(o, o + 300_001));
        const digest = await w.close();
        assert.ok(digest.equals(blake3(data)), `${n} bytes: digest`);
        assert.equal(listed(path), before + (pieces ? 1 : 0), `${n} bytes: listed at once`);
        const chunks = (await blobs.chunks(digest))!;
        assert.equal(chunks.length, pieces, `${n} bytes`);
        chunks.forEach((c, i) => {
          assert.ok(c.digest.equals(blake3(data.subarray(i * MiB, i * MiB + c.size))), `${i}`);
        });
        assert.deepEqual(await readBlob(blobs, digest), data);
      }
    } finally {
      await blobs.close();
    }
    // Any other writer keeps the windows' chaining values only: the list comes when asked for.
    const plain = new SqliteBlobService(path);
    try {
      const data = bytes(4 * MiB + 1, 77);
      const before = listed(path);
      const digest = await putBlob(plain, data);
      assert.equal(listed(path), before, "not listed as written");
      assert.equal((await plain.chunks(digest))!.length, 5);
      assert.equal(listed(path), before + 1, "listed once asked for");
    } finally {
      await plain.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sqlite: a big blob without a chunk list is read checked window by window, nothing derived", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/store.db`;
  try {
    const data = bytes(5 * MiB + 123, 9);
    const digest = await storedUnlisted(path, data);
    const db = new DatabaseSync(path);
    const row = db.prepare("SELECT cvs, chunks FROM blobs WHERE digest = ?").get(digest.bytes) as {
      cvs: Uint8Array;
      chunks: Uint8Array;
    };
    assert.equal(row.cvs.length, 5 * 32);
    const blobs = new SqliteBlobService(path);
    try {
      assert.deepEqual(await readBlob(blobs, digest), data);
      const r = (await blobs.openRead(digest))!;
      assert.deepEqual(await r.readAt(3 * MiB - 7, 20), data.subarray(3 * MiB - 7, 3 * MiB + 13));
      assert.deepEqual(await r.readAt(5 * MiB + 100, 50), data.subarray(5 * MiB + 100));
      await r.close();
      assert.equal(listed(path), 0, "read without deriving a chunk list");

      // A changed chaining value: the blob no longer adds up, nothing is handed out.
      const bad = row.cvs.slice();
      bad[40] ^= 1;
      db.prepare("UPDATE blobs SET cvs = ? WHERE digest = ?").run(bad, digest.bytes);
      await assert.rejects(
        blobs.openRead(digest),
        (e: Error) => e.message.includes(digest.toString()),
      );
      db.prepare("UPDATE blobs SET cvs = ? WHERE digest = ?").run(row.cvs, digest.bytes);

      // A flipped byte in the last, partial piece: caught when the reader opens.
      const view = new DataView(row.chunks.buffer, row.chunks.byteOffset);
      const tailPos = Number(view.getBigUint64(5 * 8, true));
      const pack = await Deno.open(`${path}-pack`, { read: true, write: true });
      const b = new Uint8Array(1);
      await pack.seek(tailPos + 17, Deno.SeekMode.Start);
      await pack.read(b);
      b[0] ^= 0x80;
      await pack.seek(tailPos + 17, Deno.SeekMode.Start);
      await pack.write(b);
      pack.close();
      await assert.rejects(blobs.openRead(digest), /is corrupt/);
    } finally {
      db.close();
      await blobs.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sqlite: reads at random offsets of a big blob checked by its windows equal the data", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/store.db`;
  try {
    const data = bytes(6 * MiB + 4321, 21);
    const digest = await storedUnlisted(path, data);
    const blobs = new SqliteBlobService(path, { readOnly: true });
    try {
      const r = (await blobs.openRead(digest))!;
      assert.ok(r.readInto, "the reader reads into buffers");
      let x = 12345;
      const rand = (n: number) => {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0;
        return x % n;
      };
      for (let k = 0; k < 150; k++) {
        const off = rand(data.length + 10);
        const len = [1, 4096, MiB, 3 * MiB, rand(2 * MiB) + 1][k % 5];
        const want = data.subarray(off, Math.min(data.length, off + len));
        assert.deepEqual(await r.readAt(off, len), want, `readAt(${off}, ${len})`);
        const into = new Uint8Array(len);
        const n: number = await r.readInto!(off, into);
        assert.equal(n, want.length, `readInto(${off}, ${len})`);
        assert.deepEqual(into.subarray(0, n), want, `readInto(${off}, ${len}) bytes`);
      }
      const all = await Array.fromAsync(r.chunks(2 * MiB + 7));
      assert.deepEqual(concat(all), data.subarray(2 * MiB + 7));
      await r.close();
      assert.equal(listed(path), 0, "nothing derived");
    } finally {
      await blobs.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
