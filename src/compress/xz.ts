/**
 * The `.xz` codecs on liblzma: a decoder for concatenated streams (as `xz -d` reads them) and
 * the single- and multi-threaded encoders.
 *
 * @module
 */
import { DecompressionError } from "../base/errors.ts";
import {
  liblzma,
  LZMA_CHECK_CRC64,
  LZMA_FINISH,
  LZMA_MT_SIZE,
  LZMA_RUN,
  LZMA_STREAM_SIZE,
  LzmaMt,
  LzmaRet,
  LzmaStream,
} from "../sys/liblzma.ts";
import type { Buffers, Codec, CodecSpec, Step } from "./pump.ts";

/**
 * The most memory a decoder may use. Preset 9 needs 65 MiB; only hand-made streams with huge
 * dictionaries (up to 1.5 GiB) need more, and an upload must not make the server allocate that.
 */
export const XZ_MEMLIMIT = 512 * 1024 * 1024;

/** The magic bytes that begin every `.xz` stream. */
const XZ_MAGIC = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];

class LzmaCodec implements Codec {
  readonly #strm = new Uint8Array(new ArrayBuffer(LZMA_STREAM_SIZE));
  readonly #view = new DataView(this.#strm.buffer);
  readonly #buffers: Buffers;
  readonly #decoding: boolean;
  /** Decoder: the last stream ended; padding (zero bytes) or another stream may follow. */
  #between = false;
  /** Decoder: zero bytes of stream padding seen since the last stream ended. */
  #padding = 0;

  constructor(buffers: Buffers, decoding: boolean) {
    this.#buffers = buffers;
    this.#decoding = decoding;
  }

  /** Starts decoding one stream (again, for each stream of a concatenation). */
  async startDecoder(): Promise<void> {
    // One stream at a time (not LZMA_CONCATENATED), so that this codec sees where each ends
    // and can tell trailing data from a corrupt stream, with its exact offset.
    check(await liblzma().lzma_stream_decoder(this.#strm, BigInt(XZ_MEMLIMIT), 0), "decoder");
    this.#between = false;
    this.#padding = 0;
  }

  /** Starts the single-threaded encoder at `preset`. */
  async startEncoder(preset: number): Promise<void> {
    check(await liblzma().lzma_easy_encoder(this.#strm, preset, LZMA_CHECK_CRC64), "encoder");
  }

  /** Starts the multi-threaded encoder at `preset`. */
  async startEncoderMt(preset: number, threads: number): Promise<void> {
    const mt = new Uint8Array(new ArrayBuffer(LZMA_MT_SIZE));
    const v = new DataView(mt.buffer);
    v.setUint32(LzmaMt.threads, threads, true);
    v.setUint32(LzmaMt.preset, preset, true);
    v.setInt32(LzmaMt.check, LZMA_CHECK_CRC64, true);
    check(await liblzma().lzma_stream_encoder_mt(this.#strm, mt), "multi-threaded encoder");
  }

  step(offset: number, length: number, finish: boolean, at: number): Promise<Step> {
    return this.#between
      ? this.#next(offset, length, finish, at)
      : this.#code(offset, length, finish, at);
  }

  /** Between streams: skips stream padding, then starts the next stream or refuses the bytes. */
  async #next(offset: number, length: number, finish: boolean, at: number): Promise<Step> {
    const inBuf = this.#buffers.inBuf;
    let i = 0;
    while (i < length && inBuf[offset + i] === 0) i++;
    this.#padding += i;
    const pos = at + i;
    if (i === length && !finish) return { read: i, written: 0, end: false };
    if (this.#padding % 4 !== 0) {
      throw new DecompressionError(
        "xz",
        pos,
        `xz: corrupt data (stream padding of ${this.#padding} bytes, not a multiple of 4) ` +
          `detected at compressed byte ${pos}`,
      );
    }
    if (i === length) return { read: i, written: 0, end: true };
    const have = Math.min(length - i, XZ_MAGIC.length);
    const magic = XZ_MAGIC.every((b, k) => k >= have || inBuf[offset + i + k] === b);
    if (!magic) {
      throw new DecompressionError(
        "xz",
        pos,
        `xz: trailing data that is not xz at compressed byte ${pos}`,
      );
    }
    // Too few bytes to tell yet: wait for more (or, at the end, let the decoder say truncated).
    if (have < XZ_MAGIC.length && !finish) return { read: i, written: 0, end: false };
    await this.startDecoder();
    const r = await this.#code(offset + i, length - i, finish, pos);
    return { ...r, read: i + r.read };
  }

  async #code(offset: number, length: number, finish: boolean, at: number): Promise<Step> {
    const v = this.#view;
    const { inAddr, outAddr, outBuf } = this.#buffers;
    v.setBigUint64(LzmaStream.nextIn, inAddr + BigInt(offset), true);
    v.setBigUint64(LzmaStream.availIn, BigInt(length), true);
    v.setBigUint64(LzmaStream.nextOut, outAddr, true);
    v.setBigUint64(LzmaStream.availOut, BigInt(outBuf.length), true);
    const ret = await liblzma().lzma_code(this.#strm, finish ? LZMA_FINISH : LZMA_RUN);
    const read = length - Number(v.getBigUint64(LzmaStream.availIn, true));
    const written = outBuf.length - Number(v.getBigUint64(LzmaStream.availOut, true));
    if (ret === LzmaRet.OK) return { read, written, end: false };
    if (ret === LzmaRet.STREAM_END) {
      if (!this.#decoding) return { read, written, end: true };
      this.#between = true;
      return { read, written, end: finish && read === length };
    }
    if (!this.#decoding) throw new Error(`xz: liblzma's encoder failed (lzma_ret ${ret})`);
    const pos = at + read;
    switch (ret) {
      case LzmaRet.FORMAT_ERROR:
        // Only a stream's first bytes can be "not xz", and the next stream's magic was checked.
        throw new DecompressionError(
          "xz",
          0,
          "xz: not xz data (no xz header at compressed byte 0)",
        );
      case LzmaRet.DATA_ERROR:
        throw new DecompressionError(
          "xz",
          pos,
          `xz: corrupt data (liblzma: compressed data is corrupt) detected at compressed byte ${pos}`,
        );
      case LzmaRet.OPTIONS_ERROR:
        throw new DecompressionError(
          "xz",
          pos,
          `xz: unsupported options in the stream header at compressed byte ${pos}`,
        );
      case LzmaRet.BUF_ERROR:
        throw new DecompressionError(
          "xz",
          pos,
          pos === 0
            ? "xz: truncated: no compressed data"
            : `xz: truncated: the compressed data ends at byte ${pos}, inside a stream`,
        );
      case LzmaRet.MEMLIMIT_ERROR:
        throw new DecompressionError(
          "xz",
          pos,
          `xz: the stream at compressed byte ${pos} needs more than ${
            XZ_MEMLIMIT / 1048576
          } MiB of memory to decompress (its dictionary is too large)`,
        );
      default:
        throw new Error(`xz: liblzma failed (lzma_ret ${ret}) at compressed byte ${pos}`);
    }
  }

  free(): void {
    liblzma().lzma_end(this.#strm);
  }
}

function check(ret: number, what: string): void {
  if (ret === LzmaRet.MEM_ERROR) throw new Error(`xz: out of memory starting the ${what}`);
  if (ret !== LzmaRet.OK) {
    throw new Error(`xz: liblzma could not start the ${what} (lzma_ret ${ret})`);
  }
}

/** The `.xz` decoder: concatenated streams and stream padding decode as one, like `xz -d`. */
export const xzDecoder: CodecSpec = {
  format: "xz",
  decoding: true,
  async open(buffers) {
    const codec = new LzmaCodec(buffers, true);
    await codec.startDecoder();
    return codec;
  },
};

/**
 * The `.xz` encoder at `preset` (0–9, `xz -6` by default), with CRC64 checks. With `threads`
 * above 1, liblzma's multi-threaded encoder, which splits the data into independent blocks
 * (3 × the dictionary: 24 MiB at preset 6), slightly larger output, decodable by any xz.
 */
export function xzEncoder(preset: number, threads: number): CodecSpec {
  return {
    format: "xz",
    decoding: false,
    async open(buffers) {
      const codec = new LzmaCodec(buffers, false);
      if (threads <= 1) await codec.startEncoder(preset);
      else await codec.startEncoderMt(preset, threads);
      return codec;
    },
  };
}
