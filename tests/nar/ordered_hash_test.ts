/**
 * The NAR hash computed during an import (files read concurrently, contents sequenced by
 * OrderedNarHasher) equals the hash of the NAR rendered afterwards, including files large enough
 * to make later files wait for their turn.
 */
import assert from "node:assert/strict";
import { MemoryBlobService } from "../../src/castore/blob/memory.ts";
import { MemoryDirectoryService } from "../../src/castore/directory/memory.ts";
import { importPath } from "../../src/castore/import.ts";
import { calculateNar, OrderedNarHasher } from "../../src/nar/hash.ts";

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
      const narHasher = new OrderedNarHasher();
      const root = await importPath(`${dir}/t`, blobs, dirs, { concurrency, narHasher });
      const inPass = await narHasher.result();
      const rendered = await calculateNar(root, blobs, dirs);
      assert.equal(inPass.narSize, rendered.narSize, `size, concurrency ${concurrency}`);
      assert.deepEqual(inPass.narSha256, rendered.narSha256, `sha256, concurrency ${concurrency}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
