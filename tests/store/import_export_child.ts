/**
 * The child of the 256 MiB readExport in import_export_test.ts: reads into
 * `sqlite://DIR/store.db`, through a reader, the export stream `DIR/head.bin`, `SIZE` bytes of
 * file contents made on the fly (never held whole), `DIR/tail.bin`, and prints `{grew, paths}`:
 * the RSS growth in MiB and the store paths readExport returned.
 *
 *   deno run -A tests/store/import_export_child.ts DIR SIZE
 *
 * @module
 */
import { openStore } from "../../src/backends/open.ts";
import type { NarReader } from "../../src/nar/ingest.ts";
import { readExport } from "../../src/store/import_export.ts";
import { bytes } from "../fixtures.ts";

const [dir, sizeText] = Deno.args;
const size = Number(sizeText);
const head = Deno.readFileSync(`${dir}/head.bin`);
const tail = Deno.readFileSync(`${dir}/tail.bin`);
const block = bytes(1 << 20, 9);
const total = head.length + size + tail.length;
let at = 0;
let peak = 0;
const source: NarReader = {
  read(p) {
    if (at === total) return Promise.resolve(null);
    let n: number;
    if (at < head.length) {
      n = Math.min(p.length, head.length - at);
      p.set(head.subarray(at, at + n));
    } else if (at < head.length + size) {
      const c = at - head.length;
      n = Math.min(p.length, (1 << 20) - (c % (1 << 20)), size - c);
      p.set(block.subarray(c % (1 << 20), c % (1 << 20) + n));
    } else {
      const c = at - head.length - size;
      n = Math.min(p.length, tail.length - c);
      p.set(tail.subarray(c, c + n));
    }
    at += n;
    if ((at & ((16 << 20) - 1)) < n) peak = Math.max(peak, Deno.memoryUsage().rss);
    return Promise.resolve(n);
  },
};
const store = await openStore(`sqlite://${dir}/store.db`);
try {
  const before = Deno.memoryUsage().rss;
  const paths = await readExport(source, store);
  peak = Math.max(peak, Deno.memoryUsage().rss);
  console.log(JSON.stringify({
    grew: (peak - before) / (1 << 20),
    paths: paths.map(String),
  }));
} finally {
  await store.close();
}
