/**
 * Pack space accounting: a blob that is already stored costs no pack space however it is
 * written (one writer or many at once), space a writer reserved and did not use is given back,
 * and space given back is reused without touching live bytes.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { DatabaseSync } from "node:sqlite";
import { SqliteBlobService } from "../../src/backends/sqlite/blob.ts";
import { readBlob } from "../../src/castore/blob_util.ts";
import { blake3 } from "../../src/castore/digest.ts";
import { packFilePath } from "../../src/backends/sqlite/pack.ts";
import { livePackBytes } from "./rows.ts";

const MiB = 1 << 20;

function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed * 7 + (i >> 12)) & 0xff;
  return out;
}

interface Space {
  /** `pack.used`: the bytes handed out. */
  used: number;
  /** The pack file's size. */
  file: number;
  /** Bytes on the free list. */
  free: number;
  /** Bytes of stored blobs in the pack. */
  live: number;
}

/** The pack's accounting, read from another connection. */
function space(path: string): Space {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const one = (sql: string) => Object.values(db.prepare(sql).get()!)[0] as number;
    return {
      used: one("SELECT used FROM pack"),
      file: Deno.statSync(packFilePath(path)).size,
      free: one("SELECT coalesce(sum(length), 0) FROM pack_free"),
      live: livePackBytes(db),
    };
  } finally {
    db.close();
  }
}

/** Writes `data` in pieces of `piece` bytes, yielding between them (other writers interleave). */
async function write(blobs: SqliteBlobService, data: Uint8Array, piece: number) {
  const w = await blobs.openWrite();
  for (let o = 0; o < data.length; o += piece) {
    await w.write(data.subarray(o, o + piece));
    await new Promise((r) => setTimeout(r, 0));
  }
  return await w.close();
}

async function verify(blobs: SqliteBlobService, all: Uint8Array[]) {
  for (const [i, d] of all.entries()) {
    const got = await readBlob(blobs, blake3(d));
    assert.ok(Buffer.compare(got, d) === 0, `blob ${i} intact`);
  }
}

Deno.test("the same 64 MiB blob written four times takes its pack space once", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/s.db`;
  try {
    const data = pattern(64 * MiB + 12345, 1);
    const seen: Space[] = [];
    for (let round = 0; round < 4; round++) {
      const blobs = new SqliteBlobService(path);
      try {
        await write(blobs, data, 1 * MiB + 7);
        await verify(blobs, [data]);
      } finally {
        await blobs.close();
      }
      seen.push(space(path));
    }
    const exact = { used: data.length, file: data.length, free: 0, live: data.length };
    assert.deepEqual(seen[0], exact);
    assert.deepEqual(seen, [seen[0], seen[0], seen[0], seen[0]]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("distinct 2-20 MiB blobs by concurrent writers, again and again: no growth", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/s.db`;
  try {
    const sizes = [2, 20, 3.5, 7, 11, 2.25, 16, 5].map((m) => Math.round(m * MiB) + 3);
    const all = sizes.map((n, i) => pattern(n, 10 + i));
    const seen: Space[] = [];
    for (let round = 0; round < 4; round++) {
      const blobs = new SqliteBlobService(path);
      try {
        // Pieces of different sizes, so the writers take pack space in interleaved order.
        await Promise.all(all.map((d, i) => write(blobs, d, 300_000 + i * 70_001)));
        await verify(blobs, all);
      } finally {
        await blobs.close();
      }
      seen.push(space(path));
    }
    const total = sizes.reduce((a, b) => a + b, 0);
    // One writer process: the rest of each extent is at the end and goes back there.
    assert.deepEqual(seen[0], { used: total, file: total, free: 0, live: total });
    assert.deepEqual(seen, [seen[0], seen[0], seen[0], seen[0]]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("space given back by copies is reused by new blobs, live bytes untouched", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/s.db`;
  try {
    const first = [9, 4, 13].map((m, i) => pattern(m * MiB + 11, 30 + i));
    const fresh = [6, 17, 3].map((m, i) => pattern(m * MiB + 5, 40 + i));
    const later = [5, 2].map((m, i) => pattern(m * MiB, 50 + i));
    const size = (ds: Uint8Array[]) => ds.reduce((a, d) => a + d.length, 0);
    // A service open throughout, as in a daemon.
    const blobs = new SqliteBlobService(path);
    let afterMixed: Space;
    try {
      await Promise.all(first.map((d, i) => write(blobs, d, 500_000 + i * 99_999)));
      // Copies of the first blobs and new blobs at once: the copies' space, given back, lies
      // between live chunks.
      await Promise.all([...first, ...fresh].map((d, i) => write(blobs, d, 400_000 + i * 55_555)));
      afterMixed = space(path);
      assert.equal(afterMixed.live, size([...first, ...fresh]));
      assert.ok(afterMixed.free > 0, "the copies left holes");
      for (let round = 0; round < 2; round++) {
        await Promise.all(first.map((d, i) => write(blobs, d, 700_000 + i * 12_345)));
        await verify(blobs, [...first, ...fresh]);
      }
      // New blobs that fit in the holes go there.
      await Promise.all(later.map((d) => write(blobs, d, 1 * MiB)));
      await verify(blobs, [...first, ...fresh, ...later]);
    } finally {
      await blobs.close();
    }
    const end = space(path);
    assert.equal(end.live, size([...first, ...fresh, ...later]));
    assert.equal(end.used, end.live + end.free, "every byte handed out is live or free");
    assert.equal(end.file, end.used);
    assert.ok(end.used <= afterMixed.used, `${end.used} > ${afterMixed.used}: holes not reused`);
    const again = new SqliteBlobService(path);
    try {
      await verify(again, [...first, ...fresh, ...later]);
    } finally {
      await again.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
