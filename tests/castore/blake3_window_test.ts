/**
 * BLAKE3 by windows: the chaining values of aligned 1 MiB windows, pushed into a hasher with the
 * rest as bytes, give the digest of the whole (what the two-pass verified reader relies on), and
 * native BLAKE3 (LLVM's, where the system has it) agrees with our WebAssembly on digests and
 * window CVs.
 */
import assert from "node:assert/strict";
import { Blake3, blake3Hash, subtreeCV } from "../../src/hash/blake3.ts";
import { createBlake3Hasher } from "../../src/castore/digest.ts";
import { enableNativeBlake3, nativeBlake3 } from "../../src/hash/blake3_native.ts";
import { llvmBlake3, startLlvmBlake3Worker } from "../../src/sys/llvm_blake3.ts";
import { AT_FDCWD, close, O_RDONLY, openAt, toBytes } from "../../src/sys/libc.ts";
import { bytes } from "../fixtures.ts";

const MiB = 1 << 20;

Deno.test("blake3: window CVs plus the tail give the digest, for many shapes", () => {
  const data = bytes(5 * MiB + 3000, 11);
  for (const windows of [1, 2, 3, 4, 5]) {
    for (const tail of [0, 1, 1023, 1024, 1025, 3000]) {
      if (windows === 1 && tail === 0) continue; // one window alone is the root: not a CV
      const input = data.subarray(0, windows * MiB + tail);
      const h = new Blake3();
      for (let w = 0; w < windows; w++) {
        h.pushSubtree(subtreeCV(input.subarray(w * MiB, (w + 1) * MiB), w * 1024), 1024);
      }
      h.update(input.subarray(windows * MiB));
      assert.deepEqual(h.digest(), blake3Hash(input), `${windows} windows + ${tail}`);
    }
  }
  // Smaller subtrees work the same way.
  const small = data.subarray(0, 6 * 1024 + 5);
  const h = new Blake3();
  for (let k = 0; k < 3; k++) {
    h.pushSubtree(subtreeCV(small.subarray(k * 2048, (k + 1) * 2048), k * 2), 2);
  }
  assert.deepEqual(h.update(small.subarray(6144)).digest(), blake3Hash(small));
});

Deno.test("blake3: a changed byte changes its window's CV; misuse is a RangeError", () => {
  const w = bytes(MiB, 12);
  const cv = subtreeCV(w, 2048);
  const bad = w.slice();
  bad[777_777] ^= 1;
  assert.notDeepEqual(subtreeCV(bad, 2048), cv);
  assert.notDeepEqual(subtreeCV(w, 1024), cv, "the position is part of the CV");
  assert.throws(() => subtreeCV(w, 512), RangeError); // not aligned
  assert.throws(() => subtreeCV(w.subarray(0, 3000), 0), RangeError); // not a power of two
  const h = new Blake3().update(new Uint8Array(10));
  assert.throws(() => h.pushSubtree(cv, 1024), RangeError); // after bytes
  const lone = new Blake3().pushSubtree(cv, 1024);
  assert.throws(() => lone.digest(), RangeError);
});

Deno.test("native BLAKE3 (LLVM) agrees with ours, on this thread, the pool and a worker (which reads too)", async (t) => {
  if (!(await enableNativeBlake3())) {
    if (Deno.env.get("NIXCAS_REQUIRE_ALL") === "1" && llvmBlake3()) {
      throw new Error("LLVM's BLAKE3 loads but failed its self-test");
    }
    console.warn("skipping native BLAKE3: no LLVM library with llvm_blake3_* here");
    return;
  }
  const native = nativeBlake3()!;
  const data = bytes(3 * MiB + 77, 13);
  await t.step("digests", () => {
    for (const n of [0, 1, 64, 1024, 1025, 4096, 100_000, MiB, 3 * MiB + 77]) {
      assert.deepEqual(native.hash(data.subarray(0, n)), blake3Hash(data.subarray(0, n)), `${n}`);
    }
  });
  await t.step("window CVs", async () => {
    for (const w of [0, 1, 2]) {
      const win = data.subarray(w * MiB, (w + 1) * MiB);
      const want = subtreeCV(win, w * 1024);
      assert.deepEqual(native.windowCV(win, w * 1024), want);
      assert.deepEqual(await native.windowCVAsync(win, w * 1024), want);
    }
  });
  await t.step("worker: reports exactly the ranges that differ", async () => {
    const w = startLlvmBlake3Worker()!;
    try {
      const sab = new SharedArrayBuffer(200_000);
      const view = new Uint8Array(sab);
      view.set(data.subarray(0, view.length));
      const starts = new Float64Array([0, 10, 50_000, 199_999]);
      const sizes = new Float64Array([10, 40_000, 150_000, 1]);
      const expected = new Uint8Array(32 * 4);
      starts.forEach((s, i) => expected.set(blake3Hash(view.subarray(s, s + sizes[i])), 32 * i));
      assert.deepEqual(await w.check(sab, starts, sizes, expected), []);
      view[60_000] ^= 1; // in range 2
      assert.deepEqual(await w.check(sab, starts, sizes, expected), [2]);
      // Read from a file first (two runs, into places of their own), then checked.
      const path = await Deno.makeTempFile();
      try {
        await Deno.writeFile(path, data.subarray(0, 300_000));
        const fd = openAt(AT_FDCWD, toBytes(path), O_RDONLY);
        try {
          const into = new SharedArrayBuffer(100_000);
          const runs = new Float64Array([1000, 0, 60_000, 200_000, 60_000, 40_000]);
          const st = new Float64Array([0, 60_000]);
          const sz = new Float64Array([60_000, 40_000]);
          const exp = new Uint8Array(64);
          exp.set(blake3Hash(data.subarray(1000, 61_000)), 0);
          exp.set(blake3Hash(data.subarray(200_000, 240_000)), 32);
          assert.deepEqual(await w.readAndCheck(fd, runs, into, st, sz, exp), []);
          assert.deepEqual(new Uint8Array(into, 60_000, 10), data.subarray(200_000, 200_010));
          exp[40] ^= 1;
          assert.deepEqual(await w.readAndCheck(fd, runs, into, st, sz, exp), [1]);
          // Past the end of the file: a short read is an error, not bytes.
          const past = new Float64Array([290_000, 0, 60_000]);
          await assert.rejects(w.readAndCheck(fd, past, into, st, sz, exp), /short/);
        } finally {
          close(fd);
        }
      } finally {
        await Deno.remove(path);
      }
    } finally {
      w.close();
    }
    await assert.rejects(
      w.check(new SharedArrayBuffer(1), new Float64Array(), new Float64Array(), new Uint8Array()),
    );
  });
});

Deno.test("createBlake3Hasher with native BLAKE3 (whole windows by CV) agrees with ours", async () => {
  if (!(await enableNativeBlake3())) {
    if (Deno.env.get("NIXCAS_REQUIRE_ALL") === "1") throw new Error("no native BLAKE3 here");
    console.warn("skipping: no LLVM library with llvm_blake3_* here");
    return;
  }
  const data = bytes(7 * MiB + 12_345, 21);
  for (
    const size of [0, 1, 65_536, MiB - 1, MiB, MiB + 1, 2 * MiB, 3 * MiB + 5, 7 * MiB + 12_345]
  ) {
    const input = data.subarray(0, size);
    const want = blake3Hash(input);
    // First pieces below and above the windowed threshold, pieces that cut windows anywhere.
    for (const piece of [1000, 65_536, 100_000, MiB, 3 * MiB, 16 * MiB]) {
      const h = await createBlake3Hasher();
      h.update(input.subarray(0, 0));
      for (let o = 0; o < size; o += piece) h.update(input.subarray(o, o + piece));
      assert.deepEqual(h.digest().bytes, want, `${size} bytes in pieces of ${piece}`);
    }
  }
  // The caller may reuse its buffer once update returns: a held window is a copy.
  const buf = data.slice(0, MiB);
  const h = await createBlake3Hasher();
  h.update(buf);
  buf.fill(0);
  h.update(data.subarray(MiB, 2 * MiB));
  assert.deepEqual(h.digest().bytes, blake3Hash(data.subarray(0, 2 * MiB)));
});
