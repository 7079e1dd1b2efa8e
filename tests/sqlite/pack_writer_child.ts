/**
 * Child of pack_test.ts: writes `count` blobs of 2.5 MiB, filled from `seed`, into the store at
 * `path`, and prints their digests.
 *
 * Usage: pack_writer_child.ts <path> <seed> <count>
 *
 * @module
 */
import { SqliteBlobService } from "../../src/backends/sqlite/blob.ts";

const [path, seed, count] = Deno.args;
const blobs = new SqliteBlobService(path);
for (let i = 0; i < Number(count); i++) {
  const data = new Uint8Array(2.5 * 1024 * 1024).fill(Number(seed) * 16 + i);
  const w = await blobs.openWrite();
  for (let o = 0; o < data.length; o += 300_000) await w.write(data.subarray(o, o + 300_000));
  console.log((await w.close()).toString());
}
await blobs.close();
