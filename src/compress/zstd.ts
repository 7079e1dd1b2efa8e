/**
 * The `.zst` codecs on libzstd: a decoder for one or more frames (as `zstd -d` reads them) that
 * tells a truncated frame from a complete one, and the encoder.
 *
 * @module
 */
import { DecompressionError } from "../base/errors.ts";
import {
  libzstd,
  ZSTD_BUFFER_SIZE,
  ZSTD_E_CONTINUE,
  ZSTD_E_END,
  ZstdBuffer,
  zstdErrorName,
  ZstdParam,
} from "../sys/libzstd.ts";
import type { Buffers, Codec, CodecSpec, Step } from "./pump.ts";

/** `ZSTD_outBuffer` then `ZSTD_inBuffer`, in one off-heap allocation. */
class ZstdBuffers {
  readonly out = new Uint8Array(new ArrayBuffer(2 * ZSTD_BUFFER_SIZE), 0, ZSTD_BUFFER_SIZE);
  readonly in = new Uint8Array(this.out.buffer, ZSTD_BUFFER_SIZE, ZSTD_BUFFER_SIZE);
  readonly #view = new DataView(this.out.buffer);
  readonly #buffers: Buffers;

  constructor(buffers: Buffers) {
    this.#buffers = buffers;
  }

  set(offset: number, length: number): void {
    const v = this.#view;
    const { inAddr, outAddr, outBuf } = this.#buffers;
    v.setBigUint64(ZstdBuffer.ptr, outAddr, true);
    v.setBigUint64(ZstdBuffer.size, BigInt(outBuf.length), true);
    v.setBigUint64(ZstdBuffer.pos, 0n, true);
    v.setBigUint64(ZSTD_BUFFER_SIZE + ZstdBuffer.ptr, inAddr + BigInt(offset), true);
    v.setBigUint64(ZSTD_BUFFER_SIZE + ZstdBuffer.size, BigInt(length), true);
    v.setBigUint64(ZSTD_BUFFER_SIZE + ZstdBuffer.pos, 0n, true);
  }

  get read(): number {
    return Number(this.#view.getBigUint64(ZSTD_BUFFER_SIZE + ZstdBuffer.pos, true));
  }

  get written(): number {
    return Number(this.#view.getBigUint64(ZstdBuffer.pos, true));
  }
}

class ZstdDecoder implements Codec {
  readonly #io: ZstdBuffers;
  readonly #dctx: Deno.PointerObject;
  /** The last call finished a frame and flushed it (libzstd returned 0). */
  #frameDone = false;

  constructor(buffers: Buffers) {
    this.#io = new ZstdBuffers(buffers);
    const dctx = libzstd().ZSTD_createDCtx();
    if (!dctx) throw new Error("zstd: out of memory creating a decoder");
    this.#dctx = dctx;
  }

  async step(offset: number, length: number, finish: boolean, at: number): Promise<Step> {
    const io = this.#io;
    // Input used up after a complete frame: the stream is done (an empty input never is).
    if (finish && length === 0 && this.#frameDone) return { read: 0, written: 0, end: true };
    io.set(offset, length);
    const zstd = libzstd();
    const ret = await zstd.ZSTD_decompressStream(this.#dctx, io.out, io.in);
    const read = io.read;
    const written = io.written;
    if (zstd.ZSTD_isError(BigInt(ret))) {
      const pos = at + read;
      const why = zstdErrorName(ret);
      throw new DecompressionError(
        "zstd",
        pos,
        why === "Unknown frame descriptor"
          ? pos === 0
            ? "zstd: not zstd data (no zstd frame header at compressed byte 0)"
            : `zstd: trailing data that is not zstd at compressed byte ${pos}`
          : `zstd: corrupt data (libzstd: ${why}) detected at compressed byte ${pos}`,
      );
    }
    this.#frameDone = Number(ret) === 0;
    const end = finish && this.#frameDone && read === length;
    return { read, written, end };
  }

  free(): void {
    libzstd().ZSTD_freeDCtx(this.#dctx);
  }
}

class ZstdEncoder implements Codec {
  readonly #io: ZstdBuffers;
  readonly #cctx: Deno.PointerObject;

  constructor(buffers: Buffers, level: number, threads: number) {
    this.#io = new ZstdBuffers(buffers);
    const zstd = libzstd();
    const cctx = zstd.ZSTD_createCCtx();
    if (!cctx) throw new Error("zstd: out of memory creating an encoder");
    this.#cctx = cctx;
    const set = (param: number, value: number, what: string) => {
      const r = zstd.ZSTD_CCtx_setParameter(cctx, param, value);
      if (zstd.ZSTD_isError(BigInt(r))) {
        zstd.ZSTD_freeCCtx(cctx);
        throw new Error(`zstd: cannot set ${what} to ${value}: ${zstdErrorName(r)}`);
      }
    };
    set(ZstdParam.compressionLevel, level, "the compression level");
    // As the zstd command does: a checksum of the content at the end of each frame.
    set(ZstdParam.checksumFlag, 1, "the checksum flag");
    if (threads > 1) set(ZstdParam.nbWorkers, threads, "the number of threads");
  }

  async step(offset: number, length: number, finish: boolean): Promise<Step> {
    const io = this.#io;
    io.set(offset, length);
    const zstd = libzstd();
    const ret = await zstd.ZSTD_compressStream2(
      this.#cctx,
      io.out,
      io.in,
      finish ? ZSTD_E_END : ZSTD_E_CONTINUE,
    );
    if (zstd.ZSTD_isError(BigInt(ret))) {
      throw new Error(`zstd: the encoder failed: ${zstdErrorName(ret)}`);
    }
    const read = io.read;
    return { read, written: io.written, end: finish && Number(ret) === 0 && read === length };
  }

  free(): void {
    libzstd().ZSTD_freeCCtx(this.#cctx);
  }
}

/** The `.zst` decoder: frames one after another (and skippable frames) decode as one stream. */
export const zstdDecoder: CodecSpec = {
  format: "zstd",
  decoding: true,
  open: (buffers) => Promise.resolve(new ZstdDecoder(buffers)),
};

/** The `.zst` encoder at `level` (`zstd -3` by default), one frame with a content checksum. */
export function zstdEncoder(level: number, threads: number): CodecSpec {
  return {
    format: "zstd",
    decoding: false,
    open: (buffers) => Promise.resolve(new ZstdEncoder(buffers, level, threads)),
  };
}
