/**
 * The child of the 512 MiB ingest in ingest_test.ts: ingests into `sqlite://DIR/store.db` the NAR
 * `DIR/header.bin`, `SIZE` bytes of contents made on the fly (never held whole), `DIR/trailer.bin`,
 * given as chunks (`generator`) or through a reader (`reader`), and prints
 * `{grew, narSize, narSha256, node}`: the RSS growth in MiB, the NAR's size and SHA-256 (hex) as
 * ingest computed them, and the root node (a Node message, base64).
 *
 *   deno run -A tests/nar/ingest_child.ts MODE DIR SIZE
 *
 * @module
 */
import { toBase64, toHex } from "../../src/base/bytes.ts";
import { toBinary } from "@bufbuild/protobuf";
import { openStore } from "../../src/backends/open.ts";
import { toNodeMessage } from "../../src/castore/directory.ts";
import { NodeSchema } from "../../src/gen/tvix/castore/protos/castore_pb.ts";
import { ingestNar, type NarReader } from "../../src/nar/ingest.ts";
import { bytes } from "../fixtures.ts";

/**
 * The NAR `header`, `size` bytes of contents, `trailer`: its length, and `produce(at, out)`
 * writing its bytes from `at` into `out` (as many as fit) and returning how many.
 */
export function bigNar(header: Uint8Array, size: number, trailer: Uint8Array) {
  const base = bytes(1 << 20, 77);
  const total = header.length + size + trailer.length;
  const produce = (at: number, out: Uint8Array): number => {
    const n = Math.min(out.length, total - at);
    for (let o = 0; o < n;) {
      const p = at + o;
      let part: Uint8Array;
      if (p < header.length) part = header.subarray(p);
      else if (p >= header.length + size) part = trailer.subarray(p - header.length - size);
      else {
        const c = p - header.length; // contents: `base` with each MiB's index in its first bytes
        const mib = Math.floor(c / (1 << 20));
        const inMib = c % (1 << 20);
        part = base.subarray(inMib, Math.min(1 << 20, inMib + (header.length + size - p)));
        if (inMib < 2) {
          part = part.slice();
          const idx = [mib & 0xff, (mib >> 8) & 0xff];
          for (let i = inMib; i < 2; i++) part[i - inMib] = idx[i];
        }
      }
      const k = Math.min(part.length, n - o);
      out.set(part.subarray(0, k), o);
      o += k;
    }
    return n;
  };
  return { total, produce };
}

async function main(mode: string, dir: string, size: number) {
  if (mode !== "reader" && mode !== "generator") throw new Error(`unknown mode ${mode}`);
  const { total, produce } = bigNar(
    Deno.readFileSync(`${dir}/header.bin`),
    size,
    Deno.readFileSync(`${dir}/trailer.bin`),
  );
  let peak = 0;
  const sample = () => peak = Math.max(peak, Deno.memoryUsage().rss);
  let at = 0;
  // Fresh chunks for the generator (ingest owns what it is given).
  const generate = async function* () {
    while (at < total) {
      const chunk = new Uint8Array(Math.min(1 << 20, total - at));
      at += produce(at, chunk);
      if ((at >> 20) % 16 === 0) sample();
      yield chunk;
    }
  };
  const reader: NarReader = {
    read(p) {
      if (at === total) return Promise.resolve(null);
      const n = produce(at, p);
      at += n;
      if ((at >> 20) % 16 === 0) sample();
      return Promise.resolve(n);
    },
  };
  const store = await openStore(`sqlite://${dir}/store.db`);
  try {
    const before = Deno.memoryUsage().rss;
    const r = await ingestNar(
      mode === "reader" ? reader : generate(),
      store.blobs,
      store.directories,
    );
    sample();
    return {
      grew: (peak - before) / (1 << 20),
      narSize: r.narSize,
      narSha256: toHex(r.narSha256),
      node: toBase64(toBinary(NodeSchema, toNodeMessage(r.node))),
    };
  } finally {
    await store.close();
  }
}

if (import.meta.main) {
  const [mode, dir, size] = Deno.args;
  console.log(JSON.stringify(await main(mode, dir, Number(size))));
}
