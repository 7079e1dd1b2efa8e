/**
 * The child of the streamed round trips in compression_test.ts: streams `MIB` MiB of
 * compressible data (never whole in memory) through compress and decompress of `KIND` at
 * `LEVEL`, and prints `{grew, bytes, same}`: the RSS growth in MiB, the bytes that came out, and
 * whether they equal what went in.
 *
 *   deno run -A tests/compress/roundtrip_child.ts KIND MIB LEVEL
 */
import { createHash } from "node:crypto";
import {
  type Compression,
  compressStream,
  decompressStream,
} from "../../src/compress/compression.ts";
import { OUT_SIZE } from "../../src/compress/pump.ts";
import { bytes } from "../fixtures.ts";

const [kind, mibText, levelText] = Deno.args;
const mib = Number(mibText);

function compressible(n: number, seed: number): Uint8Array {
  const words = ["nix", "store", "/lib/", "hello", "\n", "0123", "libc.so.6", " ", "{}", "\0\0"];
  const noise = bytes(n, seed);
  const out = new Uint8Array(n);
  const coded = words.map((w) => new TextEncoder().encode(w));
  for (let i = 0; i < n;) {
    const w = coded[noise[i] % coded.length];
    out.set(w.subarray(0, n - i), i);
    i += w.length;
  }
  return out;
}

/** `mib` MiB of compressible data, made chunk by chunk (never whole in memory). */
function bigSource(mib: number): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(c) {
      if (i === mib) return c.close();
      c.enqueue(compressible(1 << 20, 1000 + i++));
    },
  }, { highWaterMark: 0 });
}

async function streamedRoundTrip(kind: Compression, mib: number, level: number) {
  const expected = createHash("sha256");
  const source = bigSource(mib).pipeThrough(
    new TransformStream({
      transform(chunk, c) {
        expected.update(chunk);
        c.enqueue(chunk);
      },
    }),
  );
  const got = createHash("sha256");
  let n = 0;
  const rss0 = Deno.memoryUsage().rss;
  let peak = rss0;
  const out = source.pipeThrough(compressStream(kind, { level })).pipeThrough(
    decompressStream(kind),
  );
  for await (const chunk of out) {
    if (chunk.length > OUT_SIZE) throw new Error(`a chunk of ${chunk.length} bytes`);
    got.update(chunk);
    n += chunk.length;
    if ((n & 0xfffff) < chunk.length) peak = Math.max(peak, Deno.memoryUsage().rss);
  }
  const grew = (peak - rss0) / 1048576;
  return { grew, bytes: n, same: got.digest("hex") === expected.digest("hex") };
}

console.log(JSON.stringify(await streamedRoundTrip(kind as Compression, mib, Number(levelText))));
