/**
 * Streaming (de)compression: round trips of every format at sizes around the staging buffers,
 * agreement with the Debian `xz`, `zstd` and `bzip2` commands both ways, concatenated streams,
 * and loud failures on truncated, corrupt, foreign and trailing data.
 */
import assert from "node:assert/strict";
import { DecompressionError, InvalidRequestError } from "../../src/base/errors.ts";
import {
  compress,
  type Compression,
  compressionOfFileName,
  COMPRESSIONS,
  compressionSuffix,
  decompress,
  parseCompression,
} from "../../src/compress/compression.ts";
import { IN_SIZE, OUT_SIZE } from "../../src/compress/pump.ts";
import { runJsonChild } from "../child.ts";
import { bytes } from "../fixtures.ts";
import { have, slow } from "../prereq.ts";

const CODECS = ["xz", "zstd", "bzip2"] as const;
type Codec = typeof CODECS[number];
const BIN: Record<Codec, string> = { xz: "xz", zstd: "zstd", bzip2: "bzip2" };
const HAVE_BINS = have("compression cross-checks", ["xz", "zstd", "bzip2"]);

/** `data` as a stream of `chunk`-byte pieces (copies, as a socket would give them). */
function streamOf(data: Uint8Array, chunk = 65536): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(c) {
      if (at >= data.length) return c.close();
      c.enqueue(data.slice(at, at + chunk));
      at += chunk;
    },
  }, { highWaterMark: 0 });
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return await new Response(stream).bytes();
}

/** Text-like bytes: words from a small vocabulary, so they compress 3–5x as NARs do. */
function compressible(n: number, seed: number): Uint8Array {
  const words = ["nix", "store", "/lib/", "hello", "\n", "0123", "libc.so.6", " ", "{}", "\0\0"];
  const noise = bytes(n, seed);
  const out = new Uint8Array(n);
  const enc = new TextEncoder();
  const coded = words.map((w) => enc.encode(w));
  for (let i = 0; i < n;) {
    const w = coded[noise[i] % coded.length];
    out.set(w.subarray(0, n - i), i);
    i += w.length;
  }
  return out;
}

async function roundTrip(kind: Compression, data: Uint8Array, chunk?: number) {
  const packed = await collect(compress(kind, streamOf(data, chunk)));
  const back = await collect(decompress(kind, streamOf(packed, chunk)));
  assert.equal(back.length, data.length, `${kind}: length after a round trip`);
  assert.deepEqual(back, data, `${kind}: bytes after a round trip of ${data.length}`);
  return packed;
}

/** Runs a compression command on a file; stdout is read while it runs. */
async function command(cmd: string, args: string[], input: Uint8Array): Promise<Uint8Array> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/in`, input);
    const out = await new Deno.Command(cmd, {
      args: [...args, `${dir}/in`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
    }
    return out.stdout;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The error the stream fails with (and that it does fail). */
async function failure(stream: ReadableStream<Uint8Array>): Promise<unknown> {
  try {
    await collect(stream);
  } catch (e) {
    return e;
  }
  assert.fail("the stream ended without an error");
}

const SIZES = [0, 1, 1000, IN_SIZE - 1, IN_SIZE + 1, OUT_SIZE + 7, 3 * 1024 * 1024 + 5];

for (const kind of COMPRESSIONS) {
  Deno.test(`${kind}: round trips of random and compressible data, ${SIZES.join(", ")} bytes`, async () => {
    for (const [i, n] of SIZES.entries()) {
      await roundTrip(kind, bytes(n, i + 1));
      const text = compressible(n, i + 1);
      const packed = await roundTrip(kind, text);
      if (kind !== "none" && n > 100_000) {
        assert.ok(packed.length < n / 2, `${kind}: ${n} compressible bytes gave ${packed.length}`);
      }
    }
  });
}

Deno.test("round trips through odd source chunk sizes (1 byte, 7,777 bytes, 1 MiB)", async () => {
  const data = compressible(600_000, 9);
  for (const kind of CODECS) {
    await roundTrip(kind, data.subarray(0, 3000), 1);
    await roundTrip(kind, data, 7777);
    await roundTrip(kind, data, 1 << 20);
  }
});

Deno.test("every level and threads > 1 round-trip; out-of-range options are refused", async () => {
  const data = compressible(200_000, 3);
  for (
    const [kind, levels] of [["xz", [0, 9]], ["zstd", [-7, 1, 19, 22]], ["bzip2", [1, 9]]] as const
  ) {
    for (const level of levels) {
      const packed = await collect(compress(kind, streamOf(data), { level }));
      assert.deepEqual(
        await collect(decompress(kind, streamOf(packed))),
        data,
        `${kind} -${level}`,
      );
    }
  }
  for (const kind of ["xz", "zstd"] as const) {
    const big = compressible(30 << 20, 4);
    const packed = await collect(compress(kind, streamOf(big, 1 << 20), { level: 1, threads: 2 }));
    assert.deepEqual(await collect(decompress(kind, streamOf(packed))), big, `${kind} threads 2`);
  }
  assert.throws(() => compress("xz", streamOf(data), { level: 10 }), InvalidRequestError);
  assert.throws(
    () => compress("bzip2", streamOf(data), { level: 0 }),
    /bzip2: compression level 0/,
  );
  assert.throws(() => compress("zstd", streamOf(data), { level: 1.5 }), InvalidRequestError);
  assert.throws(() => compress("zstd", streamOf(data), { threads: 0 }), InvalidRequestError);
});

Deno.test({
  name: "our output decompresses with xz, zstd and bzip2; theirs with us",
  ignore: !HAVE_BINS,
  fn: async () => {
    const data = compressible(2 * 1024 * 1024 + 3, 5);
    for (const kind of CODECS) {
      const ours = await collect(compress(kind, streamOf(data)));
      assert.deepEqual(await command(BIN[kind], ["-dc"], ours), data, `${BIN[kind]} -d of ours`);
      const empty = await collect(compress(kind, streamOf(new Uint8Array())));
      assert.equal((await command(BIN[kind], ["-dc"], empty)).length, 0, `${kind}: empty`);
      for (const args of [["-c"], ["-1", "-c"], ["-9", "-c"]]) {
        const theirs = await command(BIN[kind], args, data);
        assert.deepEqual(await collect(decompress(kind, streamOf(theirs, 4096))), data);
      }
    }
    // Multi-block xz (as `xz -T2` writes it) and zstd without a checksum or content size.
    const blocks = await command("xz", ["-c", "-T2", "--block-size=300KiB"], data);
    assert.deepEqual(await collect(decompress("xz", streamOf(blocks))), data);
    const bare = await command("zstd", ["-c", "--no-check", "--no-content-size"], data);
    assert.deepEqual(await collect(decompress("zstd", streamOf(bare))), data);
    const empty = await command("xz", ["-c"], new Uint8Array());
    assert.equal((await collect(decompress("xz", streamOf(empty)))).length, 0);
  },
});

Deno.test({
  name: "concatenated streams decode as one, as the commands read them",
  ignore: !HAVE_BINS,
  fn: async () => {
    const parts = [compressible(100_000, 1), bytes(5000, 2), new Uint8Array(), compressible(10, 3)];
    const whole = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (whole.set(p, at), at + p.length), 0);
    for (const kind of CODECS) {
      const packed: Uint8Array[] = [];
      for (const p of parts) packed.push(await collect(compress(kind, streamOf(p))));
      if (kind === "xz") packed.splice(2, 0, new Uint8Array(8)); // stream padding between streams
      if (kind === "xz") packed.push(new Uint8Array(4)); // and at the end
      const joined = await collect(new Blob(packed as Uint8Array<ArrayBuffer>[]).stream());
      assert.deepEqual(await command(BIN[kind], ["-dc"], joined), whole, `${kind} -d agrees`);
      for (const chunk of [1, 999, 1 << 20]) {
        if (chunk === 1 && kind !== "xz") continue;
        const back = await collect(decompress(kind, streamOf(joined, chunk)));
        assert.deepEqual(back, whole, `${kind}: concatenated, chunks of ${chunk}`);
      }
    }
  },
});

Deno.test("truncated input errors at every cut, naming the format, never ends short", async () => {
  const data = compressible(700_000, 6);
  for (const kind of CODECS) {
    const packed = await collect(compress(kind, streamOf(data)));
    const cuts = [0, 1, 5, 20, packed.length >> 1, packed.length - 5, packed.length - 1];
    for (const cut of cuts) {
      const e = await failure(decompress(kind, streamOf(packed.subarray(0, cut))));
      assert.ok(e instanceof DecompressionError, `${kind} cut at ${cut}: ${e}`);
      assert.ok(e instanceof InvalidRequestError);
      assert.equal(e.format, kind);
      assert.ok(e.offset <= cut, `${kind} cut at ${cut}: offset ${e.offset}`);
      assert.match(e.message, new RegExp(`^${kind}: (truncated|corrupt)`), e.message);
      if (cut === 0) assert.equal(e.message, `${kind}: truncated: no compressed data`);
    }
    const e = await failure(decompress(kind, streamOf(packed.subarray(0, packed.length - 1))));
    assert.ok(e instanceof DecompressionError);
    if (kind !== "bzip2") { // bzip2's last byte is its CRC's: without it the CRC is "corrupt"
      assert.equal(
        e.message,
        `${kind}: truncated: the compressed data ends at byte ${
          packed.length - 1
        }, inside a stream`,
      );
    }
  }
});

Deno.test("corrupt input errors with the compressed offset; a prefix at most comes out", async () => {
  const data = compressible(1_500_000, 7);
  for (const kind of CODECS) {
    const packed = await collect(compress(kind, streamOf(data)));
    for (const at of [packed.length >> 2, packed.length >> 1, packed.length - 10]) {
      const bad = packed.slice();
      bad[at] ^= 0x55;
      let out = 0;
      const reader = decompress(kind, streamOf(bad)).getReader();
      let error: unknown;
      try {
        for (let r = await reader.read(); !r.done; r = await reader.read()) out += r.value.length;
      } catch (e) {
        error = e;
      }
      assert.ok(error instanceof DecompressionError, `${kind}: flip at ${at}: ${error}`);
      assert.match(error.message, new RegExp(`^${kind}: corrupt data .*at compressed byte \\d+$`));
      assert.ok(error.offset >= 0 && error.offset <= packed.length, `${error.offset}`);
      assert.ok(out < data.length, `${kind}: flip at ${at}: all ${out} bytes came out`);
    }
  }
});

Deno.test("foreign and trailing data are refused, with the offset", async () => {
  const text = new TextEncoder().encode("this is not compressed at all, just text\n".repeat(20));
  for (const kind of CODECS) {
    const e = await failure(decompress(kind, streamOf(text)));
    assert.ok(e instanceof DecompressionError);
    assert.match(e.message, new RegExp(`^${kind}: not ${kind} data .*at compressed byte 0\\)$`));
    const packed = await collect(compress(kind, streamOf(text)));
    const trailing = new Uint8Array([...packed, ...new TextEncoder().encode("garbage!")]);
    const t = await failure(decompress(kind, streamOf(trailing)));
    assert.ok(t instanceof DecompressionError, `${kind}: ${t}`);
    assert.equal(t.offset, packed.length, `${kind}: ${t.message}`);
    assert.equal(
      t.message,
      `${kind}: trailing data that is not ${kind} at compressed byte ${packed.length}`,
    );
  }
  // xz stream padding comes in multiples of 4 bytes.
  const xz = await collect(compress("xz", streamOf(text)));
  const padded = await failure(decompress("xz", streamOf(new Uint8Array([...xz, 0, 0, 0]))));
  assert.ok(padded instanceof DecompressionError);
  assert.match(
    padded.message,
    /^xz: corrupt data \(stream padding of 3 bytes, not a multiple of 4\)/,
  );
});

Deno.test("cancelling a stream cancels its source; a source's error comes through", async () => {
  const data = compressible(4 << 20, 8);
  for (const kind of CODECS) {
    const packed = await collect(compress(kind, streamOf(data), { level: 1 }));
    let cancelled: unknown = null;
    let at = 0;
    const source = new ReadableStream<Uint8Array>({
      pull(c) {
        c.enqueue(packed.slice(at, at + 4096));
        at += 4096;
        if (at >= packed.length) c.close();
      },
      cancel(reason) {
        cancelled = reason;
      },
    });
    const reader = decompress(kind, source).getReader();
    assert.equal((await reader.read()).done, false);
    await reader.cancel("enough");
    assert.equal(cancelled, "enough");
    assert.ok(at < packed.length, `${kind}: the whole input was read after a cancel`);

    // Cancelled while the library is still starting (the first read is in flight).
    const early = compress(kind, streamOf(data)).getReader();
    const first = early.read();
    await early.cancel("at once");
    assert.equal((await first).done, true);

    const boom = new Error("the network went away");
    const failing = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(packed.slice(0, 10000));
        c.error(boom);
      },
    });
    assert.equal(await failure(decompress(kind, failing)), boom);
    assert.equal(
      await failure(compress(kind, new ReadableStream({ start: (c) => c.error(boom) }))),
      boom,
    );
  }
});

Deno.test("the event loop keeps running while xz compresses on the thread pool", async () => {
  // At xz -6's ≈2 MiB/s, one 256 KiB step is ≈100 ms of work: on this thread, few timer ticks
  // could fire; on the thread pool, they fire throughout.
  const data = bytes(1 << 20, 10);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 2);
  const t0 = performance.now();
  try {
    await collect(compress("xz", streamOf(data)));
  } finally {
    clearInterval(timer);
  }
  const ms = performance.now() - t0;
  const steps = Math.ceil(data.length / IN_SIZE) + 2;
  assert.ok(ticks > 4 * steps, `${ticks} timer ticks in ${ms.toFixed(0)} ms (${steps} steps)`);
});

/**
 * Streams `mib` MiB through compress and decompress in a child process of its own (so that no
 * other test file shares the RSS it measures) and checks its memory stayed flat.
 */
async function streamedRoundTrip(kind: Codec, mib: number, level: number) {
  const { grew, bytes: n, same } = await runJsonChild<
    { grew: number; bytes: number; same: boolean }
  >(new URL("./roundtrip_child.ts", import.meta.url), [kind, `${mib}`, `${level}`]);
  assert.equal(n, mib << 20);
  assert.ok(same, `${kind}: the data came back different`);
  // Coder state, thread stacks and garbage V8 has not collected yet (it lets ≈64 MiB of
  // ArrayBuffers pile up first): ≈70–80 MiB here for any amount of data.
  assert.ok(grew < 128, `${kind}: RSS grew by ${grew.toFixed(0)} MiB for ${mib} MiB`);
}

Deno.test("zstd: 200 MiB streamed through compress and decompress, memory flat", async () => {
  await streamedRoundTrip("zstd", 200, 3);
});

Deno.test({
  name: "xz and bzip2: 72 MiB streamed through compress and decompress, memory flat",
  ignore: slow(),
  fn: async () => {
    await streamedRoundTrip("xz", 72, 0);
    await streamedRoundTrip("bzip2", 72, 1);
  },
});

Deno.test("names: narinfo values, NAR file names, suffixes", () => {
  for (const kind of COMPRESSIONS) {
    assert.equal(parseCompression(kind), kind);
    assert.equal(compressionOfFileName(`nar/1abc.nar${compressionSuffix(kind)}`), kind);
  }
  assert.deepEqual(COMPRESSIONS.map(compressionSuffix), ["", ".xz", ".zst", ".bz2"]);
  assert.throws(() => parseCompression("br"), /compression br is not supported/);
  assert.throws(() => parseCompression(""), /unknown compression ""/);
  assert.throws(() => parseCompression("x".repeat(500)), /characters\]/); // clipped
  assert.equal(compressionOfFileName("1abc.nar.lz4"), undefined);
  assert.equal(compressionOfFileName("1abc.xz"), undefined);
  assert.equal(compressionOfFileName("1abc.narinfo"), undefined);
});
