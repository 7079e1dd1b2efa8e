/**
 * BLAKE3 throughput: our wasm SIMD implementation against hash-wasm, in the same run.
 *
 * `deno run -A bench/blake3.ts`
 *
 * @module
 */
import { createBLAKE3 } from "hash-wasm";
import { Blake3, blake3Hash } from "../src/hash/blake3.ts";

const MiB = 1 << 20;
const STREAM_MIB = 256;
const SMALL_COUNT = 5000;

/** `n` pseudo-random bytes (getRandomValues fills at most 64 KiB per call). */
function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, i + 65536));
  return out;
}

/** Runs `fn` once to warm up, then times it; returns milliseconds. */
function time(fn: () => void): number {
  fn();
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

const block = randomBytes(MiB);
const small = Array.from(
  { length: SMALL_COUNT },
  () => randomBytes(200 + Math.floor(Math.random() * 2801)),
);
const smallBytes = small.reduce((n, b) => n + b.length, 0);
const hw = await createBLAKE3();

const cases: [string, number, () => void][] = [
  ["Blake3, 256 MiB in 1 MiB updates", STREAM_MIB * MiB, () => {
    const h = new Blake3();
    for (let i = 0; i < STREAM_MIB; i++) h.update(block);
    h.digest();
  }],
  ["hash-wasm, 256 MiB in 1 MiB updates", STREAM_MIB * MiB, () => {
    hw.init();
    for (let i = 0; i < STREAM_MIB; i++) hw.update(block);
    hw.digest("binary");
  }],
  [`blake3Hash, ${SMALL_COUNT} inputs of 200–3000 B`, smallBytes, () => {
    for (const b of small) blake3Hash(b);
  }],
  [`hash-wasm, ${SMALL_COUNT} inputs of 200–3000 B`, smallBytes, () => {
    for (const b of small) {
      hw.init();
      hw.update(b);
      hw.digest("binary");
    }
  }],
];

for (const [what, bytes, fn] of cases) {
  const ms = time(fn);
  const rate = bytes / 1e6 / (ms / 1000);
  console.log(
    `${what.padEnd(44)} ${ms.toFixed(1).padStart(8)} ms ${rate.toFixed(0).padStart(6)} MB/s`,
  );
}
