/**
 * The BlobService conformance suite, run against every backend.
 *
 * @module
 */
import assert from "node:assert/strict";
import { B3Digest } from "../../src/castore/digest.ts";
import type { BlobService, ChunkMeta } from "../../src/castore/blob_service.ts";
import { putBlob, putSmallBlob, readBlob } from "../../src/castore/blob_util.ts";
import { collect } from "../../src/base/async.ts";
import { concat } from "../../src/base/bytes.ts";
import { CHUNK_SIZE } from "../../src/castore/blob_service.ts";
import { blake3 } from "../../src/castore/digest.ts";
import { blobChunks } from "../../src/castore/verify.ts";
import { suiteTest } from "./suite.ts";
import type { Backend } from "./backends.ts";
import {
  BLOB_A,
  BLOB_A_DIGEST,
  BLOB_B,
  BLOB_B_DIGEST,
  DUMMY_DIGEST,
  EMPTY,
  EMPTY_DIGEST,
  HELLOWORLD,
  HELLOWORLD_DIGEST,
} from "../fixtures.ts";

/**
 * How a backend cuts big blobs into chunks (Stat lists them): content-defined (FastCDC) or in
 * fixed 1 MiB pieces. Explicit per backend, so a backend that silently stops chunking fails; a
 * daemon answers as the service behind it.
 */
function chunking(backend: string): "content-defined" | "fixed" {
  // A daemon answers for the service behind it: `grpc(unix) → sqlite(file)` chunks as SQLite does.
  const stored = backend.split("→").pop()!.trim();
  if (/^memory\b/.test(stored)) return "content-defined";
  if (/^sqlite\b/.test(stored)) return "fixed";
  throw new Error(`conformance: say in chunking how backend ${backend} chunks`);
}

/** 8 MiB of bytes without repeats that a content-defined chunker cuts in several places. */
function bigBlob(seed: number): Uint8Array {
  const data = new Uint8Array(8 << 20);
  let x = seed | 1;
  for (let i = 0; i < data.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    data[i] = x;
    data[i + 1] = x >>> 8;
    data[i + 2] = x >>> 16;
    data[i + 3] = x >>> 24;
  }
  return data;
}

/** Registers every BlobService case on `backend` as `Deno.test`s named `<backend> blob: <case>`. */
export function blobServiceSuite(backend: Backend): void {
  const test = suiteTest<BlobService>(backend, "blob", (s) => s.blobs);

  test("has on an absent blob is false", async (svc) => {
    assert.equal(await svc.has(BLOB_A_DIGEST), false);
    assert.equal(await svc.has(B3Digest.fromBytes(DUMMY_DIGEST)), false);
  });

  test("reading an absent blob gives null", async (svc) => {
    assert.equal(await svc.openRead(BLOB_A_DIGEST), null);
  });

  for (
    const [label, data, digest] of [
      ["empty", EMPTY, EMPTY_DIGEST],
      ["BLOB_A", BLOB_A, BLOB_A_DIGEST],
      ["HELLOWORLD", HELLOWORLD, HELLOWORLD_DIGEST],
      ["BLOB_B (1 MiB)", BLOB_B, BLOB_B_DIGEST],
    ] as const
  ) {
    test(`put, has, get ${label}`, async (svc) => {
      const got = await putBlob(svc, data);
      assert.equal(got.toString(), digest.toString());
      assert.equal(await svc.has(digest), true);
      assert.deepEqual(await readBlob(svc, digest), data);
    });
  }

  test("chunking of writes does not matter", async (svc) => {
    // Odd-sized writes crossing 1 MiB chunk boundaries, 3 MiB + 7 bytes in all.
    const data = new Uint8Array(3 * (1 << 20) + 7);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 11)) & 0xff;
    const w = await svc.openWrite();
    for (let o = 0, step = 1; o < data.length; o += step, step = step * 3 + 1) {
      await w.write(data.subarray(o, Math.min(o + step, data.length)));
    }
    const digest = await w.close();
    assert.equal(digest.toString(), (await putBlob(svc, [data])).toString());
    assert.deepEqual(await readBlob(svc, digest), data);
    const r = (await svc.openRead(digest))!;
    for (const c of await collect(r.chunks())) assert.ok(c.length <= 1 << 20);
    await r.close();
  });

  test("overlapping writes append in call order", async (svc) => {
    // The importer starts a chunk's write before the previous one resolved, each from its own
    // buffer: whole chunks, then a partial one, then whole ones again (3.5 MiB + 3 in all).
    const sizes = [CHUNK_SIZE, CHUNK_SIZE, 3, CHUNK_SIZE / 2, CHUNK_SIZE];
    const parts = sizes.map((n, k) => {
      const p = new Uint8Array(n);
      for (let i = 0; i < n; i++) p[i] = (i * 7 + k * 13 + (i >> 9)) & 0xff;
      return p;
    });
    const w = await svc.openWrite();
    await Promise.all(parts.map((p) => w.write(p)));
    const digest = await w.close();
    const whole = concat(parts);
    assert.equal(digest.toString(), blake3(whole).toString());
    assert.deepEqual(await readBlob(svc, digest), whole);
  });

  test("closing twice returns the same digest", async (svc) => {
    const w = await svc.openWrite();
    await w.write(HELLOWORLD);
    const a = await w.close();
    const b = await w.close();
    assert.equal(a.toString(), HELLOWORLD_DIGEST.toString());
    assert.equal(b.toString(), a.toString());
  });

  test("a blob is invisible until its writer closes; abort stores nothing", async (svc) => {
    const w = await svc.openWrite();
    await w.write(BLOB_B);
    await w.write(BLOB_B);
    assert.equal(await svc.has(BLOB_B_DIGEST), false);
    await w.abort();
    const twice = concat([BLOB_B, BLOB_B]);
    const w2 = await svc.openWrite();
    await w2.write(twice);
    const d = await w2.close();
    assert.equal(await svc.has(d), true);
    assert.equal(await svc.has(BLOB_B_DIGEST), false);
  });

  test("writing an existing blob again is harmless", async (svc) => {
    const a = await putBlob(svc, BLOB_B);
    const b = await putBlob(svc, BLOB_B);
    assert.equal(a.toString(), b.toString());
    assert.deepEqual(await readBlob(svc, a), BLOB_B);
  });

  test("reads at offsets (the seed's seek cases)", async (svc) => {
    await putBlob(svc, BLOB_B);
    const r = (await svc.openRead(BLOB_B_DIGEST))!;
    try {
      for (const off of [0, 10, 15, 12345 + 25, (1 << 20) - 3, BLOB_B.length - 10]) {
        assert.deepEqual(await r.readAt(off, 10), BLOB_B.subarray(off, off + 10), `offset ${off}`);
      }
      // A read across most of the blob.
      assert.deepEqual(await r.readAt(5, BLOB_B.length), BLOB_B.subarray(5));
      // At and past the end: no data.
      assert.equal((await r.readAt(BLOB_B.length, 10)).length, 0);
      assert.equal((await r.readAt(BLOB_B.length + 100, 10)).length, 0);
      // chunks() from an offset.
      assert.deepEqual(concat(await collect(r.chunks(12345))), BLOB_B.subarray(12345));
    } finally {
      await r.close();
    }
  });

  test("reads at offsets across chunk boundaries of a 3 MiB blob", async (svc) => {
    const data = new Uint8Array(3 << 20);
    crypto.getRandomValues(data.subarray(0, 65536));
    for (let o = 65536; o < data.length; o += 65536) data.copyWithin(o, 0, 65536);
    data[(2 << 20) + 1] = 7;
    const digest = await putBlob(svc, data);
    const r = (await svc.openRead(digest))!;
    try {
      for (
        const [off, len] of [[(1 << 20) - 5, 10], [(1 << 20) - 1, (1 << 20) + 2], [0, 3 << 20]]
      ) {
        assert.deepEqual(await r.readAt(off, len), data.subarray(off, off + len), `@${off}+${len}`);
      }
      assert.deepEqual(
        concat(await collect(r.chunks((2 << 20) + 1))),
        data.subarray((2 << 20) + 1),
      );
    } finally {
      await r.close();
    }
  });

  test("several writers at once", async (svc) => {
    const blobs = Array.from({ length: 8 }, (_, i) => new Uint8Array(100_000 + i).fill(i));
    const digests = await Promise.all(blobs.map((b) => putBlob(svc, b)));
    for (let i = 0; i < blobs.length; i++) {
      assert.deepEqual(await readBlob(svc, digests[i]), blobs[i]);
    }
  });

  test("small blobs stored without a writer: digest at once, readable once stored", async (svc) => {
    // Thousands at once, none awaited until the end: backends batch them (SQLite commits every
    // few MiB even without yielding), and a blob stored twice is harmless.
    const datas = Array.from({ length: 5000 }, (_, i) => {
      const d = new Uint8Array(i % 3 === 0 ? 0 : 100 + (i * 37) % 9000);
      for (let j = 0; j < d.length; j++) d[j] = (i + j * 7) & 0xff;
      return d;
    });
    datas.push(new Uint8Array(CHUNK_SIZE).fill(9), datas[1].slice());
    const puts = datas.map((d) => putSmallBlob(svc, d));
    for (let i = 0; i < datas.length; i++) {
      assert.equal(puts[i].digest.toString(), blake3(datas[i]).toString(), `blob ${i}`);
    }
    await Promise.all(puts.map((p) => p.stored));
    for (const i of [0, 1, 2, 4999, 5000, 5001]) {
      assert.deepEqual(await readBlob(svc, puts[i].digest), datas[i], `blob ${i}`);
    }
    assert.equal(await svc.has(blake3(datas[2500])), true);
    assert.throws(() => putSmallBlob(svc, new Uint8Array(CHUNK_SIZE + 1)), /at most/);
  });

  test("chunks of an absent blob is null; a small blob is one chunk", async (svc) => {
    assert.equal(await blobChunks(svc, BLOB_A_DIGEST), null);
    for (const data of [EMPTY, HELLOWORLD, BLOB_B]) {
      const d = await putBlob(svc, data);
      assert.deepEqual(await blobChunks(svc, d), [], `${data.length} bytes`);
    }
  });

  test("a big blob's chunks: own digests, sizes adding up, each readable by its digest", async (svc) => {
    const data = bigBlob(1);
    const digest = await putBlob(svc, data);
    const chunks = (await blobChunks(svc, digest))!;
    assert.ok(chunks.length >= 2, `${chunks.length} chunks`);
    // Fixed pieces: all of 1 MiB but the last.
    if (chunking(backend.name) === "fixed") {
      assert.deepEqual(chunks.map((c) => c.size), Array(8).fill(CHUNK_SIZE));
    }
    let o = 0;
    for (const [i, c] of chunks.entries()) {
      const want = data.subarray(o, o + c.size);
      assert.equal(c.digest.toString(), blake3(want).toString(), `chunk ${i}`);
      assert.equal(await svc.has(c.digest), true, `has chunk ${i}`);
      // Read of a chunk's digest gives that chunk, at offsets too.
      assert.deepEqual(await readBlob(svc, c.digest), want, `read chunk ${i}`);
      const r = (await svc.openRead(c.digest))!;
      try {
        assert.deepEqual(await r.readAt(c.size - 5, 10), want.subarray(c.size - 5));
      } finally {
        await r.close();
      }
      o += c.size;
    }
    assert.equal(o, data.length);
    // Reads of the blob across chunk boundaries.
    const r = (await svc.openRead(digest))!;
    try {
      const b = chunks[0].size;
      assert.deepEqual(await r.readAt(b - 3, 6), data.subarray(b - 3, b + 3));
      assert.deepEqual(concat(await collect(r.chunks(b + 1))), data.subarray(b + 1));
    } finally {
      await r.close();
    }
    assert.deepEqual(await readBlob(svc, digest), data);
  });

  test("blobs sharing content share chunks", async (svc) => {
    const data = bigBlob(2);
    const a = (await blobChunks(svc, await putBlob(svc, data)))!;
    // The same bytes with 100 bytes in front: content-defined cuts after the first chunk
    // fall in the same places.
    const keys = new Set(a.map((c) => c.digest.toString()));
    const shared = (b: ChunkMeta[]) => b.filter((c) => keys.has(c.digest.toString())).length;
    const cdc = chunking(backend.name) === "content-defined";
    // An edit in place, as between two builds of a store path that differ in a hash they
    // embed: every chunk but the edited one (and, content-defined, maybe its neighbour) shared.
    const edited = data.slice();
    edited[(4 << 20) + 12345] ^= 1;
    const e = (await blobChunks(svc, await putBlob(svc, edited)))!;
    assert.ok(
      e.length >= 2 && shared(e) >= a.length - (cdc ? 2 : 1),
      `${shared(e)} of ${a.length}`,
    );
    const shifted = concat([new Uint8Array(100).fill(7), data]);
    const b = (await blobChunks(svc, await putBlob(svc, shifted)))!;
    // Only content-defined cuts find the same places again after an insertion.
    if (cdc) assert.ok(shared(b) >= a.length - 2, `${shared(b)} of ${a.length} chunks shared`);
    else assert.equal(shared(b), 0);
  });
}
