/**
 * What the HTTP/2 client and server share on a connection: the frame reader, which cuts a byte
 * stream read in large pieces into frames (DATA handed on as views of what was read, header blocks
 * gathered across CONTINUATION frames), and the frame writer, which writes queued frames in order
 * with small ones joined into one write.
 *
 * @module
 */
import { ErrorCode, Flag, FRAME_HEADER, FrameType, MAX_WINDOW } from "./frames.ts";

/**
 * Why a call or connection failed: `unavailable` (no connection, or it was lost), `refused` (the
 * peer took none of it: REFUSED_STREAM or beyond its GOAWAY, safe to retry), `reset` (RST_STREAM
 * from the peer, {@linkcode Http2Error.h2Code} says why), `protocol` (the peer broke the
 * protocol), `cancelled` (by the caller).
 */
export type Http2ErrorKind = "unavailable" | "refused" | "reset" | "protocol" | "cancelled";

/**
 * The one error of our HTTP/2 code, with a kind and, for resets and protocol errors, the HTTP/2
 * error code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Http2Error } from "./connection.ts";
 * const e = new Http2Error("reset", "stream reset by the server: CANCEL", 8);
 * assert.equal(e.kind, "reset");
 * assert.equal(e.h2Code, 8);
 * ```
 */
export class Http2Error extends Error {
  /** What kind of failure. */
  readonly kind: Http2ErrorKind;
  /** The HTTP/2 error code of a reset, GOAWAY or protocol error, if any. */
  readonly h2Code?: number;
  /** Creates the error. */
  constructor(kind: Http2ErrorKind, message: string, h2Code?: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "Http2Error";
    this.kind = kind;
    this.h2Code = h2Code;
  }
}

/** A protocol error of the peer: the connection must end with GOAWAY carrying `code`. */
export function protocolError(message: string, code: number = ErrorCode.PROTOCOL_ERROR): never {
  throw new Http2Error("protocol", message, code);
}

/** What a {@linkcode FrameReader} hands its connection. */
export interface FrameSink {
  /** A DATA frame begins; `length` (its whole payload, padding included) counts against windows. */
  dataStart(stream: number, length: number, flags: number): void;
  /** Data bytes of the current DATA frame: a view of the bytes read, the receiver's to keep. */
  data(stream: number, bytes: Uint8Array): void;
  /** The current DATA frame ended; `padding` of its bytes were padding (flow control only). */
  dataEnd(stream: number, flags: number, padding: number): void;
  /** A whole header block (HEADERS and its CONTINUATIONs), padding and priority removed. */
  headers(stream: number, flags: number, block: Uint8Array): void;
  /** Any other frame, whole. */
  frame(type: number, flags: number, stream: number, payload: Uint8Array): void;
}

/**
 * Cuts an HTTP/2 byte stream, fed in arbitrary pieces, into frames. Protocol errors (frames over
 * `maxFrame`, header blocks over `maxHeaderBlock`, an interrupted header block, bad padding) throw
 * {@linkcode Http2Error} of kind `protocol`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FrameReader } from "./connection.ts";
 * import { Flag, frame, FrameType } from "./frames.ts";
 * const got: string[] = [];
 * const reader = new FrameReader({
 *   dataStart: (s, n) => got.push(`start ${s} ${n}`),
 *   data: (s, b) => got.push(`data ${s} ${b.length}`),
 *   dataEnd: (s, f) => got.push(`end ${s} ${f}`),
 *   headers: (s, _f, b) => got.push(`headers ${s} ${b.length}`),
 *   frame: (t) => got.push(`frame ${t}`),
 * }, 1 << 20, 1 << 16);
 * const bytes = new Uint8Array([
 *   ...frame(FrameType.HEADERS, 0, 1, new Uint8Array(2)),
 *   ...frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, new Uint8Array(3)),
 *   ...frame(FrameType.DATA, Flag.END_STREAM, 1, new Uint8Array(10)),
 * ]);
 * for (let i = 0; i < bytes.length; i += 7) reader.push(bytes.subarray(i, i + 7));
 * assert.deepEqual(got.filter((g) => !g.startsWith("data")), ["headers 1 5", "start 1 10", "end 1 1"]);
 * ```
 */
export class FrameReader {
  #sink: FrameSink;
  #maxFrame: number;
  #maxHeaderBlock: number;
  #head = new Uint8Array(FRAME_HEADER);
  #headLen = 0;
  #type = 0;
  #flags = 0;
  #sid = 0;
  #remaining = 0; // payload bytes of the current frame still to come
  #payload: Uint8Array | null = null; // a non-DATA payload being gathered
  #payloadLen = 0;
  #padLen = 0; // DATA: padding bytes at the end (-1 until the pad length byte is read)
  #dataLeft = 0; // DATA: data bytes still to come
  #block: Uint8Array[] | null = null; // a header block waiting for CONTINUATION
  #blockLen = 0;
  #blockStream = 0;
  #blockFlags = 0;
  /** Set when data views were handed out: the caller must read into a fresh buffer next. */
  retained = false;

  /** A reader handing frames to `sink`. */
  constructor(sink: FrameSink, maxFrame: number, maxHeaderBlock: number) {
    this.#sink = sink;
    this.#maxFrame = maxFrame;
    this.#maxHeaderBlock = maxHeaderBlock;
  }

  /** Feeds bytes read from the connection. */
  push(data: Uint8Array): void {
    let o = 0;
    while (o < data.length) {
      if (this.#remaining === 0) {
        const take = Math.min(FRAME_HEADER - this.#headLen, data.length - o);
        this.#head.set(data.subarray(o, o + take), this.#headLen);
        this.#headLen += take;
        o += take;
        if (this.#headLen < FRAME_HEADER) return;
        this.#start();
        if (this.#remaining === 0) this.#end();
        continue;
      }
      const take = Math.min(this.#remaining, data.length - o);
      const part = data.subarray(o, o + take);
      o += take;
      this.#remaining -= take;
      if (this.#type === FrameType.DATA) this.#dataPart(part);
      else {
        this.#payload!.set(part, this.#payloadLen);
        this.#payloadLen += take;
      }
      if (this.#remaining === 0) this.#end();
    }
  }

  #start(): void {
    const h = this.#head;
    const length = (h[0] << 16) | (h[1] << 8) | h[2];
    this.#type = h[3];
    this.#flags = h[4];
    this.#sid = new DataView(h.buffer).getUint32(5) & MAX_WINDOW;
    this.#headLen = 0;
    if (length > this.#maxFrame) {
      protocolError(`frame of ${length} bytes`, ErrorCode.FRAME_SIZE_ERROR);
    }
    if (this.#block && this.#type !== FrameType.CONTINUATION) {
      protocolError("a header block was interrupted");
    }
    this.#remaining = length;
    this.#payloadLen = 0;
    if (this.#type === FrameType.DATA) {
      if (this.#sid === 0) protocolError("DATA on stream 0");
      this.#payload = null;
      const padded = (this.#flags & Flag.PADDED) !== 0;
      if (padded && length === 0) protocolError("a padded DATA frame without its pad length");
      this.#padLen = padded ? -1 : 0;
      this.#dataLeft = padded ? 0 : length;
      this.#sink.dataStart(this.#sid, length, this.#flags);
    } else {
      this.#payload = new Uint8Array(length);
    }
  }

  #dataPart(part: Uint8Array): void {
    let p = part;
    if (this.#padLen === -1) {
      this.#padLen = p[0];
      this.#dataLeft = this.#remaining + p.length - 1 - this.#padLen;
      if (this.#dataLeft < 0) protocolError("padding longer than the frame");
      p = p.subarray(1);
    }
    const n = Math.min(p.length, this.#dataLeft);
    if (n === 0) return;
    this.#dataLeft -= n;
    this.retained = true;
    this.#sink.data(this.#sid, p.subarray(0, n));
  }

  #end(): void {
    const type = this.#type;
    const flags = this.#flags;
    const sid = this.#sid;
    if (type === FrameType.DATA) {
      const padding = flags & Flag.PADDED ? 1 + this.#padLen : 0;
      this.#sink.dataEnd(sid, flags, padding);
      return;
    }
    const payload = this.#payload!;
    this.#payload = null;
    if (type === FrameType.HEADERS) {
      if (sid === 0) protocolError("HEADERS on stream 0");
      let p = payload;
      let pad = 0;
      if (flags & Flag.PADDED) {
        if (p.length < 1) protocolError("a padded HEADERS frame without its pad length");
        pad = p[0];
        p = p.subarray(1);
      }
      if (flags & Flag.PRIORITY) {
        if (p.length < 5) protocolError("HEADERS too short for its priority");
        p = p.subarray(5);
      }
      if (pad > p.length) protocolError("padding longer than the frame");
      p = p.subarray(0, p.length - pad);
      this.#block = [p];
      this.#blockLen = p.length;
      this.#blockStream = sid;
      this.#blockFlags = flags;
      this.#checkBlock();
      if (flags & Flag.END_HEADERS) this.#emitBlock();
      return;
    }
    if (type === FrameType.CONTINUATION) {
      if (!this.#block || sid !== this.#blockStream) protocolError("CONTINUATION without HEADERS");
      this.#block.push(payload);
      this.#blockLen += payload.length;
      this.#checkBlock();
      if (flags & Flag.END_HEADERS) this.#emitBlock();
      return;
    }
    this.#sink.frame(type, flags, sid, payload);
  }

  #checkBlock(): void {
    if (this.#blockLen > this.#maxHeaderBlock) {
      protocolError(`header block over ${this.#maxHeaderBlock} bytes`, ErrorCode.ENHANCE_YOUR_CALM);
    }
  }

  #emitBlock(): void {
    const parts = this.#block!;
    this.#block = null;
    let block: Uint8Array;
    if (parts.length === 1) block = parts[0];
    else {
      block = new Uint8Array(this.#blockLen);
      let o = 0;
      for (const p of parts) {
        block.set(p, o);
        o += p.length;
      }
    }
    this.#sink.headers(this.#blockStream, this.#blockFlags, block);
  }
}

/** Pieces up to this size are joined into one write; bigger ones are written as they are. */
const JOIN_BELOW = 64 << 10;
/** Size of a joined write. */
const JOINED = 256 << 10;

/**
 * Writes frames to a connection in the order queued, one write at a time: small pieces (frame
 * headers, control frames, small DATA) are copied into one buffer, large ones written without a
 * copy. A failed write calls `onError` once; later sends are dropped.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FrameWriter } from "./connection.ts";
 * const written: number[] = [];
 * const sink = { write: (b: Uint8Array) => (written.push(b.length), Promise.resolve(b.length)) };
 * const w = new FrameWriter(sink as unknown as Deno.Conn, () => {});
 * w.send(new Uint8Array(9), new Uint8Array(100));
 * w.send(new Uint8Array(1 << 20));
 * await w.drained();
 * assert.deepEqual(written, [109, 1 << 20]);
 * ```
 */
export class FrameWriter {
  #sock: Deno.Conn;
  #onError: (e: unknown) => void;
  #out: Uint8Array[] = [];
  #head = 0;
  #bytes = 0;
  #writing: Promise<void> | null = null;
  #failed = false;

  /** A writer on `sock`. */
  constructor(sock: Deno.Conn, onError: (e: unknown) => void) {
    this.#sock = sock;
    this.#onError = onError;
  }

  /** Bytes queued and not yet written. */
  get queued(): number {
    return this.#bytes;
  }

  /** Queues pieces, written after everything queued before them. */
  send(...parts: Uint8Array[]): void {
    if (this.#failed) return;
    for (const p of parts) {
      if (p.length === 0) continue;
      this.#out.push(p);
      this.#bytes += p.length;
    }
    this.#writing ??= this.#loop();
  }

  /** Resolves once everything queued so far has been written (or the writer failed). */
  async drained(): Promise<void> {
    while (this.#writing) await this.#writing;
  }

  async #loop(): Promise<void> {
    try {
      while (this.#head < this.#out.length) {
        let chunk = this.#out[this.#head];
        if (chunk.length < JOIN_BELOW && this.#head + 1 < this.#out.length) {
          // Join the run of small pieces that follows, up to JOINED bytes.
          let n = 0;
          let end = this.#head;
          while (
            end < this.#out.length && this.#out[end].length < JOIN_BELOW &&
            n + this.#out[end].length <= JOINED
          ) n += this.#out[end++].length;
          if (end - this.#head > 1) {
            chunk = new Uint8Array(n);
            let o = 0;
            for (let i = this.#head; i < end; i++) {
              chunk.set(this.#out[i], o);
              o += this.#out[i].length;
            }
            this.#head = end;
          } else this.#head++;
        } else this.#head++;
        if (this.#head > 1024) {
          this.#out = this.#out.slice(this.#head);
          this.#head = 0;
        }
        let o = 0;
        while (o < chunk.length) o += await this.#sock.write(chunk.subarray(o));
        this.#bytes -= chunk.length;
      }
      this.#out = [];
      this.#head = 0;
    } catch (e) {
      this.#failed = true;
      this.#out = [];
      this.#head = 0;
      this.#bytes = 0;
      this.#onError(e);
    } finally {
      this.#writing = null;
    }
  }
}
