/**
 * libbz2 through Deno FFI, for the `.bz2` format: decompression and compression, with the
 * working calls on Deno's blocking thread pool. Bound on first use.
 *
 * The `bz_stream` layout below is that of every LP64 target (x86_64, aarch64), from
 * `<bzlib.h>` of bzip2 1.0.
 *
 * @module
 */
import { openLibrary } from "./native.ts";

const SYMBOLS = {
  BZ2_bzDecompressInit: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  BZ2_bzDecompress: { parameters: ["buffer"], result: "i32", nonblocking: true },
  BZ2_bzDecompressEnd: { parameters: ["buffer"], result: "i32" },
  // Allocates ≈7.6 MiB at block size 9 (and clears some of it): on the thread pool.
  BZ2_bzCompressInit: {
    parameters: ["buffer", "i32", "i32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  BZ2_bzCompress: { parameters: ["buffer", "i32"], result: "i32", nonblocking: true },
  BZ2_bzCompressEnd: { parameters: ["buffer"], result: "i32" },
  BZ2_bzlibVersion: { parameters: [], result: "pointer" },
} as const;

/** The libbz2 symbols {@linkcode libbz2} gives. */
export type Libbz2 = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** Bytes of a `bz_stream` (80 on LP64), with room to spare. */
export const BZ_STREAM_SIZE = 128;
/** `bz_stream` field offsets (LP64); the counters are 32-bit halves of 64-bit totals. */
export const BzStream = {
  nextIn: 0,
  availIn: 8,
  totalInLo32: 12,
  totalInHi32: 16,
  nextOut: 24,
  availOut: 32,
  totalOutLo32: 36,
  totalOutHi32: 40,
} as const;

/** Return codes of the `BZ2_bz*` calls. */
export const BzRet = {
  OK: 0,
  RUN_OK: 1,
  FLUSH_OK: 2,
  FINISH_OK: 3,
  STREAM_END: 4,
  SEQUENCE_ERROR: -1,
  PARAM_ERROR: -2,
  MEM_ERROR: -3,
  DATA_ERROR: -4,
  DATA_ERROR_MAGIC: -5,
  IO_ERROR: -6,
  UNEXPECTED_EOF: -7,
  OUTBUFF_FULL: -8,
  CONFIG_ERROR: -9,
} as const;

/** `BZ2_bzCompress` action: more input follows. */
export const BZ_RUN = 0;
/** `BZ2_bzCompress` action: finish the stream. */
export const BZ_FINISH = 2;

let lib: Libbz2 | null = null;

/**
 * The libbz2 symbols, loaded on first use; throws a clear error when `libbz2.so.1.0` is missing
 * (Debian package `libbz2-1.0`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BZ_STREAM_SIZE, BzRet, libbz2 } from "./libbz2.ts";
 * const bz = libbz2();
 * const strm = new Uint8Array(new ArrayBuffer(BZ_STREAM_SIZE));
 * assert.equal(bz.BZ2_bzDecompressInit(strm, 0, 0), BzRet.OK);
 * assert.equal(bz.BZ2_bzDecompressEnd(strm), BzRet.OK);
 * ```
 */
export function libbz2(): Libbz2 {
  return lib ??= openLibrary(
    "bzip2 (de)compression",
    ["libbz2.so.1.0", "libbz2.so.1"],
    "libbz2-1.0",
    SYMBOLS,
  );
}

/**
 * The version of the loaded libbz2, e.g. `1.0.8, 13-Jul-2019`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { bz2Version } from "./libbz2.ts";
 * assert.match(bz2Version(), /^1\.0\.\d+/);
 * ```
 */
export function bz2Version(): string {
  return Deno.UnsafePointerView.getCString(libbz2().BZ2_bzlibVersion()!);
}
