import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createSha256Stream, sha256 } from "../../src/hash/sha256.ts";

const reference = (b: Uint8Array) => new Uint8Array(createHash("sha256").update(b).digest());

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

Deno.test("sha256: every length around the block and padding boundaries, and bigger", () => {
  for (const n of [0, 1, 3, 55, 56, 57, 63, 64, 65, 111, 119, 120, 127, 128, 129, 1000, 65_537]) {
    const data = pattern(n, n + 1);
    assert.deepEqual(sha256(data), reference(data), `length ${n}`);
  }
  assert.deepEqual(sha256("abc"), reference(new TextEncoder().encode("abc")));
});

/** Feeds `data` in uneven pieces, alternating copied and in-place updates. */
async function streamed(data: Uint8Array): Promise<Uint8Array> {
  const hash = createSha256Stream();
  const sizes = [1, 700, 300_000, 1 << 20, 13, 70_000, 2 << 20];
  const pending: Promise<void>[] = [];
  for (let off = 0, i = 0; off < data.length; i++) {
    const piece = data.subarray(off, off + sizes[i % sizes.length]);
    if (i % 2 === 0) {
      // A copied update: scribbling over the caller's bytes afterwards must not matter.
      const copy = piece.slice();
      hash.update(copy);
      copy.fill(0xee);
    } else pending.push(hash.updateInPlace(piece));
    off += piece.length;
  }
  await Promise.all(pending);
  return await hash.digest();
}

Deno.test("createSha256Stream: an in-place update's bytes are free once it resolved", async () => {
  // Small in-place pieces are staged (copied), big ones hashed where they lie: either way the
  // caller may reuse its buffer as soon as the promise resolved.
  for (const sizes of [[5, 700, 64 << 10, 3], [(64 << 10) - 1, 1 << 20, 9, 300_000]]) {
    const data = pattern(sizes.reduce((a, b) => a + b), sizes.length);
    const hash = createSha256Stream();
    const buf = new Uint8Array(1 << 20);
    for (let off = 0, i = 0; i < sizes.length; off += sizes[i++]) {
      const piece = buf.subarray(0, sizes[i]);
      piece.set(data.subarray(off, off + sizes[i]));
      await hash.updateInPlace(piece);
      buf.fill(0xee); // the next piece reuses the buffer
    }
    assert.deepEqual(await hash.digest(), reference(data), `pieces ${sizes.join(", ")}`);
  }
});

Deno.test("createSha256Stream: copied and in-place updates hash in call order", async () => {
  for (const n of [0, 5, 300_001, 9 << 20]) {
    const data = pattern(n, 7 * n + 3);
    assert.deepEqual(await streamed(data), reference(data), `length ${n}`);
  }
  const hash = createSha256Stream();
  await hash.digest();
  assert.throws(() => hash.update(new Uint8Array(1)), /already finished/);
});

Deno.test("createSha256Stream: node:crypto stands in where libcrypto is not used", async () => {
  // NIXCAS_NO_LIBCRYPTO is read once per process, so the fallback runs in a child.
  const code = `
    import { createSha256Stream } from ${
    JSON.stringify(new URL("../../src/hash/sha256.ts", import.meta.url).href)
  };
    const h = createSha256Stream();
    h.update(new TextEncoder().encode("a"));
    await h.updateInPlace(new TextEncoder().encode("bc"));
    const d = await h.digest();
    console.log(Array.from(d, (x) => x.toString(16).padStart(2, "0")).join(""));`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", code],
    env: { NIXCAS_NO_LIBCRYPTO: "1" },
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.equal(
    new TextDecoder().decode(out.stdout).trim(),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
});
