import assert from "node:assert/strict";
import { createBLAKE3 } from "hash-wasm";
import {
  Blake3,
  blake3Hash,
  HASH_BUFFER_LEN,
  returnHashBuffer,
  takeHashBuffer,
} from "../../src/hash/blake3.ts";
import { have } from "../prereq.ts";
import { concat } from "../../src/base/bytes.ts";

const MiB = 1 << 20;

const hex = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

/**
 * The official BLAKE3 test vectors (test_vectors/test_vectors.json in the BLAKE3 repository):
 * input length and the first 32 bytes of the hash of bytes `i % 251`.
 */
const VECTORS: [number, string][] = [
  [0, "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"],
  [1, "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213"],
  [1023, "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11"],
  [1024, "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7"],
  [1025, "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444"],
  [2048, "e776b6028c7cd22a4d0ba182a8bf62205d2ef576467e838ed6f2529b85fba24a"],
  [2049, "5f4d72f40d7a5f82b15ca2b2e44b1de3c2ef86c426c95c1af0b6879522563030"],
  [3072, "b98cb0ff3623be03326b373de6b9095218513e64f1ee2edd2525c7ad1e5cffd2"],
  [3073, "7124b49501012f81cc7f11ca069ec9226cecb8a2c850cfe644e327d22d3e1cd3"],
  [4096, "015094013f57a5277b59d8475c0501042c0b642e531b0a1c8f58d2163229e969"],
  [4097, "9b4052b38f1c5fc8b1f9ff7ac7b27cd242487b3d890d15c96a1c25b8aa0fb995"],
  [5120, "9cadc15fed8b5d854562b26a9536d9707cadeda9b143978f319ab34230535833"],
  [5121, "628bd2cb2004694adaab7bbd778a25df25c47b9d4155a55f8fbd79f2fe154cff"],
  [6144, "3e2e5b74e048f3add6d21faab3f83aa44d3b2278afb83b80b3c35164ebeca205"],
  [6145, "f1323a8631446cc50536a9f705ee5cb619424d46887f3c376c695b70e0f0507f"],
  [7168, "61da957ec2499a95d6b8023e2b0e604ec7f6b50e80a9678b89d2628e99ada77a"],
  [7169, "a003fc7a51754a9b3c7fae0367ab3d782dccf28855a03d435f8cfe74605e7817"],
  [8192, "aae792484c8efe4f19e2ca7d371d8c467ffb10748d8a5a1ae579948f718a2a63"],
  [8193, "bab6c09cb8ce8cf459261398d2e7aef35700bf488116ceb94a36d0f5f1b7bc3b"],
  [16384, "f875d6646de28985646f34ee13be9a576fd515f76b5b0a26bb324735041ddde4"],
  [31744, "62b6960e1a44bcc1eb1a611a8d6235b6b4b78f32e7abc4fb4c6cdcce94895c47"],
  [102400, "bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085"],
];

/** A deterministic generator (xorshift32), so that a failure can be reproduced. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>>= 0);
  };
}

/** `n` pseudo-random bytes. */
function randomBytes(n: number, seed: number): Uint8Array {
  const next = rng(seed);
  const out = new Uint8Array(n);
  const words = new Uint32Array(out.buffer, 0, n >> 2);
  for (let i = 0; i < words.length; i++) words[i] = next();
  for (let i = words.length * 4; i < n; i++) out[i] = next() & 0xff;
  return out;
}

/** Feeds `data` to a new hasher in pieces of the given sizes, cycling through them. */
function hashInPieces(data: Uint8Array, sizes: number[]): Uint8Array {
  const h = new Blake3();
  for (let pos = 0, i = 0; pos < data.length; i++) {
    const size = sizes[i % sizes.length];
    h.update(data.subarray(pos, pos + size));
    pos += size;
  }
  return h.digest();
}

const hashWasm = await createBLAKE3();

/** The reference: hash-wasm's BLAKE3. */
function reference(data: Uint8Array): string {
  hashWasm.init();
  hashWasm.update(data);
  return hashWasm.digest("hex");
}

Deno.test("blake3: official test vectors, one-shot and streamed", () => {
  for (const [len, want] of VECTORS) {
    const data = Uint8Array.from({ length: len }, (_, i) => i % 251);
    assert.equal(hex(blake3Hash(data)), want, `blake3Hash, length ${len}`);
    assert.equal(hex(new Blake3().update(data).digest()), want, `one update, length ${len}`);
    for (const sizes of [[1], [7], [64], [1000], [1024], [4097]]) {
      assert.equal(hex(hashInPieces(data, sizes)), want, `length ${len} in pieces of ${sizes}`);
    }
  }
});

Deno.test("blake3: agrees with hash-wasm on many sizes and update splits", () => {
  const sizes = [
    0,
    1,
    63,
    64,
    65,
    1023,
    1024,
    1025,
    2047,
    2048,
    2049,
    3000,
    3072,
    4095,
    4096,
    4097,
    5 * 1024 + 17,
    8192,
    16383,
    16384,
    16385,
    65536,
    65537,
    200_000,
    MiB - 1,
    MiB,
    MiB + 1,
    3 * MiB + 12345,
    5 * MiB + 7,
  ];
  const splits = [[7], [1000], [1024], [4096, 1], [16384], [16385], [65537], [MiB], [
    1,
    2,
    3,
    1021,
    5000,
    70_000,
  ]];
  for (const [i, size] of sizes.entries()) {
    const data = randomBytes(size, 1000 + i);
    const want = reference(data);
    assert.equal(hex(blake3Hash(data)), want, `blake3Hash, size ${size}`);
    assert.equal(hex(new Blake3().update(data).digest()), want, `one update, size ${size}`);
    if (size <= MiB + 1) {
      assert.equal(hex(hashInPieces(data, [1])), want, `size ${size} byte by byte`);
    }
    for (const split of splits) {
      assert.equal(hex(hashInPieces(data, split)), want, `size ${size} in pieces of ${split}`);
    }
  }
});

Deno.test("blake3: random sizes and random splits agree with hash-wasm", () => {
  const next = rng(42);
  for (let round = 0; round < 200; round++) {
    const size = round < 150 ? next() % 20_000 : next() % (3 * MiB);
    const data = randomBytes(size, round);
    const want = reference(data);
    assert.equal(hex(blake3Hash(data)), want, `blake3Hash, round ${round}, size ${size}`);
    const h = new Blake3();
    for (let pos = 0; pos < size;) {
      const piece = next() % (next() % 2 ? 300 : 200_000);
      h.update(data.subarray(pos, pos + piece));
      pos += piece;
    }
    assert.equal(hex(h.digest()), want, `streamed, round ${round}, size ${size}`);
  }
});

Deno.test("blake3: input in hash buffers (hashed where it lies) agrees with hash-wasm", () => {
  // Several buffers at once, as an import holds them: each filled, then fed whole or in parts
  // (a part may start anywhere in a buffer), interleaved with ordinary input.
  const bufs = [takeHashBuffer(), takeHashBuffer(), takeHashBuffer()];
  try {
    assert.ok(bufs.every((b) => b.length === HASH_BUFFER_LEN));
    for (const [i, b] of bufs.entries()) b.set(randomBytes(HASH_BUFFER_LEN, 500 + i));
    const whole = (n: number) => bufs.slice(0, n).map((b) => b.slice());
    for (
      const [label, pieces] of [
        ["one buffer", [bufs[0]]],
        ["three buffers", bufs],
        ["odd parts", [bufs[0].subarray(0, 7), bufs[0].subarray(7), bufs[1].subarray(0, 4097)]],
        ["after ordinary input", [new Uint8Array(3000).fill(1), bufs[2], bufs[1].subarray(5)]],
        ["a part", [bufs[1].subarray(1000, 1000 + 3 * 1024 + 5)]],
      ] as [string, Uint8Array[]][]
    ) {
      const h = new Blake3();
      for (const p of pieces) h.update(p);
      assert.equal(hex(h.digest()), reference(concat(pieces.map((p) => p.slice()))), label);
    }
    // The buffers were only read.
    assert.deepEqual(bufs.map((b) => b.slice()), whole(3));
  } finally {
    for (const b of bufs) returnHashBuffer(b);
  }
  // Given back, they are handed out again.
  const again = takeHashBuffer();
  assert.ok(bufs.includes(again));
  returnHashBuffer(again);
});

Deno.test("blake3: a 64 MiB buffer in one call", () => {
  const data = randomBytes(64 * MiB, 7);
  const want = reference(data);
  assert.equal(hex(blake3Hash(data)), want);
  assert.equal(hex(new Blake3().update(data).digest()), want);
});

Deno.test("blake3: a 40 MiB file streamed in 1 MiB updates matches b3sum", async () => {
  if (!have("BLAKE3 against b3sum", ["b3sum"])) return;
  const path = await Deno.makeTempFile({ prefix: "nixcas-blake3-" });
  try {
    const data = randomBytes(40 * MiB + 12345, 99);
    await Deno.writeFile(path, data);
    const out = await new Deno.Command("b3sum", { args: ["--no-names", path], stdout: "piped" })
      .output();
    assert.ok(out.success);
    const want = new TextDecoder().decode(out.stdout).trim();
    const h = new Blake3();
    using file = await Deno.open(path);
    const buf = new Uint8Array(MiB);
    for (let n = await file.read(buf); n !== null; n = await file.read(buf)) {
      h.update(buf.subarray(0, n));
    }
    assert.equal(hex(h.digest()), want);
    assert.equal(hex(blake3Hash(data)), want);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("blake3: interleaved hashers give the same results as sequential ones", () => {
  const next = rng(5);
  const inputs = Array.from(
    { length: 40 },
    (_, i) => randomBytes(next() % (i < 30 ? 9000 : MiB), i),
  );
  const want = inputs.map((d) => hex(blake3Hash(d)));
  const hashers = inputs.map(() => new Blake3());
  const pos = inputs.map(() => 0);
  for (let left = inputs.length; left > 0;) {
    const i = next() % inputs.length;
    if (pos[i] > inputs[i].length) continue;
    const piece = next() % (next() % 2 ? 1500 : 100_000);
    hashers[i].update(inputs[i].subarray(pos[i], pos[i] + piece));
    pos[i] += piece;
    if (pos[i] > inputs[i].length) left--;
    // Digests in the middle must not disturb anything either.
    if (next() % 8 === 0) hashers[i].digest();
    // Neither must one-shot hashes, which share the scratch memory.
    if (next() % 8 === 0) blake3Hash(inputs[next() % inputs.length]);
  }
  assert.deepEqual(hashers.map((h) => hex(h.digest())), want);
});

Deno.test("blake3: digest can be repeated and input can follow it", () => {
  const data = randomBytes(3 * MiB + 999, 11);
  for (const cut of [0, 1, 1024, 5000, 16384, 16385, MiB, MiB + 1, 2 * MiB + 3]) {
    const h = new Blake3().update(data.subarray(0, cut));
    const first = hex(h.digest());
    assert.equal(first, reference(data.subarray(0, cut)), `prefix ${cut}`);
    assert.equal(hex(h.digest()), first, `digest twice, prefix ${cut}`);
    h.update(data.subarray(cut));
    assert.equal(hex(h.digest()), reference(data), `continued after ${cut}`);
  }
});

Deno.test("blake3: reset() makes a hasher reusable", () => {
  const h = new Blake3();
  for (const [i, size] of [0, 5, 1024, 3000, 16384, 20_000, MiB + 5, 77].entries()) {
    const data = randomBytes(size, 300 + i);
    h.update(randomBytes(i * 10_000, 400 + i));
    h.reset();
    h.update(data);
    assert.equal(hex(h.digest()), reference(data), `size ${size}`);
    h.reset();
  }
  assert.equal(hex(h.digest()), VECTORS[0][1]);
});

Deno.test("blake3: returned digests are independent copies", () => {
  const a = blake3Hash(new Uint8Array([1]));
  const b = blake3Hash(new Uint8Array([2]));
  const c = new Blake3().update(new Uint8Array([1])).digest();
  assert.notEqual(hex(a), hex(b));
  assert.equal(hex(a), hex(c));
  assert.equal(a.buffer.byteLength, 32);
});

Deno.test("the stored wasm module is the one blake3_gen.ts emits", async () => {
  const { BLAKE3_WASM } = await import("../../src/hash/blake3_wasm.ts");
  const { buildBlake3Wasm } = await import("../../scripts/blake3_gen.ts");
  const stored = Uint8Array.from(atob(BLAKE3_WASM), (c) => c.charCodeAt(0));
  assert.deepEqual(stored, buildBlake3Wasm(), "stale: run deno task gen");
});
