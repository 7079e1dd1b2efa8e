/**
 * liblzma (XZ Utils) through Deno FFI, for the `.xz` format: the stream decoder and the
 * single- and multi-threaded encoders, with {@linkcode lzma_code} on Deno's blocking thread
 * pool so that (de)compression never holds up the event loop. Bound on first use.
 *
 * The `lzma_stream` and `lzma_mt` layouts below are those of every LP64 target (x86_64,
 * aarch64), from `<lzma/base.h>` and `<lzma/container.h>` of XZ Utils 5.x.
 *
 * @module
 */
import { openLibrary } from "./native.ts";

const SYMBOLS = {
  // The initialisers allocate and clear the coder's tables (≈100 MiB at preset 6 for the
  // encoder), milliseconds of work: the thread pool does that too.
  lzma_stream_decoder: { parameters: ["buffer", "u64", "u32"], result: "i32", nonblocking: true },
  lzma_easy_encoder: { parameters: ["buffer", "u32", "i32"], result: "i32", nonblocking: true },
  lzma_stream_encoder_mt: { parameters: ["buffer", "buffer"], result: "i32", nonblocking: true },
  lzma_code: { parameters: ["buffer", "i32"], result: "i32", nonblocking: true },
  lzma_end: { parameters: ["buffer"], result: "void" },
  lzma_version_string: { parameters: [], result: "pointer" },
} as const;

/** The liblzma symbols {@linkcode liblzma} gives. */
export type Liblzma = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** Bytes of a `lzma_stream` (136 on LP64), with room to spare. */
export const LZMA_STREAM_SIZE = 256;
/** `lzma_stream` field offsets (LP64). */
export const LzmaStream = {
  nextIn: 0,
  availIn: 8,
  totalIn: 16,
  nextOut: 24,
  availOut: 32,
  totalOut: 40,
} as const;

/** Bytes of a `lzma_mt` (128 on LP64), with room to spare. */
export const LZMA_MT_SIZE = 256;
/** `lzma_mt` field offsets (LP64). */
export const LzmaMt = {
  flags: 0,
  threads: 4,
  blockSize: 8,
  timeout: 16,
  preset: 20,
  filters: 24,
  check: 32,
} as const;

/** `lzma_ret` values. */
export const LzmaRet = {
  OK: 0,
  STREAM_END: 1,
  NO_CHECK: 2,
  UNSUPPORTED_CHECK: 3,
  GET_CHECK: 4,
  MEM_ERROR: 5,
  MEMLIMIT_ERROR: 6,
  FORMAT_ERROR: 7,
  OPTIONS_ERROR: 8,
  DATA_ERROR: 9,
  BUF_ERROR: 10,
  PROG_ERROR: 11,
} as const;

/** `lzma_action` values. */
export const LZMA_RUN = 0;
/** Finish the stream: no more input follows. */
export const LZMA_FINISH = 3;
/** Decoder flag: decode concatenated `.xz` streams as one, like `xz -d`. */
export const LZMA_CONCATENATED = 0x08;
/** `lzma_check`: CRC64, the `xz` command's default. */
export const LZMA_CHECK_CRC64 = 4;

let lib: Liblzma | null = null;

/**
 * The liblzma symbols, loaded on first use; throws a clear error when `liblzma.so.5` is missing
 * (Debian package `liblzma5`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { liblzma, LZMA_STREAM_SIZE, LZMA_CONCATENATED, LzmaRet } from "./liblzma.ts";
 * const lzma = liblzma();
 * const strm = new Uint8Array(new ArrayBuffer(LZMA_STREAM_SIZE));
 * assert.equal(await lzma.lzma_stream_decoder(strm, 2n ** 64n - 1n, LZMA_CONCATENATED), LzmaRet.OK);
 * lzma.lzma_end(strm);
 * ```
 */
export function liblzma(): Liblzma {
  return lib ??= openLibrary("xz (de)compression", ["liblzma.so.5"], "liblzma5", SYMBOLS);
}

/**
 * The version of the loaded liblzma, e.g. `5.4.1`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lzmaVersion } from "./liblzma.ts";
 * assert.match(lzmaVersion(), /^5\.\d+\.\d+/);
 * ```
 */
export function lzmaVersion(): string {
  return Deno.UnsafePointerView.getCString(liblzma().lzma_version_string()!);
}
