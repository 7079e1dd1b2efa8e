/**
 * The server side of one HTTP/2 connection (RFC 9113) on a Deno connection: streams handed to a
 * handler as they open, request bodies under flow control (a handler that does not read holds
 * its client at the window), responses written within the client's windows (a client that does
 * not read holds the writer, not memory), trailers, resets, PING, GOAWAY both ways and a graceful
 * shutdown. It bounds what a client can make it do: streams at once (more are refused), header
 * block size, client resets per second (rapid reset), and control frames queued for a client
 * that does not read (PING and SETTINGS floods).
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
import {
  FrameReader,
  type FrameSink,
  FrameWriter,
  Http2Error,
  protocolError,
} from "./connection.ts";

/** Options of {@linkcode Http2ServerConnection}. */
export interface Http2ServerOptions {
  /** Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). Default 256. */
  maxConcurrentStreams?: number;
  /** Receive window of each stream. Default 8 MiB. */
  streamWindow?: number;
  /** Receive window of the connection. Default 32 MiB. */
  connectionWindow?: number;
  /** Largest header block accepted. Default 64 KiB. */
  maxHeaderBlock?: number;
  /** Called whenever the number of open streams changes. */
  onStreams?: (open: number) => void;
}

/** One request: its headers, its body as it arrives, and the means to answer it. */
export interface ServerStream {
  /** The stream id. */
  readonly id: number;
  /** `:method`. */
  readonly method: string;
  /** `:path`. */
  readonly path: string;
  /** `:authority` (or `host`), "" when absent. */
  readonly authority: string;
  /** The request's header fields, pseudo-headers left out. */
  readonly headers: HeaderField[];
  /** Aborted when the client resets the stream or the connection ends before the response did. */
  readonly signal: AbortSignal;
  /**
   * The request body's pieces as they arrive, each the caller's to keep; taking one returns its
   * bytes to the windows. Throws {@linkcode Http2Error} when the client resets the stream.
   */
  body(): AsyncGenerator<Uint8Array>;
  /** Sends the response headers (`endStream`: and nothing else). */
  respond(status: number, headers?: HeaderField[], endStream?: boolean): void;
  /**
   * Sends body bytes (the pieces back to back), within the client's windows; resolves once they
   * were handed to the connection. Rejects when the stream was reset or the connection lost.
   */
  write(parts: Uint8Array | Uint8Array[]): Promise<void>;
  /** Ends the response, with trailers when given. */
  end(trailers?: HeaderField[]): void;
  /** Resets the stream (RST_STREAM) unless it has ended. */
  reset(code?: number): void;
}

/** Bytes asked of the socket per read. */
const READ_SIZE = 256 << 10;
/** Largest frame we accept (SETTINGS_MAX_FRAME_SIZE sent). */
const MAX_FRAME = 1 << 20;
/** Client resets per second after which the connection is closed (CVE-2023-44487). */
const MAX_RESETS_PER_SECOND = 500;
/** How long a closing connection waits for the client to close its side. */
const LINGER_MS = 2_000;
/** Queued output, beyond which control frames owed to a client that does not read end it. */
const MAX_QUEUED_CONTROL = 4 << 20;

class Stream implements ServerStream {
  readonly id: number;
  method = "";
  path = "";
  authority = "";
  headers: HeaderField[] = [];
  readonly #abort = new AbortController();
  readonly signal = this.#abort.signal;
  #conn: Http2ServerConnection;
  pieces: Uint8Array[] = [];
  queued = 0;
  /** The request ended (END_STREAM from the client). */
  remoteEnded = false;
  /** Our response ended. */
  localEnded = false;
  headersSent = false;
  error: Http2Error | null = null;
  wake: (() => void) | null = null;
  sendWindow: number;
  recvWindow: number;
  unacked = 0;
  closed = false;

  constructor(id: number, conn: Http2ServerConnection, sendWindow: number, recvWindow: number) {
    this.id = id;
    this.#conn = conn;
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  fail(e: Http2Error): void {
    if (this.error || this.localEnded) return;
    this.error = e;
    this.#abort.abort(e);
    this.notify();
  }

  notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  async *body(): AsyncGenerator<Uint8Array> {
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
  }

  respond(status: number, headers: HeaderField[] = [], endStream = false): void {
    this.#conn.respond(this, status, headers, endStream);
  }

  write(parts: Uint8Array | Uint8Array[]): Promise<void> {
    return this.#conn.write(this, parts instanceof Uint8Array ? [parts] : parts);
  }

  end(trailers?: HeaderField[]): void {
    this.#conn.end(this, trailers);
  }

  reset(code: number = ErrorCode.CANCEL): void {
    this.#conn.reset(this, code);
  }
}

/**
 * Serves HTTP/2 on one accepted connection until either side ends it. `handler` is called with
 * each new stream once its request headers arrived; it answers through the stream (a throw resets
 * the stream with INTERNAL_ERROR).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Http2Client } from "./client.ts";
 * import { Http2ServerConnection } from "./server.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const port = (listener.addr as Deno.NetAddr).port;
 * const served = (async () => {
 *   const conn = new Http2ServerConnection(await listener.accept(), async (stream) => {
 *     let n = 0;
 *     for await (const piece of stream.body()) n += piece.length;
 *     stream.respond(200, [["x-path", stream.path]]);
 *     await stream.write(new TextEncoder().encode(`${n} bytes`));
 *     stream.end([["x-done", "1"]]);
 *   });
 *   await conn.done;
 * })();
 * const client = new Http2Client({
 *   connect: () => Deno.connect({ hostname: "127.0.0.1", port }),
 *   authority: `127.0.0.1:${port}`,
 *   scheme: "http",
 * });
 * const call = await client.request([[":method", "POST"], [":path", "/p"]], new Uint8Array(5));
 * assert.deepEqual((await call.response).find(([n]) => n === "x-path"), ["x-path", "/p"]);
 * let text = "";
 * for await (const piece of call.body()) text += new TextDecoder().decode(piece);
 * assert.equal(text, "5 bytes");
 * assert.deepEqual(call.trailers, [["x-done", "1"]]);
 * client.close();
 * await served;
 * listener.close();
 * ```
 */
export class Http2ServerConnection {
  #sock: Deno.Conn;
  #handler: (stream: ServerStream) => void | Promise<void>;
  #opts: Required<Omit<Http2ServerOptions, "onStreams">>;
  #onStreams?: (open: number) => void;
  #decoder = new HpackDecoder();
  #streams = new Map<number, Stream>();
  #lastStream = 0;
  #writer: FrameWriter;
  #reader: FrameReader;
  #dataStream: Stream | null = null;
  #peerMaxFrame = 16384;
  #peerInitialWindow = 65535;
  #connSendWindow = 65535;
  #connRecvWindow = 65535;
  #connUnacked = 0;
  #sendWaiters: (() => void)[] = [];
  #goawaySent = false;
  #clientLeaving = false;
  #closing = false;
  #resets = 0;
  #resetsSince = 0;
  #dead = false;
  #resolveDone!: () => void;
  /** Resolves when the connection has ended. */
  readonly done: Promise<void> = new Promise((r) => (this.#resolveDone = r));

  /** Starts serving `sock`. */
  constructor(
    sock: Deno.Conn,
    handler: (stream: ServerStream) => void | Promise<void>,
    options: Http2ServerOptions = {},
  ) {
    this.#sock = sock;
    this.#handler = handler;
    this.#opts = {
      maxConcurrentStreams: options.maxConcurrentStreams ?? 256,
      streamWindow: options.streamWindow ?? 8 << 20,
      connectionWindow: options.connectionWindow ?? 32 << 20,
      maxHeaderBlock: options.maxHeaderBlock ?? 64 << 10,
    };
    this.#onStreams = options.onStreams;
    (sock as Partial<Deno.TcpConn>).setNoDelay?.(true);
    this.#writer = new FrameWriter(sock, () => this.close());
    this.#reader = new FrameReader(this.#sink(), MAX_FRAME, this.#opts.maxHeaderBlock);
    this.#readLoop();
  }

  /** Streams open now. */
  get open(): number {
    return this.#streams.size;
  }

  /**
   * Stops taking new streams (GOAWAY with the last stream taken); the connection closes once the
   * open ones have ended and what they wrote has been sent.
   */
  shutdown(): void {
    if (this.#dead || this.#goawaySent) return;
    this.#goawaySent = true;
    this.#writer.send(goawayFrame(this.#lastStream, ErrorCode.NO_ERROR));
    if (this.#streams.size === 0) this.#closeWhenFlushed();
  }

  /** Ends the connection now; open streams are aborted. */
  close(): void {
    if (this.#dead) return;
    this.#dead = true;
    const e = new Http2Error("unavailable", "the connection was closed");
    for (const s of [...this.#streams.values()]) {
      s.fail(e);
      this.#forget(s);
    }
    for (const w of this.#sendWaiters.splice(0)) w();
    try {
      this.#sock.close();
    } catch { /* already closed */ }
    this.#resolveDone();
  }

  /**
   * Sends what is queued, then half-closes and waits a moment for the client to close its side:
   * closing at once with the client's last frames (WINDOW_UPDATEs) unread would make the kernel
   * answer with a reset, and a reset makes the client's kernel drop what it had not yet read.
   */
  async #closeWhenFlushed(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    await this.#writer.drained();
    if (this.#dead) return;
    try {
      await this.#sock.closeWrite();
    } catch {
      return this.close();
    }
    const t = setTimeout(() => this.close(), LINGER_MS);
    await this.done;
    clearTimeout(t);
  }

  #send(...parts: Uint8Array[]): void {
    if (!this.#dead) this.#writer.send(...parts);
  }

  /** A control frame owed to the client; one that does not read its answers is cut off. */
  #sendControl(f: Uint8Array): void {
    if (this.#writer.queued > MAX_QUEUED_CONTROL) {
      protocolError("too much owed to a client that does not read", ErrorCode.ENHANCE_YOUR_CALM);
    }
    this.#send(f);
  }

  async #readLoop(): Promise<void> {
    let buf = new Uint8Array(READ_SIZE);
    try {
      // The client connection preface first.
      let got = 0;
      const preface = new Uint8Array(CLIENT_PREFACE.length);
      while (got < preface.length) {
        const n = await this.#sock.read(buf);
        if (n === null) return this.close();
        const take = Math.min(n, preface.length - got);
        preface.set(buf.subarray(0, take), got);
        for (let i = got; i < got + take; i++) {
          if (preface[i] !== CLIENT_PREFACE[i]) return await this.#notHttp2(preface, got + take);
        }
        got += take;
        if (got === preface.length) this.#hello();
        if (take < n) this.#reader.push(buf.subarray(take, n));
      }
      for (;;) {
        if (this.#reader.retained) {
          buf = new Uint8Array(READ_SIZE);
          this.#reader.retained = false;
        }
        const n = await this.#sock.read(buf);
        if (n === null) break;
        this.#reader.push(buf.subarray(0, n));
        if (this.#dead) return;
      }
    } catch (e) {
      if (this.#dead) return;
      if (e instanceof Http2Error && e.kind === "protocol") {
        this.#send(goawayFrame(this.#lastStream, e.h2Code ?? ErrorCode.PROTOCOL_ERROR));
        await Promise.race([this.#writer.drained(), new Promise((r) => setTimeout(r, 100))]);
      }
    }
    this.close();
  }

  /** Our side of the connection preface, sent once the client's has arrived. */
  #hello(): void {
    this.#send(settingsFrame([
      [Setting.MAX_CONCURRENT_STREAMS, this.#opts.maxConcurrentStreams],
      [Setting.INITIAL_WINDOW_SIZE, this.#opts.streamWindow],
      [Setting.MAX_FRAME_SIZE, MAX_FRAME],
      [Setting.MAX_HEADER_LIST_SIZE, this.#opts.maxHeaderBlock],
    ]));
    if (this.#opts.connectionWindow > 65535) {
      this.#send(windowUpdateFrame(0, this.#opts.connectionWindow - 65535));
      this.#connRecvWindow = this.#opts.connectionWindow;
    }
  }

  /** Something other than HTTP/2 with prior knowledge: HTTP/1.x gets a readable answer. */
  async #notHttp2(start: Uint8Array, n: number): Promise<void> {
    const text = new TextDecoder().decode(start.subarray(0, n));
    if (/^[A-Z]+ /.test(text)) {
      const body = "this is a gRPC server: it speaks HTTP/2 only\n";
      this.#send(new TextEncoder().encode(
        `HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-type: text/plain\r\n` +
          `content-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
      ));
    } else {
      this.#send(goawayFrame(0, ErrorCode.PROTOCOL_ERROR));
    }
    await Promise.race([this.#writer.drained(), new Promise((r) => setTimeout(r, 100))]);
    this.close();
  }

  #sink(): FrameSink {
    return {
      dataStart: (sid, length) => {
        this.#connRecvWindow -= length;
        if (this.#connRecvWindow < 0) {
          protocolError("DATA beyond the connection window", ErrorCode.FLOW_CONTROL_ERROR);
        }
        const s = this.#streams.get(sid);
        if (s) {
          if (s.remoteEnded) {
            protocolError(`DATA after the end of stream ${sid}`, ErrorCode.STREAM_CLOSED);
          }
          s.recvWindow -= length;
          if (s.recvWindow < 0) {
            protocolError(`DATA beyond the window of stream ${sid}`, ErrorCode.FLOW_CONTROL_ERROR);
          }
        } else if (sid > this.#lastStream) {
          protocolError(`DATA on idle stream ${sid}`);
        }
        this.#dataStream = s && !s.error ? s : null;
        if (!this.#dataStream) this.#credit(length);
      },
      data: (_sid, bytes) => {
        const s = this.#dataStream;
        if (!s) return;
        s.pieces.push(bytes);
        s.queued += bytes.length;
        s.notify();
      },
      dataEnd: (sid, flags, padding) => {
        const s = this.#dataStream;
        this.#dataStream = null;
        if (s && padding > 0) {
          s.unacked += padding;
          this.#credit(padding);
        }
        if (flags & Flag.END_STREAM) {
          const t = this.#streams.get(sid);
          if (t && !t.remoteEnded) {
            t.remoteEnded = true;
            t.notify();
            this.#maybeClose(t);
          }
        }
      },
      headers: (sid, flags, block) => this.#headerBlock(sid, flags, block),
      frame: (type, flags, sid, payload) => this.#frame(type, flags, sid, payload),
    };
  }

  #credit(n: number): void {
    this.#connUnacked += n;
    if (this.#connUnacked >= this.#opts.connectionWindow / 2) {
      this.#send(windowUpdateFrame(0, this.#connUnacked));
      this.#connRecvWindow += this.#connUnacked;
      this.#connUnacked = 0;
    }
  }

  /** A handler took `n` bytes of a request body: return them to both windows in batches. */
  consumed(s: Stream, n: number): void {
    this.#credit(n);
    if (s.remoteEnded || s.closed) return;
    s.unacked += n;
    if (s.unacked >= this.#opts.streamWindow / 2) {
      this.#send(windowUpdateFrame(s.id, s.unacked));
      s.recvWindow += s.unacked;
      s.unacked = 0;
    }
  }

  #headerBlock(sid: number, flags: number, block: Uint8Array): void {
    let fields: HeaderField[];
    try {
      fields = this.#decoder.decode(block);
    } catch (e) {
      protocolError((e as Error).message, ErrorCode.COMPRESSION_ERROR);
    }
    const end = (flags & Flag.END_STREAM) !== 0;
    const existing = this.#streams.get(sid);
    if (existing) {
      // Trailers of the request.
      if (!end || existing.remoteEnded) protocolError(`HEADERS again on stream ${sid}`);
      existing.remoteEnded = true;
      existing.notify();
      this.#maybeClose(existing);
      return;
    }
    if (sid % 2 === 0 || sid <= this.#lastStream) {
      if (sid % 2 === 0 || sid > this.#lastStream) protocolError(`HEADERS on stream ${sid}`);
      return; // a stream already closed (reset by us, say): nothing to do
    }
    this.#lastStream = sid;
    if (this.#goawaySent || this.#dead) {
      this.#sendControl(rstStreamFrame(sid, ErrorCode.REFUSED_STREAM));
      return;
    }
    if (this.#streams.size >= this.#opts.maxConcurrentStreams) {
      this.#sendControl(rstStreamFrame(sid, ErrorCode.REFUSED_STREAM));
      return;
    }
    const s = new Stream(sid, this, this.#peerInitialWindow, this.#opts.streamWindow);
    for (const [name, value] of fields) {
      if (name === ":method") s.method = value;
      else if (name === ":path") s.path = value;
      else if (name === ":authority") s.authority = value;
      else if (name.startsWith(":")) continue;
      else {
        if (name === "host" && !s.authority) s.authority = value;
        s.headers.push([name, value]);
      }
    }
    if (!s.method || !s.path) {
      this.#sendControl(rstStreamFrame(sid, ErrorCode.PROTOCOL_ERROR));
      return;
    }
    s.remoteEnded = end;
    this.#streams.set(sid, s);
    this.#onStreams?.(this.#streams.size);
    try {
      const r = this.#handler(s);
      if (r instanceof Promise) r.catch(() => this.reset(s, ErrorCode.INTERNAL_ERROR));
    } catch {
      this.reset(s, ErrorCode.INTERNAL_ERROR);
    }
  }

  #frame(type: number, flags: number, sid: number, payload: Uint8Array): void {
    const size = (n: number, what: string) => {
      if (payload.length !== n) {
        protocolError(`${what} of the wrong size`, ErrorCode.FRAME_SIZE_ERROR);
      }
    };
    const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
    switch (type) {
      case FrameType.RST_STREAM: {
        size(4, "RST_STREAM");
        if (sid === 0) protocolError("RST_STREAM on stream 0");
        const now = Date.now();
        if (now - this.#resetsSince > 1000) {
          this.#resetsSince = now;
          this.#resets = 0;
        }
        if (++this.#resets > MAX_RESETS_PER_SECOND) {
          protocolError("too many streams reset", ErrorCode.ENHANCE_YOUR_CALM);
        }
        const s = this.#streams.get(sid);
        if (s) {
          const code = view.getUint32(0);
          s.fail(
            new Http2Error("reset", `the client reset the stream: ${errorCodeName(code)}`, code),
          );
          this.#credit(s.queued);
          s.pieces = [];
          s.queued = 0;
          this.#forget(s);
        }
        break;
      }
      case FrameType.SETTINGS: {
        if (sid !== 0) protocolError("SETTINGS on a stream");
        if (flags & Flag.ACK) break;
        if (payload.length % 6 !== 0) {
          protocolError("SETTINGS of the wrong size", ErrorCode.FRAME_SIZE_ERROR);
        }
        for (let i = 0; i < payload.length; i += 6) {
          const id = view.getUint16(i);
          const value = view.getUint32(i + 2);
          if (id === Setting.INITIAL_WINDOW_SIZE) {
            if (value > MAX_WINDOW) protocolError("window too large", ErrorCode.FLOW_CONTROL_ERROR);
            const delta = value - this.#peerInitialWindow;
            this.#peerInitialWindow = value;
            for (const s of this.#streams.values()) s.sendWindow += delta;
          } else if (id === Setting.MAX_FRAME_SIZE) {
            if (value < 16384 || value > (1 << 24) - 1) protocolError("bad MAX_FRAME_SIZE");
            this.#peerMaxFrame = value;
          } else if (id === Setting.ENABLE_PUSH && value > 1) {
            protocolError("bad ENABLE_PUSH");
          }
        }
        this.#sendControl(settingsFrame([], true));
        this.#wakeSenders();
        break;
      }
      case FrameType.PING: {
        size(8, "PING");
        if (sid !== 0) protocolError("PING on a stream");
        if (!(flags & Flag.ACK)) this.#sendControl(frame(FrameType.PING, Flag.ACK, 0, payload));
        break;
      }
      case FrameType.GOAWAY: {
        // The client opens no more streams: finish those open, then close.
        this.#clientLeaving = true;
        if (this.#streams.size === 0) this.#closeWhenFlushed();
        break;
      }
      case FrameType.WINDOW_UPDATE: {
        size(4, "WINDOW_UPDATE");
        const inc = view.getUint32(0) & MAX_WINDOW;
        if (sid === 0) {
          if (inc === 0) protocolError("WINDOW_UPDATE of 0");
          this.#connSendWindow += inc;
          if (this.#connSendWindow > MAX_WINDOW) {
            protocolError("connection window over 2^31-1", ErrorCode.FLOW_CONTROL_ERROR);
          }
        } else {
          const s = this.#streams.get(sid);
          if (s) {
            s.sendWindow += inc;
            if (s.sendWindow > MAX_WINDOW) {
              this.reset(s, ErrorCode.FLOW_CONTROL_ERROR);
            }
          }
        }
        this.#wakeSenders();
        break;
      }
      case FrameType.PUSH_PROMISE:
        protocolError("PUSH_PROMISE from a client");
        break;
      default:
        break; // PRIORITY and unknown types are ignored
    }
  }

  #wakeSenders(): void {
    for (const w of this.#sendWaiters.splice(0)) w();
  }

  #maybeClose(s: Stream): void {
    if (s.localEnded && s.remoteEnded) this.#forget(s);
  }

  #forget(s: Stream): void {
    if (s.closed) return;
    s.closed = true;
    this.#streams.delete(s.id);
    this.#wakeSenders();
    this.#onStreams?.(this.#streams.size);
    if (this.#streams.size === 0 && (this.#goawaySent || this.#clientLeaving) && !this.#dead) {
      this.#closeWhenFlushed();
    }
  }

  #headers(s: Stream, fields: HeaderField[], endStream: boolean): void {
    const block = encodeHeaders(fields);
    const max = this.#peerMaxFrame;
    let o = 0;
    let first = true;
    do {
      const part = block.subarray(o, o + max);
      o += part.length;
      const last = o >= block.length;
      const f = (last ? Flag.END_HEADERS : 0) | (first && endStream ? Flag.END_STREAM : 0);
      this.#send(frame(first ? FrameType.HEADERS : FrameType.CONTINUATION, f, s.id, part));
      first = false;
    } while (o < block.length);
  }

  respond(s: Stream, status: number, headers: HeaderField[], endStream: boolean): void {
    if (s.headersSent || s.closed || this.#dead) return;
    s.headersSent = true;
    this.#headers(s, [[":status", String(status)], ...headers], endStream);
    if (endStream) this.#ended(s);
  }

  async write(s: Stream, parts: Uint8Array[]): Promise<void> {
    if (!s.headersSent) this.respond(s, 200, [], false);
    let total = 0;
    for (const p of parts) total += p.length;
    let pi = 0;
    let po = 0;
    while (total > 0) {
      if (s.error) throw s.error;
      if (this.#dead) throw new Http2Error("unavailable", "the connection was closed");
      if (s.localEnded) throw new Http2Error("cancelled", "the response has ended");
      const n = Math.min(total, this.#peerMaxFrame, s.sendWindow, this.#connSendWindow);
      if (n <= 0) {
        await new Promise<void>((r) => this.#sendWaiters.push(r));
        continue;
      }
      const head = new Uint8Array(FRAME_HEADER);
      frameHeader(head, 0, n, FrameType.DATA, 0, s.id);
      const out: Uint8Array[] = [head];
      let left = n;
      while (left > 0) {
        const p = parts[pi];
        const take = Math.min(left, p.length - po);
        out.push(p.subarray(po, po + take));
        po += take;
        left -= take;
        if (po === p.length) {
          pi++;
          po = 0;
        }
      }
      s.sendWindow -= n;
      this.#connSendWindow -= n;
      total -= n;
      this.#send(...out);
    }
    // A client that does not read holds the writer here, not in memory.
    await this.#writer.drained();
  }

  end(s: Stream, trailers?: HeaderField[]): void {
    if (s.localEnded || s.closed || this.#dead) return;
    if (!s.headersSent) {
      // Trailers-only (or an empty response).
      s.headersSent = true;
      this.#headers(s, [[":status", "200"], ...(trailers ?? [])], true);
    } else if (trailers && trailers.length > 0) {
      this.#headers(s, trailers, true);
    } else {
      const head = new Uint8Array(FRAME_HEADER);
      frameHeader(head, 0, 0, FrameType.DATA, Flag.END_STREAM, s.id);
      this.#send(head);
    }
    this.#ended(s);
  }

  #ended(s: Stream): void {
    s.localEnded = true;
    if (!s.remoteEnded) {
      // Answered before the request ended: the client may stop sending (RFC 9113 8.1).
      this.#send(rstStreamFrame(s.id, ErrorCode.NO_ERROR));
      this.#credit(s.queued);
      s.pieces = [];
      s.queued = 0;
      s.remoteEnded = true;
      s.notify();
    }
    this.#maybeClose(s);
  }

  reset(s: Stream, code: number): void {
    if (s.closed || this.#dead) return;
    this.#send(rstStreamFrame(s.id, code));
    s.fail(new Http2Error("reset", `stream reset: ${errorCodeName(code)}`, code));
    this.#credit(s.queued);
    s.pieces = [];
    s.queued = 0;
    this.#forget(s);
  }
}
