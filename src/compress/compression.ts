/**
 * Streaming compression and decompression in the formats of Nix binary caches: `xz`, `zstd`,
 * `bzip2` (and `none`), through the system's liblzma, libzstd and libbz2 on Deno's thread pool.
 *
 * Streams are pull-driven: a chunk of at most 512 KiB is produced when the reader asks for one,
 * and at most 256 KiB of input is staged, so memory stays flat in the size of the data however
 * well it compresses. Decoders read concatenated streams as the `xz`, `zstd` and `bzip2`
 * commands do, and fail with a `DecompressionError` naming the compressed byte offset
 * on corrupt, truncated, foreign or trailing data: a stream never ends short silently.
 * Why FFI and not an npm package or `node:zlib`: docs/decisions/compression.md.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { compress, decompress } from "./compression.ts";
 * const text = new TextEncoder().encode("hello, hello, hello\n".repeat(1000));
 * const xz = await new Response(compress("xz", new Blob([text]).stream())).bytes();
 * assert.ok(xz.length < 200);
 * const back = await new Response(decompress("xz", new Blob([xz]).stream())).bytes();
 * assert.deepEqual(back, text);
 * ```
 *
 * @module
 */
import { clip, InvalidRequestError } from "../base/errors.ts";
import { bzip2Decoder, bzip2Encoder } from "./bzip2.ts";
import { codecStream } from "./pump.ts";
import { xzDecoder, xzEncoder } from "./xz.ts";
import { zstdDecoder, zstdEncoder } from "./zstd.ts";

/**
 * A compression format of Nix binary caches, by the name narinfo files give it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type Compression, parseCompression } from "@nixcas/nixcas";
 * const kind: Compression = parseCompression("zstd");
 * assert.equal(kind, "zstd");
 * ```
 */
export type Compression = "none" | "xz" | "zstd" | "bzip2";

/**
 * Every {@linkcode Compression}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { COMPRESSIONS } from "./compression.ts";
 * assert.deepEqual(COMPRESSIONS, ["none", "xz", "zstd", "bzip2"]);
 * ```
 */
export const COMPRESSIONS: readonly Compression[] = ["none", "xz", "zstd", "bzip2"];

/** Formats Nix knows that nixcas does not read. */
const UNSUPPORTED = new Set(["br", "lz4", "gzip", "lzip", "grzip", "lrzip", "compress"]);

/**
 * The format a narinfo `Compression:` value names (`none`, `xz`, `zstd`, `bzip2`). Nix's other
 * methods (`br`, `lz4`, ...) and unknown names are an {@linkcode InvalidRequestError}. Nix reads
 * a missing or empty field as `bzip2`: that is the narinfo parser's rule, not this function's.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidRequestError } from "../base/errors.ts";
 * import { parseCompression } from "./compression.ts";
 * assert.equal(parseCompression("zstd"), "zstd");
 * assert.throws(() => parseCompression("br"), InvalidRequestError);
 * assert.throws(() => parseCompression("XZ"), /unknown compression "XZ"/);
 * ```
 */
export function parseCompression(name: string): Compression {
  if ((COMPRESSIONS as readonly string[]).includes(name)) return name as Compression;
  const known = COMPRESSIONS.join(", ");
  if (UNSUPPORTED.has(name)) {
    throw new InvalidRequestError(`compression ${name} is not supported (only ${known})`);
  }
  throw new InvalidRequestError(`unknown compression ${JSON.stringify(clip(name))} (${known})`);
}

const SUFFIXES: Record<Compression, string> = {
  none: "",
  xz: ".xz",
  zstd: ".zst",
  bzip2: ".bz2",
};

/**
 * The file name suffix of a format, as Nix names compressed NARs: `.xz`, `.zst`, `.bz2`, or
 * the empty string for `none`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { compressionSuffix } from "./compression.ts";
 * assert.equal(`abc.nar${compressionSuffix("zstd")}`, "abc.nar.zst");
 * assert.equal(compressionSuffix("none"), "");
 * ```
 */
export function compressionSuffix(kind: Compression): string {
  return SUFFIXES[kind];
}

/**
 * The format of a NAR file by its name: `x.nar` is `none`, `x.nar.xz`, `x.nar.zst` and
 * `x.nar.bz2` the others; anything else `undefined`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { compressionOfFileName } from "./compression.ts";
 * assert.equal(compressionOfFileName("nar/0abc.nar.xz"), "xz");
 * assert.equal(compressionOfFileName("0abc.nar"), "none");
 * assert.equal(compressionOfFileName("0abc.nar.br"), undefined);
 * ```
 */
export function compressionOfFileName(name: string): Compression | undefined {
  for (const kind of COMPRESSIONS) {
    if (name.endsWith(`.nar${SUFFIXES[kind]}`)) return kind;
  }
  return undefined;
}

/**
 * Options of {@linkcode compress}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { compress, type CompressOptions, decompress } from "@nixcas/nixcas";
 * const opts: CompressOptions = { level: 1 };
 * const data = new TextEncoder().encode("x".repeat(1000));
 * const small = await new Response(compress("zstd", new Blob([data]).stream(), opts)).bytes();
 * assert.ok(small.length < 100);
 * assert.deepEqual(await new Response(decompress("zstd", new Blob([small]).stream())).bytes(), data);
 * ```
 */
export interface CompressOptions {
  /**
   * The compression level: xz 0–9 (default 6), zstd −7–22 (default 3), bzip2 1–9 (default 9),
   * the defaults of the `xz`, `zstd` and `bzip2` commands and of Nix. Ignored for `none`.
   */
  level?: number;
  /**
   * Threads for xz (liblzma's multi-threaded encoder: independent 24 MiB blocks at level 6,
   * output slightly larger) and zstd (worker threads). Default 1: one core, the output of
   * `xz -T1` and `zstd`. Ignored for bzip2 and `none`.
   */
  threads?: number;
}

const LEVELS: Record<Exclude<Compression, "none">, [min: number, max: number, def: number]> = {
  xz: [0, 9, 6],
  zstd: [-7, 22, 3],
  bzip2: [1, 9, 9],
};

function levelOf(kind: Exclude<Compression, "none">, level: number | undefined): number {
  const [min, max, def] = LEVELS[kind];
  if (level === undefined) return def;
  if (!Number.isInteger(level) || level < min || level > max) {
    throw new InvalidRequestError(`${kind}: compression level ${level} is not in ${min}..${max}`);
  }
  return level;
}

function threadsOf(threads: number | undefined): number {
  if (threads === undefined) return 1;
  if (!Number.isInteger(threads) || threads < 1 || threads > 256) {
    throw new InvalidRequestError(`compression threads ${threads} is not in 1..256`);
  }
  return threads;
}

/**
 * `source` decompressed from `kind` (`none` gives `source` itself). The result errors with a
 * `DecompressionError` on corrupt, truncated, foreign or trailing data, after the
 * output decoded so far; cancelling it cancels `source`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DecompressionError } from "../base/errors.ts";
 * import { compress, decompress } from "./compression.ts";
 * const data = new Uint8Array(100_000).fill(7);
 * const bz2 = await new Response(compress("bzip2", new Blob([data]).stream())).bytes();
 * const back = await new Response(decompress("bzip2", new Blob([bz2]).stream())).bytes();
 * assert.deepEqual(back, data);
 * // Cut short: the stream errors instead of ending.
 * const cut = decompress("bzip2", new Blob([bz2.subarray(0, bz2.length - 4)]).stream());
 * await assert.rejects(new Response(cut).bytes(), DecompressionError);
 * ```
 */
export function decompress(
  kind: Compression,
  source: ReadableStream<Uint8Array>,
): ReadableStream<Uint8Array> {
  switch (kind) {
    case "none":
      return source;
    case "xz":
      return codecStream(xzDecoder, source);
    case "zstd":
      return codecStream(zstdDecoder, source);
    case "bzip2":
      return codecStream(bzip2Decoder, source);
  }
  throw new InvalidRequestError(`unknown compression ${JSON.stringify(kind)}`);
}

/**
 * `source` compressed as `kind` (`none` gives `source` itself), with `options`. The output of
 * xz, zstd and bzip2 is one stream the `xz`, `zstd` and `bzip2` commands (and Nix) read.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { compress, decompress } from "./compression.ts";
 * const data = new TextEncoder().encode("abc".repeat(10_000));
 * const zst = await new Response(compress("zstd", new Blob([data]).stream(), { level: 19 }))
 *   .bytes();
 * assert.deepEqual(zst.subarray(0, 4), new Uint8Array([0x28, 0xb5, 0x2f, 0xfd])); // zstd magic
 * assert.deepEqual(await new Response(decompress("zstd", new Blob([zst]).stream())).bytes(), data);
 * ```
 */
export function compress(
  kind: Compression,
  source: ReadableStream<Uint8Array>,
  options: CompressOptions = {},
): ReadableStream<Uint8Array> {
  switch (kind) {
    case "none":
      return source;
    case "xz":
      return codecStream(
        xzEncoder(levelOf(kind, options.level), threadsOf(options.threads)),
        source,
      );
    case "zstd":
      return codecStream(
        zstdEncoder(levelOf(kind, options.level), threadsOf(options.threads)),
        source,
      );
    case "bzip2":
      return codecStream(bzip2Encoder(levelOf(kind, options.level)), source);
  }
  throw new InvalidRequestError(`unknown compression ${JSON.stringify(kind)}`);
}

/** A writable side and a readable side, for `pipeThrough`, as a `TransformStream` has them. */
export interface ByteTransform {
  /** Where the input goes. */
  writable: WritableStream<Uint8Array>;
  /** Where the output comes out. */
  readable: ReadableStream<Uint8Array>;
}

/**
 * {@linkcode decompress} as a transform, for `pipeThrough`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { compressStream, decompressStream } from "./compression.ts";
 * const data = crypto.getRandomValues(new Uint8Array(50_000));
 * const out = new Blob([data]).stream()
 *   .pipeThrough(compressStream("xz", { level: 1 }))
 *   .pipeThrough(decompressStream("xz"));
 * assert.deepEqual(await new Response(out).bytes(), data);
 * ```
 */
export function decompressStream(kind: Compression): ByteTransform {
  const t = new TransformStream<Uint8Array, Uint8Array>();
  return { writable: t.writable, readable: decompress(kind, t.readable) };
}

/**
 * {@linkcode compress} as a transform, for `pipeThrough`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { compressStream, decompressStream } from "./compression.ts";
 * const data = new TextEncoder().encode("x".repeat(1_000_000));
 * const zst = await new Response(new Blob([data]).stream().pipeThrough(compressStream("zstd")))
 *   .bytes();
 * assert.ok(zst.length < 1000);
 * const back = new Blob([zst]).stream().pipeThrough(decompressStream("zstd"));
 * assert.deepEqual(await new Response(back).bytes(), data);
 * ```
 */
export function compressStream(kind: Compression, options: CompressOptions = {}): ByteTransform {
  const t = new TransformStream<Uint8Array, Uint8Array>();
  return { writable: t.writable, readable: compress(kind, t.readable, options) };
}
