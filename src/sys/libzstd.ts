/**
 * libzstd through Deno FFI, for the `.zst` format: the streaming decoder and encoder, with the
 * (de)compressing calls on Deno's blocking thread pool. Bound on first use.
 *
 * Chosen over `node:zlib`'s zstd streams, which end without an error on a truncated frame
 * (docs/decisions/compression.md).
 *
 * @module
 */
import { openLibrary } from "./native.ts";

const SYMBOLS = {
  ZSTD_createDCtx: { parameters: [], result: "pointer" },
  ZSTD_freeDCtx: { parameters: ["pointer"], result: "usize" },
  ZSTD_decompressStream: {
    parameters: ["pointer", "buffer", "buffer"],
    result: "usize",
    nonblocking: true,
  },
  ZSTD_createCCtx: { parameters: [], result: "pointer" },
  ZSTD_freeCCtx: { parameters: ["pointer"], result: "usize" },
  ZSTD_CCtx_setParameter: { parameters: ["pointer", "i32", "i32"], result: "usize" },
  ZSTD_compressStream2: {
    parameters: ["pointer", "buffer", "buffer", "i32"],
    result: "usize",
    nonblocking: true,
  },
  ZSTD_isError: { parameters: ["usize"], result: "u32" },
  ZSTD_getErrorName: { parameters: ["usize"], result: "pointer" },
  ZSTD_versionString: { parameters: [], result: "pointer" },
} as const;

/** The libzstd symbols {@linkcode libzstd} gives. */
export type Libzstd = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** Bytes of a `ZSTD_inBuffer` or `ZSTD_outBuffer` (`ptr`, `size`, `pos`: 24 on LP64). */
export const ZSTD_BUFFER_SIZE = 24;
/** `ZSTD_inBuffer`/`ZSTD_outBuffer` field offsets (LP64). */
export const ZstdBuffer = { ptr: 0, size: 8, pos: 16 } as const;

/** `ZSTD_cParameter` values used here. */
export const ZstdParam = {
  compressionLevel: 100,
  checksumFlag: 201,
  nbWorkers: 400,
} as const;

/** `ZSTD_EndDirective`: more input follows. */
export const ZSTD_E_CONTINUE = 0;
/** `ZSTD_EndDirective`: finish the frame. */
export const ZSTD_E_END = 2;

let lib: Libzstd | null = null;

/**
 * The libzstd symbols, loaded on first use; throws a clear error when `libzstd.so.1` is missing
 * (Debian package `libzstd1`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { libzstd, zstdErrorName } from "./libzstd.ts";
 * const zstd = libzstd();
 * const dctx = zstd.ZSTD_createDCtx();
 * assert.ok(dctx);
 * zstd.ZSTD_freeDCtx(dctx);
 * assert.equal(zstd.ZSTD_isError(0n), 0);
 * assert.equal(zstdErrorName(0), "No error detected");
 * ```
 */
export function libzstd(): Libzstd {
  return lib ??= openLibrary("zstd (de)compression", ["libzstd.so.1"], "libzstd1", SYMBOLS);
}

/** libzstd's description of a return value (an error when `ZSTD_isError` says so). */
export function zstdErrorName(code: number | bigint): string {
  return Deno.UnsafePointerView.getCString(libzstd().ZSTD_getErrorName(BigInt(code))!);
}

/**
 * The version of the loaded libzstd, e.g. `1.5.4`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { zstdVersion } from "./libzstd.ts";
 * assert.match(zstdVersion(), /^1\.\d+\.\d+$/);
 * ```
 */
export function zstdVersion(): string {
  return Deno.UnsafePointerView.getCString(libzstd().ZSTD_versionString()!);
}
