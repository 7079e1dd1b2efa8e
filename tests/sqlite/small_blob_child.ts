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
import { bytes } from "../fixtures.ts";

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
