/**
 * Writes a blob of N MiB (generated on the fly, never held whole) into an SQLite blob service
 * and reads it back, printing throughput as JSON. Run as a child process so its peak RSS is its
 * own. Usage: deno run -A bench/sqlite_blob.ts DB_PATH MIB
 *
 * @module
 */
import { SqliteBlobService } from "../src/backends/sqlite/blob.ts";

const [path, mibArg] = Deno.args;
const mib = Number(mibArg);
const svc = new SqliteBlobService(path);
const chunk = new Uint8Array(1 << 20);
crypto.getRandomValues(chunk.subarray(0, 65536));
let t = performance.now();
const w = await svc.openWrite();
for (let i = 0; i < mib; i++) {
  chunk[0] = i & 0xff;
  chunk[1] = i >> 8;
  await w.write(chunk);
}
const digest = await w.close();
const writeSecs = (performance.now() - t) / 1000;
t = performance.now();
const r = await svc.openRead(digest);
let n = 0;
for await (const c of r!.chunks()) n += c.length;
const readSecs = (performance.now() - t) / 1000;
if (n !== mib << 20) throw new Error(`read ${n} bytes, wrote ${mib << 20}`);
await svc.close();
console.log(JSON.stringify({ writeMiBs: mib / writeSecs, readMiBs: mib / readSecs }));
