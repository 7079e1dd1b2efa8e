/**
 * The NAR hash computed during an import (files read concurrently, contents sequenced by
 * OrderedNarHasher) equals the hash of the NAR rendered afterwards, including files large enough
 * to make later files wait for their turn.
 */
import assert from "node:assert/strict";
import { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import { importPath } from "../../src/castore/import/mod.ts";
import { calculateNar, NarImportObserver, OrderedNarHasher } from "../../src/nar/hash.ts";
import { sha256 } from "../../src/hash/sha256.ts";

Deno.test("NAR hash in the import pass equals the rendered NAR's, big files in flight", async () => {
  const dir = await Deno.makeTempDir({ prefix: "nixcas-ordered-" });
  try {
    // Big files (> 8 MiB hold limit) interleaved with small ones, in several directories.
    for (const sub of ["a", "b"]) {
      await Deno.mkdir(`${dir}/t/${sub}`, { recursive: true });
      for (let i = 0; i < 3; i++) {
        const big = new Uint8Array((10 << 20) + i * 4097);
        for (let o = 0; o < big.length; o += 4096) big[o] = (o >> 12) + i;
        await Deno.writeFile(`${dir}/t/${sub}/big${i}`, big, { mode: i % 2 ? 0o755 : 0o644 });
        await Deno.writeTextFile(`${dir}/t/${sub}/small${i}`, `${sub}${i}`.repeat(i * 1000));
      }
      await Deno.symlink("big0", `${dir}/t/${sub}/link`);
    }
    await Deno.writeFile(`${dir}/t/empty`, new Uint8Array());
    for (const concurrency of [1, 8]) {
      const blobs = new MemoryBlobService();
      const dirs = new MemoryDirectoryService();
      const nar = new NarImportObserver();
      const root = await importPath(`${dir}/t`, blobs, dirs, { concurrency, observer: nar });
      const inPass = await nar.result();
      const rendered = await calculateNar(root, blobs, dirs);
      assert.equal(inPass.narSize, rendered.narSize, `size, concurrency ${concurrency}`);
      assert.deepEqual(inPass.narSha256, rendered.narSha256, `sha256, concurrency ${concurrency}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("NarSlot.write: overlapping writes hash in call order, also while waiting for a turn", async () => {
  // Two slots: the second may hold only so much before its turn, so its writes wait, and the
  // ones made meanwhile must not overtake them.
  const first = new Uint8Array(3 << 20).map((_, i) => (i * 7) & 0xff);
  const second = new Uint8Array(20 << 20).map((_, i) => (i * 13 + 1) & 0xff);
  const hasher = new OrderedNarHasher();
  const a = hasher.slot(first.length);
  const b = hasher.slot(second.length);
  const piece = 1 << 20;
  const later: Promise<void>[] = [];
  for (let o = 0; o < second.length; o += piece) {
    later.push(b.write(second.subarray(o, o + piece)));
  }
  const now: Promise<void>[] = [];
  for (let o = 0; o < first.length; o += piece) now.push(a.write(first.subarray(o, o + piece)));
  await Promise.all(now);
  a.end(); // the second slot's turn
  await Promise.all(later);
  b.end();
  const { narSize, narSha256 } = await hasher.result();
  const all = new Uint8Array(first.length + second.length);
  all.set(first);
  all.set(second, first.length);
  assert.equal(narSize, all.length);
  assert.deepEqual(narSha256, sha256(all));
});
