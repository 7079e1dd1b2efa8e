/**
 * An HTTP/2 client (RFC 9113) over Deno's own connections (TCP, unix sockets, TLS with ALPN
 * `h2`). It exists for speed: Deno's `node:http2` hands a receiver a 1 MiB response in ≈80
 * pieces at ≈50 µs each; this client reads the socket in large pieces and parses frames itself
 * (docs/decisions/http2-client.md). It speaks what a gRPC client needs: requests with a body,
 * streamed responses with trailers, both flow-control directions, SETTINGS, PING (answered, and
 * sent to detect a silent peer), GOAWAY (calls it refused fail, the rest finish, new calls go on a
 * new connection) and RST_STREAM. Server push is turned off.
 *
 * @module
 */
import {
  CLIENT_PREFACE,
  ErrorCode,
  errorCodeName,
  Flag,
  frame,
  FRAME_HEADER,
  frameHeader,
  FrameType,
  goawayFrame,
  MAX_WINDOW,
  rstStreamFrame,
  Setting,
  settingsFrame,
  windowUpdateFrame,
} from "./frames.ts";
import { encodeHeaders, type HeaderField, HpackDecoder } from "./hpack.ts";

/**
 * Why a call failed: `unavailable` (no connection, or it was lost), `refused` (the server took
 * none of it: REFUSED_STREAM or beyond its GOAWAY, safe to retry), `reset` (RST_STREAM from the
 * server, {@linkcode Http2Error.h2Code} says why), `protocol` (the server broke the protocol),
 * `cancelled` (by the caller).
 */
export type Http2ErrorKind = "unavailable" | "refused" | "reset" | "protocol" | "cancelled";

/**
 * The one error of this client, with a kind and, for resets, the HTTP/2 error code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Http2Error } from "./client.ts";
 * const e = new Http2Error("reset", "stream reset by the server: CANCEL", 8);
 * assert.equal(e.kind, "reset");
 * assert.equal(e.h2Code, 8);
 * ```
 */
export class Http2Error extends Error {
  /** What kind of failure. */
  readonly kind: Http2ErrorKind;
  /** The HTTP/2 error code of a reset or GOAWAY, if any. */
  readonly h2Code?: number;
  /** Creates the error. */
  constructor(kind: Http2ErrorKind, message: string, h2Code?: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "Http2Error";
    this.kind = kind;
    this.h2Code = h2Code;
  }
}

/** Options of {@linkcode Http2Client}. */
export interface Http2ClientOptions {
  /** Opens a new connection to the server (for TLS, one that negotiated `h2`). */
  connect(): Promise<Deno.Conn>;
  /** The `:authority` of requests. */
  authority: string;
  /** The `:scheme` of requests. */
  scheme: "http" | "https";
  /** Receive window of each stream (bytes a response may have in flight). Default 8 MiB. */
  streamWindow?: number;
  /** Receive window of the connection. Default 32 MiB. */
  connectionWindow?: number;
  /** Silence, while calls wait, after which a PING is sent (ms). Default 15 s. */
  pingIntervalMs?: number;
  /** How long a PING may go unanswered before the connection counts as lost (ms). Default 10 s. */
  pingTimeoutMs?: number;
}

/** Bytes asked of the socket per read. */
const READ_SIZE = 256 << 10;
/** Largest frame we accept (SETTINGS_MAX_FRAME_SIZE sent). */
const MAX_FRAME = 1 << 20;
/** Largest header block (all its CONTINUATION frames) we accept. */
const MAX_HEADER_BLOCK = 1 << 20;

/** A request body: all of it, streamed, or none. */
export type RequestBody = Uint8Array | AsyncIterable<Uint8Array> | null;

/** A call in progress: the response's headers, its body as it arrives, then its trailers. */
export interface Http2Call {
  /** The response headers (the first HEADERS block); rejects if the call fails before them. */
  readonly response: Promise<HeaderField[]>;
  /** True when the response ended with its headers (no body, no trailers). */
  readonly headersOnly: boolean;
  /**
   * The body's pieces as they arrive. Each piece is the caller's to keep; taking it returns its
   * bytes to the flow-control windows. Throws {@linkcode Http2Error} if the call fails.
   */
  body(): AsyncGenerator<Uint8Array>;
  /** The trailers, once the body has ended (null if the response had none). */
  readonly trailers: HeaderField[] | null;
  /** Stops the call (RST_STREAM CANCEL) unless it has ended; queued data is dropped. */
  cancel(): void;
}

class Stream implements Http2Call {
  readonly id: number;
  readonly response: Promise<HeaderField[]>;
  #resolve!: (h: HeaderField[]) => void;
  #reject!: (e: unknown) => void;
  #conn: Connection;
  headers: HeaderField[] | null = null;
  trailers: HeaderField[] | null = null;
  headersOnly = false;
  pieces: Uint8Array[] = [];
  queued = 0;
  remoteEnded = false;
  localEnded = false;
  error: Http2Error | null = null;
  wake: (() => void) | null = null;
  /** Our send window for this stream. */
  sendWindow: number;
  /** Received bytes consumed but not yet returned by WINDOW_UPDATE. */
  unacked = 0;
  closed = false;

  constructor(id: number, conn: Connection, sendWindow: number) {
    this.id = id;
    this.#conn = conn;
    this.sendWindow = sendWindow;
    this.response = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.response.catch(() => {}); // the body's reader reports the same failure
  }

  gotHeaders(h: HeaderField[]): void {
    this.headers = h;
    this.#resolve(h);
  }

  fail(e: Http2Error): void {
    // A response that arrived whole stays good whatever happens to the connection after.
    if (this.error || this.remoteEnded) return;
    this.error = e;
    this.#reject(e);
    this.notify();
  }

  notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  async *body(): AsyncGenerator<Uint8Array> {
    try {
      for (;;) {
        const piece = this.pieces.shift();
        if (piece !== undefined) {
          this.queued -= piece.length;
          this.#conn.consumed(this, piece.length);
          yield piece;
          continue;
        }
        if (this.remoteEnded) return;
        if (this.error) throw this.error;
        await new Promise<void>((r) => (this.wake = r));
      }
    } finally {
      this.cancel();
    }
  }

  cancel(): void {
    this.#conn.cancel(this);
  }
}

/** One HTTP/2 connection; the client makes a new one when this one is draining or lost. */
class Connection {
  #sock: Deno.Conn;
  #opts: Required<Omit<Http2ClientOptions, "connect">>;
  #decoder = new HpackDecoder();
  #streams = new Map<number, Stream>();
  #nextId = 1;
  /** New calls may not start here (GOAWAY received or sent, or lost). */
  draining = false;
  dead: Http2Error | null = null;
  #onIdle: () => void;
  // Peer settings.
  #peerMaxFrame = 16384;
  #peerInitialWindow = 65535;
  #peerMaxStreams = Infinity;
  #waitingForSlot: (() => void)[] = [];
  #connSendWindow = 65535;
  #sendWaiters: (() => void)[] = [];
  // Our receive side.
  #connUnacked = 0;
  // Writing.
  #out: Uint8Array[] = [];
  #outBytes = 0;
  #writing: Promise<void> | null = null;
  // Reading state.
  #head = new Uint8Array(FRAME_HEADER);
  #headLen = 0;
  #type = 0;
  #flags = 0;
  #sid = 0;
  #remaining = 0; // payload bytes of the current frame still to come
  #payload: Uint8Array | null = null; // non-DATA payload being gathered
  #payloadLen = 0;
  #padLen = -1; // DATA: -1 until the pad length byte is read (PADDED), then the pad bytes
  #dataLeft = 0; // DATA: data bytes (not padding) still to come
  #retained = false;
  #block: Uint8Array[] | null = null; // a header block waiting for CONTINUATION
  #blockLen = 0;
  #blockStream = 0;
  #blockEnd = false;
  // Liveness.
  #lastFrame = 0;
  #pingSent = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    sock: Deno.Conn,
    opts: Required<Omit<Http2ClientOptions, "connect">>,
    onIdle: () => void,
  ) {
    this.#sock = sock;
    this.#opts = opts;
    this.#onIdle = onIdle;
    this.#send(
      CLIENT_PREFACE,
      settingsFrame([
        [Setting.ENABLE_PUSH, 0],
        [Setting.INITIAL_WINDOW_SIZE, opts.streamWindow],
        [Setting.MAX_FRAME_SIZE, MAX_FRAME],
        [Setting.MAX_HEADER_LIST_SIZE, MAX_HEADER_BLOCK],
      ]),
    );
    if (opts.connectionWindow > 65535) {
      this.#send(windowUpdateFrame(0, opts.connectionWindow - 65535));
    }
    // Small frames (WINDOW_UPDATE, PING) must not wait for Nagle's algorithm.
    (sock as Partial<Deno.TcpConn>).setNoDelay?.(true);
    this.#sock.unref();
    this.#readLoop();
  }

  get active(): number {
    return this.#streams.size;
  }

  /** Opens a stream: waits for a slot under the server's stream limit. */
  async open(headers: HeaderField[], body: RequestBody): Promise<Stream> {
    while (this.#streams.size >= this.#peerMaxStreams && !this.dead && !this.draining) {
      await new Promise<void>((r) => this.#waitingForSlot.push(r));
    }
    if (this.dead) throw this.dead;
    if (this.draining) throw new Http2Error("refused", "the connection is closing");
    const id = this.#nextId;
    this.#nextId += 2;
    if (this.#nextId > MAX_WINDOW) this.draining = true;
    const s = new Stream(id, this, this.#peerInitialWindow);
    this.#streams.set(id, s);
    if (this.#streams.size === 1) this.#busy();
    this.#sendHeaders(id, headers, body === null);
    if (body === null) s.localEnded = true;
    else if (body instanceof Uint8Array) await this.sendData(s, body, true);
    else this.#sendBody(s, body);
    return s;
  }

  /** Sends a streamed request body while the response comes; a failing body resets the call. */
  async #sendBody(s: Stream, body: AsyncIterable<Uint8Array>): Promise<void> {
    try {
      for await (const chunk of body) {
        if (s.error || s.closed || s.remoteEnded) return; // the server answered or it failed
        if (chunk.length > 0) await this.sendData(s, chunk, false);
      }
      if (!s.error && !s.closed && !s.localEnded) await this.sendData(s, new Uint8Array(0), true);
    } catch (e) {
      if (s.error || s.closed) return;
      if (!this.dead) this.#send(rstStreamFrame(s.id, ErrorCode.CANCEL));
      s.fail(
        new Http2Error(
          "cancelled",
          `the request body failed: ${(e as Error)?.message ?? e}`,
          undefined,
          {
            cause: e,
          },
        ),
      );
      this.#forget(s);
    }
  }

  #sendHeaders(id: number, headers: HeaderField[], endStream: boolean): void {
    const block = encodeHeaders(headers);
    const max = this.#peerMaxFrame;
    let o = 0;
    let first = true;
    do {
      const part = block.subarray(o, o + max);
      o += part.length;
      const last = o >= block.length;
      const flags = (last ? Flag.END_HEADERS : 0) | (first && endStream ? Flag.END_STREAM : 0);
      this.#send(frame(first ? FrameType.HEADERS : FrameType.CONTINUATION, flags, id, part));
      first = false;
    } while (o < block.length);
  }

  /** Sends `data` on a stream within the flow-control windows. */
  async sendData(s: Stream, data: Uint8Array, end: boolean): Promise<void> {
    let o = 0;
    do {
      if (s.error) throw s.error;
      if (this.dead) throw this.dead;
      if (s.closed) return; // the server ended the call: nothing more to send
      const n = Math.min(data.length - o, this.#peerMaxFrame, s.sendWindow, this.#connSendWindow);
      if (n <= 0 && data.length > 0) {
        await new Promise<void>((r) => this.#sendWaiters.push(r));
        continue;
      }
      const last = o + n >= data.length;
      const head = new Uint8Array(FRAME_HEADER);
      frameHeader(head, 0, n, FrameType.DATA, last && end ? Flag.END_STREAM : 0, s.id);
      s.sendWindow -= n;
      this.#connSendWindow -= n;
      this.#send(head, data.subarray(o, o + n));
      o += n;
    } while (o < data.length);
    if (end) {
      s.localEnded = true;
      this.#maybeClose(s);
    }
    await this.#drained();
  }

  /** A consumer took `n` bytes of a stream's data: return them to both windows in batches. */
  consumed(s: Stream, n: number): void {
    this.#connUnacked += n;
    if (this.#connUnacked >= this.#opts.connectionWindow / 2) {
      this.#send(windowUpdateFrame(0, this.#connUnacked));
      this.#connUnacked = 0;
    }
    if (s.remoteEnded || s.closed) return;
    s.unacked += n;
    if (s.unacked >= this.#opts.streamWindow / 2) {
      this.#send(windowUpdateFrame(s.id, s.unacked));
      s.unacked = 0;
    }
  }

  cancel(s: Stream): void {
    // Bytes never consumed still count against the connection window: give them back.
    if (s.queued > 0) {
      this.#connUnacked += s.queued;
      s.queued = 0;
      s.pieces = [];
      if (!this.dead) {
        this.#send(windowUpdateFrame(0, this.#connUnacked));
        this.#connUnacked = 0;
      }
    }
    if (s.closed) return;
    if (!this.dead) this.#send(rstStreamFrame(s.id, ErrorCode.CANCEL));
    s.fail(new Http2Error("cancelled", "call cancelled"));
    this.#forget(s);
  }

  #maybeClose(s: Stream): void {
    if (s.localEnded && s.remoteEnded) this.#forget(s);
  }

  #forget(s: Stream): void {
    if (s.closed) return;
    s.closed = true;
    this.#streams.delete(s.id);
    this.#wakeSenders();
    this.#waitingForSlot.shift()?.();
    if (this.#streams.size === 0) this.#idle();
  }

  #busy(): void {
    try {
      this.#sock.ref();
    } catch { /* closed */ }
    this.#lastFrame = Date.now();
    if (this.#timer === undefined) {
      const every = Math.max(50, Math.min(this.#opts.pingIntervalMs, this.#opts.pingTimeoutMs) / 2);
      this.#timer = setInterval(() => this.#tick(), every);
    }
  }

  #idle(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    try {
      this.#sock.unref();
    } catch { /* closed */ }
    if (this.draining) this.close();
    this.#onIdle();
  }

  #tick(): void {
    const now = Date.now();
    if (this.#pingSent > 0) {
      if (now - this.#pingSent > this.#opts.pingTimeoutMs) {
        this.#fail(new Http2Error("unavailable", "the server did not answer a PING in time"));
      }
      return;
    }
    if (now - this.#lastFrame >= this.#opts.pingIntervalMs) {
      this.#pingSent = now;
      this.#send(frame(FrameType.PING, 0, 0, new Uint8Array(8)));
    }
  }

  // Writing: frames are queued and written in order by one loop; small ones are joined.

  #send(...parts: Uint8Array[]): void {
    if (this.dead) return;
    for (const p of parts) {
      this.#out.push(p);
      this.#outBytes += p.length;
    }
    this.#writing ??= this.#writeLoop();
  }

  async #writeLoop(): Promise<void> {
    try {
      while (this.#out.length > 0) {
        let chunk: Uint8Array;
        if (this.#out.length === 1 || this.#outBytes > 256 << 10) {
          chunk = this.#out.shift()!;
        } else {
          chunk = new Uint8Array(this.#outBytes);
          let o = 0;
          for (const p of this.#out) {
            chunk.set(p, o);
            o += p.length;
          }
          this.#out = [];
        }
        this.#outBytes -= chunk.length;
        let o = 0;
        while (o < chunk.length) o += await this.#sock.write(chunk.subarray(o));
      }
    } catch (e) {
      this.#fail(
        new Http2Error("unavailable", `write failed: ${(e as Error).message}`, undefined, {
          cause: e,
        }),
      );
    } finally {
      this.#writing = null;
    }
  }

  async #drained(): Promise<void> {
    while (this.#writing) await this.#writing;
  }

  // Reading.

  async #readLoop(): Promise<void> {
    let buf = new Uint8Array(READ_SIZE);
    try {
      for (;;) {
        const n = await this.#sock.read(buf);
        if (n === null) {
          this.#fail(new Http2Error("unavailable", "the server closed the connection"));
          return;
        }
        this.#lastFrame = Date.now();
        this.#parse(buf.subarray(0, n));
        if (this.dead) return;
        if (this.#retained) {
          buf = new Uint8Array(READ_SIZE);
          this.#retained = false;
        }
      }
    } catch (e) {
      if (this.dead) return;
      const err = e instanceof Http2Error
        ? e
        : new Http2Error("unavailable", `connection lost: ${(e as Error).message}`, undefined, {
          cause: e,
        });
      this.#fail(err);
    }
  }

  #protocolError(message: string, code: number = ErrorCode.PROTOCOL_ERROR): never {
    this.#send(goawayFrame(0, code)); // we accept no streams of the server's
    throw new Http2Error("protocol", `HTTP/2 protocol error from the server: ${message}`, code);
  }

  #parse(data: Uint8Array): void {
    let o = 0;
    while (o < data.length) {
      if (this.#remaining === 0 && this.#headLen < FRAME_HEADER) {
        const take = Math.min(FRAME_HEADER - this.#headLen, data.length - o);
        this.#head.set(data.subarray(o, o + take), this.#headLen);
        this.#headLen += take;
        o += take;
        if (this.#headLen < FRAME_HEADER) return;
        this.#startFrame();
        if (this.#remaining === 0) this.#endFrame(new Uint8Array(0));
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
      if (this.#remaining === 0) {
        this.#endFrame(this.#payload ?? new Uint8Array(0));
      }
    }
  }

  #startFrame(): void {
    const h = this.#head;
    const length = (h[0] << 16) | (h[1] << 8) | h[2];
    this.#type = h[3];
    this.#flags = h[4];
    this.#sid = new DataView(h.buffer).getUint32(5) & MAX_WINDOW;
    this.#headLen = 0;
    if (length > MAX_FRAME) {
      this.#protocolError(`frame of ${length} bytes`, ErrorCode.FRAME_SIZE_ERROR);
    }
    if (this.#block && this.#type !== FrameType.CONTINUATION) {
      this.#protocolError("a header block was interrupted");
    }
    this.#remaining = length;
    this.#payload = null;
    this.#payloadLen = 0;
    if (this.#type === FrameType.DATA) {
      if (this.#sid === 0) this.#protocolError("DATA on stream 0");
      // Flow control counts the whole payload, padding included.
      this.#padLen = this.#flags & Flag.PADDED ? -1 : 0;
      this.#dataLeft = this.#flags & Flag.PADDED ? 0 : length;
      const s = this.#streams.get(this.#sid);
      // A stream we reset or forgot: its bytes still took connection window. Otherwise the
      // padding goes back at once and the data once consumed (#dataPart, consumed()).
      if (!s || s.remoteEnded) this.#connUnacked += length;
    } else {
      this.#payload = new Uint8Array(length);
    }
  }

  #dataPart(part: Uint8Array): void {
    let p = part;
    if (this.#padLen === -1) {
      this.#padLen = p[0];
      this.#dataLeft = this.#remaining + p.length - 1 - this.#padLen;
      if (this.#dataLeft < 0) this.#protocolError("padding longer than the frame");
      this.#creditPadding(1 + this.#padLen);
      p = p.subarray(1);
    }
    const n = Math.min(p.length, this.#dataLeft);
    if (n === 0) return;
    this.#dataLeft -= n;
    const s = this.#streams.get(this.#sid);
    if (!s || s.remoteEnded) return; // counted at the frame's start
    if (s.headers === null) this.#protocolError(`DATA before HEADERS on stream ${s.id}`);
    if (s.error) {
      this.#connUnacked += n;
      return;
    }
    s.pieces.push(p.subarray(0, n));
    s.queued += n;
    this.#retained = true;
    s.notify();
  }

  #creditPadding(n: number): void {
    const s = this.#streams.get(this.#sid);
    if (!s || s.remoteEnded) return; // the whole frame was credited at its start
    this.#connUnacked += n;
    s.unacked += n;
  }

  #endFrame(payload: Uint8Array): void {
    const flags = this.#flags;
    const sid = this.#sid;
    switch (this.#type) {
      case FrameType.DATA: {
        if (flags & Flag.END_STREAM) {
          const s = this.#streams.get(sid);
          if (s && !s.remoteEnded) {
            s.remoteEnded = true;
            s.notify();
            this.#maybeClose(s);
          }
        }
        if (this.#connUnacked >= this.#opts.connectionWindow / 2) {
          this.#send(windowUpdateFrame(0, this.#connUnacked));
          this.#connUnacked = 0;
        }
        break;
      }
      case FrameType.HEADERS: {
        if (sid === 0) this.#protocolError("HEADERS on stream 0");
        let p = payload;
        let pad = 0;
        if (flags & Flag.PADDED) {
          pad = p[0] ?? 0;
          p = p.subarray(1);
        }
        if (flags & Flag.PRIORITY) p = p.subarray(5);
        if (pad > p.length) this.#protocolError("padding longer than the frame");
        p = p.subarray(0, p.length - pad);
        this.#block = [p.slice()];
        this.#blockLen = p.length;
        this.#blockStream = sid;
        this.#blockEnd = (flags & Flag.END_STREAM) !== 0;
        if (flags & Flag.END_HEADERS) this.#headerBlock();
        break;
      }
      case FrameType.CONTINUATION: {
        if (!this.#block || sid !== this.#blockStream) {
          this.#protocolError("CONTINUATION without HEADERS");
        }
        this.#block.push(payload);
        this.#blockLen += payload.length;
        if (this.#blockLen > MAX_HEADER_BLOCK) {
          this.#protocolError(`header block over ${MAX_HEADER_BLOCK} bytes`);
        }
        if (flags & Flag.END_HEADERS) this.#headerBlock();
        break;
      }
      case FrameType.RST_STREAM: {
        if (payload.length !== 4) {
          this.#protocolError("RST_STREAM of the wrong size", ErrorCode.FRAME_SIZE_ERROR);
        }
        const code = new DataView(payload.buffer, payload.byteOffset).getUint32(0);
        const s = this.#streams.get(sid);
        if (s) {
          // A reset after the whole response (NO_ERROR) only stops our sending.
          if (!(s.remoteEnded && code === ErrorCode.NO_ERROR)) {
            s.fail(
              new Http2Error(
                code === ErrorCode.REFUSED_STREAM ? "refused" : "reset",
                `the server reset the stream: ${errorCodeName(code)}`,
                code,
              ),
            );
          }
          this.#forget(s);
        }
        break;
      }
      case FrameType.SETTINGS: {
        if (sid !== 0) this.#protocolError("SETTINGS on a stream");
        if (flags & Flag.ACK) break;
        if (payload.length % 6 !== 0) {
          this.#protocolError("SETTINGS of the wrong size", ErrorCode.FRAME_SIZE_ERROR);
        }
        const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
        for (let i = 0; i < payload.length; i += 6) {
          const id = view.getUint16(i);
          const value = view.getUint32(i + 2);
          if (id === Setting.INITIAL_WINDOW_SIZE) {
            if (value > MAX_WINDOW) {
              this.#protocolError("window too large", ErrorCode.FLOW_CONTROL_ERROR);
            }
            const delta = value - this.#peerInitialWindow;
            this.#peerInitialWindow = value;
            for (const s of this.#streams.values()) s.sendWindow += delta;
          } else if (id === Setting.MAX_FRAME_SIZE) {
            if (value < 16384 || value > (1 << 24) - 1) this.#protocolError("bad MAX_FRAME_SIZE");
            this.#peerMaxFrame = value;
          } else if (id === Setting.MAX_CONCURRENT_STREAMS) {
            this.#peerMaxStreams = value;
          }
        }
        this.#send(settingsFrame([], true));
        this.#wakeSenders();
        for (const w of this.#waitingForSlot.splice(0)) w();
        break;
      }
      case FrameType.PING: {
        if (payload.length !== 8) {
          this.#protocolError("PING of the wrong size", ErrorCode.FRAME_SIZE_ERROR);
        }
        if (flags & Flag.ACK) this.#pingSent = 0;
        else this.#send(frame(FrameType.PING, Flag.ACK, 0, payload));
        break;
      }
      case FrameType.GOAWAY: {
        if (payload.length < 8) {
          this.#protocolError("GOAWAY of the wrong size", ErrorCode.FRAME_SIZE_ERROR);
        }
        const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
        const last = view.getUint32(0) & MAX_WINDOW;
        const code = view.getUint32(4);
        this.draining = true;
        for (const s of [...this.#streams.values()]) {
          if (s.id > last) {
            s.fail(
              new Http2Error("refused", `the server is going away (${errorCodeName(code)})`, code),
            );
            this.#forget(s);
          }
        }
        for (const w of this.#waitingForSlot.splice(0)) w();
        if (this.#streams.size === 0) this.close();
        this.#onIdle();
        break;
      }
      case FrameType.WINDOW_UPDATE: {
        if (payload.length !== 4) {
          this.#protocolError("WINDOW_UPDATE of the wrong size", ErrorCode.FRAME_SIZE_ERROR);
        }
        const inc = new DataView(payload.buffer, payload.byteOffset).getUint32(0) & MAX_WINDOW;
        if (sid === 0) {
          if (inc === 0) this.#protocolError("WINDOW_UPDATE of 0");
          this.#connSendWindow += inc;
        } else {
          const s = this.#streams.get(sid);
          if (s) s.sendWindow += inc;
        }
        this.#wakeSenders();
        break;
      }
      case FrameType.PUSH_PROMISE:
        this.#protocolError("PUSH_PROMISE though push is off");
        break;
      default:
        break; // PRIORITY and unknown types are ignored
    }
  }

  #headerBlock(): void {
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
    let fields: HeaderField[];
    try {
      fields = this.#decoder.decode(block);
    } catch (e) {
      this.#protocolError((e as Error).message, ErrorCode.COMPRESSION_ERROR);
    }
    const s = this.#streams.get(this.#blockStream);
    if (!s || s.remoteEnded) return; // decoded for the table's sake only
    const end = this.#blockEnd;
    if (s.headers === null) {
      const status = fields.find(([n]) => n === ":status")?.[1];
      if (status === undefined) this.#protocolError(`response without :status on stream ${s.id}`);
      if (status.startsWith("1") && !end) return; // informational
      s.headersOnly = end;
      s.gotHeaders(fields);
    } else {
      if (!end) this.#protocolError(`trailers without END_STREAM on stream ${s.id}`);
      s.trailers = fields;
    }
    if (end) {
      s.remoteEnded = true;
      s.notify();
      this.#maybeClose(s);
    }
  }

  #wakeSenders(): void {
    for (const w of this.#sendWaiters.splice(0)) w();
  }

  #fail(e: Http2Error): void {
    if (this.dead) return;
    this.dead = e;
    this.draining = true;
    for (const s of [...this.#streams.values()]) {
      s.fail(e);
      this.#forget(s);
    }
    this.#wakeSenders();
    for (const w of this.#waitingForSlot.splice(0)) w();
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    try {
      this.#sock.close();
    } catch { /* already closed */ }
    this.#onIdle();
  }

  /** Closes the connection; calls in progress fail as `unavailable`. */
  close(reason = "the connection was closed"): void {
    this.#fail(new Http2Error("unavailable", reason));
  }
}

/**
 * An HTTP/2 client for one server: one connection at a time, opened on the first call, replaced
 * when it is lost or the server sends GOAWAY.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as http2 from "node:http2";
 * import { Http2Client } from "./client.ts";
 * const server = http2.createServer();
 * server.on("stream", (stream, headers) => {
 *   stream.respond({ ":status": 200 }, { waitForTrailers: true });
 *   stream.on("wantTrailers", () => stream.sendTrailers({ "x-path": String(headers[":path"]) }));
 *   stream.end("hello");
 * });
 * await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
 * const port = (server.address() as { port: number }).port;
 * const client = new Http2Client({
 *   connect: () => Deno.connect({ hostname: "127.0.0.1", port }),
 *   authority: `127.0.0.1:${port}`,
 *   scheme: "http",
 * });
 * const call = await client.request([[":method", "GET"], [":path", "/x"]]);
 * assert.deepEqual((await call.response)[0], [":status", "200"]);
 * let text = "";
 * for await (const piece of call.body()) text += new TextDecoder().decode(piece);
 * assert.equal(text, "hello");
 * assert.deepEqual(call.trailers, [["x-path", "/x"]]);
 * client.close();
 * await new Promise((r) => server.close(r));
 * ```
 */
export class Http2Client {
  #connect: () => Promise<Deno.Conn>;
  #opts: Required<Omit<Http2ClientOptions, "connect">>;
  #conn: Promise<Connection> | null = null;
  #closed = false;
  #all = new Set<Connection>();

  /** A client; no connection is made until the first call. */
  constructor(options: Http2ClientOptions) {
    this.#connect = options.connect;
    this.#opts = {
      authority: options.authority,
      scheme: options.scheme,
      streamWindow: options.streamWindow ?? 8 << 20,
      connectionWindow: options.connectionWindow ?? 32 << 20,
      pingIntervalMs: options.pingIntervalMs ?? 15_000,
      pingTimeoutMs: options.pingTimeoutMs ?? 10_000,
    };
  }

  /**
   * Starts a call: `headers` are the method, path and the rest (`:scheme` and `:authority` are
   * added), `body` the request body: all of it (sent before this resolves), a stream (sent while
   * the response comes) or null for none.
   */
  async request(headers: HeaderField[], body: RequestBody = null): Promise<Http2Call> {
    if (this.#closed) throw new Http2Error("unavailable", "the client is closed");
    const pseudo = headers.filter(([n]) => n.startsWith(":"));
    const rest = headers.filter(([n]) => !n.startsWith(":"));
    const all: HeaderField[] = [
      ...pseudo,
      [":scheme", this.#opts.scheme],
      [":authority", this.#opts.authority],
      ...rest,
    ];
    for (let attempt = 0;; attempt++) {
      const conn = await this.#connection();
      try {
        return await conn.open(all, body);
      } catch (e) {
        // A connection that turned out to be closing took nothing: try a fresh one, once.
        if (attempt === 0 && e instanceof Http2Error && e.kind === "refused" && !conn.dead) {
          continue;
        }
        throw e;
      }
    }
  }

  #connection(): Promise<Connection> {
    const current = this.#conn;
    if (current) {
      return current.then((c) => {
        if (!c.draining) return c;
        if (this.#conn === current) this.#conn = null;
        return this.#connection();
      });
    }
    const made = (async () => {
      let sock: Deno.Conn;
      try {
        sock = await this.#connect();
      } catch (e) {
        throw new Http2Error("unavailable", (e as Error).message, undefined, { cause: e });
      }
      if (this.#closed) {
        sock.close();
        throw new Http2Error("unavailable", "the client is closed");
      }
      const c: Connection = new Connection(sock, this.#opts, () => {
        if (c.dead) this.#all.delete(c);
      });
      this.#all.add(c);
      return c;
    })();
    this.#conn = made;
    made.catch(() => {
      if (this.#conn === made) this.#conn = null;
    });
    return made;
  }

  /** Closes every connection; calls in progress fail as `unavailable`. */
  close(): void {
    this.#closed = true;
    for (const c of this.#all) c.close("the client was closed");
    this.#all.clear();
    this.#conn = null;
  }
}
