/**
 * The `.bz2` codecs on libbz2: a decoder for concatenated streams (as `bzip2 -d` reads them)
 * and the encoder.
 *
 * @module
 */
import { DecompressionError } from "../base/errors.ts";
import { BZ_FINISH, BZ_RUN, BZ_STREAM_SIZE, BzRet, BzStream, libbz2 } from "../sys/libbz2.ts";
import type { Buffers, Codec, CodecSpec, Step } from "./pump.ts";

/** A `bz_stream` in off-heap memory, pointed at the shared buffers for each call. */
class BzIo {
  readonly strm = new Uint8Array(new ArrayBuffer(BZ_STREAM_SIZE));
  readonly #view = new DataView(this.strm.buffer);
  readonly #buffers: Buffers;

  constructor(buffers: Buffers) {
    this.#buffers = buffers;
  }

  /** Points the stream at `length` staged bytes (at most IN_SIZE, so 32 bits suffice). */
  set(offset: number, length: number): void {
    const v = this.#view;
    const { inAddr, outAddr, outBuf } = this.#buffers;
    v.setBigUint64(BzStream.nextIn, inAddr + BigInt(offset), true);
    v.setUint32(BzStream.availIn, length, true);
    v.setBigUint64(BzStream.nextOut, outAddr, true);
    v.setUint32(BzStream.availOut, outBuf.length, true);
  }

  /** Bytes consumed and produced by the last call, given the lengths `set` was called with. */
  done(length: number): { read: number; written: number } {
    const v = this.#view;
    return {
      read: length - v.getUint32(BzStream.availIn, true),
      written: this.#buffers.outBuf.length - v.getUint32(BzStream.availOut, true),
    };
  }
}

class Bz2Decoder implements Codec {
  readonly #io: BzIo;
  /** Between streams: the last one ended, the next not begun (no state allocated). */
  #between = false;

  constructor(buffers: Buffers) {
    this.#io = new BzIo(buffers);
    this.#init();
  }

  #init(): void {
    const ret = libbz2().BZ2_bzDecompressInit(this.#io.strm, 0, 0);
    if (ret === BzRet.MEM_ERROR) throw new Error("bzip2: out of memory starting a decoder");
    if (ret !== BzRet.OK) throw new Error(`bzip2: libbz2 could not start a decoder (${ret})`);
    this.#between = false;
  }

  async step(offset: number, length: number, finish: boolean, at: number): Promise<Step> {
    if (this.#between) {
      if (length === 0) return { read: 0, written: 0, end: finish };
      this.#init(); // another stream follows, as `bzip2 -d` reads concatenated files
    }
    const io = this.#io;
    io.set(offset, length);
    const bz = libbz2();
    const ret = await bz.BZ2_bzDecompress(io.strm);
    const { read, written } = io.done(length);
    if (ret === BzRet.OK) return { read, written, end: false };
    if (ret === BzRet.STREAM_END) {
      bz.BZ2_bzDecompressEnd(io.strm);
      this.#between = true;
      return { read, written, end: finish && read === length };
    }
    const pos = at + read;
    switch (ret) {
      case BzRet.DATA_ERROR_MAGIC:
        throw new DecompressionError(
          "bzip2",
          at,
          at === 0
            ? "bzip2: not bzip2 data (no bzip2 header at compressed byte 0)"
            : `bzip2: trailing data that is not bzip2 at compressed byte ${at}`,
        );
      case BzRet.DATA_ERROR:
        throw new DecompressionError(
          "bzip2",
          pos,
          `bzip2: corrupt data detected at compressed byte ${pos}`,
        );
      case BzRet.MEM_ERROR:
        throw new Error("bzip2: out of memory while decompressing");
      default:
        throw new Error(`bzip2: libbz2 failed (${ret}) at compressed byte ${pos}`);
    }
  }

  free(): void {
    if (!this.#between) libbz2().BZ2_bzDecompressEnd(this.#io.strm);
  }
}

class Bz2Encoder implements Codec {
  readonly #io: BzIo;

  constructor(io: BzIo) {
    this.#io = io;
  }

  async step(offset: number, length: number, finish: boolean): Promise<Step> {
    const io = this.#io;
    io.set(offset, length);
    const ret = await libbz2().BZ2_bzCompress(io.strm, finish ? BZ_FINISH : BZ_RUN);
    const { read, written } = io.done(length);
    if (ret === BzRet.RUN_OK || ret === BzRet.FINISH_OK) return { read, written, end: false };
    if (ret === BzRet.STREAM_END) return { read, written, end: true };
    throw new Error(`bzip2: libbz2's encoder failed (${ret})`);
  }

  free(): void {
    libbz2().BZ2_bzCompressEnd(this.#io.strm);
  }
}

/** The `.bz2` decoder: concatenated streams decode as one, like `bzip2 -d`. */
export const bzip2Decoder: CodecSpec = {
  format: "bzip2",
  decoding: true,
  open: (buffers) => Promise.resolve(new Bz2Decoder(buffers)),
};

/** The `.bz2` encoder with blocks of `level` × 100 kB (1–9; `bzip2 -9` by default). */
export function bzip2Encoder(level: number): CodecSpec {
  return {
    format: "bzip2",
    decoding: false,
    async open(buffers) {
      const io = new BzIo(buffers);
      const ret = await libbz2().BZ2_bzCompressInit(io.strm, level, 0, 0);
      if (ret === BzRet.MEM_ERROR) throw new Error("bzip2: out of memory starting an encoder");
      if (ret !== BzRet.OK) throw new Error(`bzip2: libbz2 could not start an encoder (${ret})`);
      return new Bz2Encoder(io);
    },
  };
}
