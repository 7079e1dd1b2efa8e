/**
 * Child of small_blobs_test.ts: stores small blobs into the store at `path` until killed, and
 * prints `digest seed size` for each once it is committed.
 *
 * Usage: small_blob_child.ts <path>
 *
 * @module
 */
import { SqliteBlobService } from "../../src/backends/sqlite/blob.ts";
import { putSmallBlob } from "../../src/castore/blob_util.ts";

// The same bytes as the test's `bytes`.
function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const blobs = new SqliteBlobService(Deno.args[0]);
const out = Deno.stdout;
const enc = new TextEncoder();
for (let seed = 0;; seed++) {
  const size = [100, 5000, 32 << 10, 70_000][seed % 4];
  const { digest, stored } = putSmallBlob(blobs, bytes(size, seed));
  // Reported only once committed; the next blobs are stored meanwhile.
  stored.then(() => out.writeSync(enc.encode(`${digest} ${seed} ${size}\n`)));
  if (seed % 16 === 15) await new Promise((r) => setTimeout(r, 0));
}
