/**
 * Chunker throughput: FastCDC (castore/chunker.ts, 256 KiB / 1 MiB / 4 MiB) against BLAKE3 of
 * the same 256 MiB of random bytes, and the chunk sizes it cuts.
 *
 *   deno run -A bench/chunker.ts [--rows]
 *
 * @module
 */
import { chunkBuffer } from "../src/castore/chunker.ts";
import { blake3 } from "../src/castore/digest.ts";
import type { Row } from "./lib.ts";

const MIB = 256;
const data = new Uint8Array(MIB << 20);
for (let i = 0; i < data.length; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
const best = (f: () => void) => {
  let min = Infinity;
  for (let r = 0; r < 3; r++) {
    const t = performance.now();
    f();
    min = Math.min(min, performance.now() - t);
  }
  return min / 1000;
};
let chunks = 0;
const cdc = best(() => (chunks = chunkBuffer(data).length));
const b3 = best(() => blake3(data));
const rows: Row[] = [{
  what: `FastCDC chunking vs BLAKE3 of ${MIB} MiB (MiB/s; ${chunks} chunks, avg ${
    (MIB * 1024 / chunks).toFixed(0)
  } KiB)`,
  ours: (MIB / cdc).toFixed(0),
  reference: (MIB / b3).toFixed(0),
  ratio: (cdc / b3).toFixed(2) + " (time)",
}];
for (const r of rows) {
  console.log(`${r.what}: nixcas ${r.ours}, reference ${r.reference}, ratio ${r.ratio}`);
}
if (Deno.args.includes("--rows")) console.log(JSON.stringify(rows));
