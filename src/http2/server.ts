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
  FRAME_HEADER,
  frameHeader,
  FrameType,
  goawayFrame,
  rstStreamFrame,
  Setting,
} from "./frames.ts";
import type { HeaderField } from "./hpack.ts";
import { Http2Error, protocolError } from "./connection.ts";
import { Http2Peer, PeerStream } from "./peer.ts";

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

/** Bytes asked of the socket while the client's preface is awaited. */
const PREFACE_READ = 64 << 10;
/** Largest frame we accept (SETTINGS_MAX_FRAME_SIZE sent). */
const MAX_FRAME = 1 << 20;
/** Client resets per second after which the connection is closed (CVE-2023-44487). */
const MAX_RESETS_PER_SECOND = 500;
/** How long a closing connection waits for the client to close its side. */
const LINGER_MS = 2_000;

class Stream extends PeerStream implements ServerStream {
  method = "";
  path = "";
  authority = "";
  headers: HeaderField[] = [];
  readonly #abort = new AbortController();
  readonly signal = this.#abort.signal;
  #conn: Http2ServerConnection;
  headersSent = false;

  constructor(id: number, conn: Http2ServerConnection, sendWindow: number, recvWindow: number) {
    super(id, sendWindow, recvWindow);
    this.#conn = conn;
  }

  fail(e: Http2Error): void {
    if (this.error || this.localEnded) return;
    this.error = e;
    this.#abort.abort(e);
    this.notify();
  }

  body(): AsyncGenerator<Uint8Array> {
    return this.received(this.#conn);
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
export class Http2ServerConnection extends Http2Peer<Stream> {
  #handler: (stream: ServerStream) => void | Promise<void>;
  #maxStreams: number;
  #onStreams?: (open: number) => void;
  #lastStream = 0;
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
    super(sock, {
      streamWindow: options.streamWindow ?? 8 << 20,
      connectionWindow: options.connectionWindow ?? 32 << 20,
      maxFrame: MAX_FRAME,
      maxHeaderBlock: options.maxHeaderBlock ?? 64 << 10,
      // A 1 MiB frame (a Put chunk) and some: a connection may be one of a thousand.
      readBuffer: (1 << 20) + (64 << 10),
    }, () => this.close());
    this.#handler = handler;
    this.#maxStreams = options.maxConcurrentStreams ?? 256;
    this.#onStreams = options.onStreams;
    this.#readLoop();
  }

  protected get ended(): boolean {
    return this.#dead;
  }

  /**
   * Stops taking new streams (GOAWAY with the last stream taken); the connection closes once the
   * open ones have ended and what they wrote has been sent.
   */
  shutdown(): void {
    if (this.#dead || this.#goawaySent) return;
    this.#goawaySent = true;
    this.send(goawayFrame(this.#lastStream, ErrorCode.NO_ERROR));
    if (this.streams.size === 0) this.#closeWhenFlushed();
  }

  /** Ends the connection now; open streams are aborted. */
  close(): void {
    if (this.#dead) return;
    this.#dead = true;
    const e = new Http2Error("unavailable", "the connection was closed");
    for (const s of [...this.streams.values()]) {
      s.fail(e);
      this.forget(s);
    }
    this.wakeSenders();
    try {
      this.sock.close();
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
    await this.writer.drained();
    if (this.#dead) return;
    try {
      await this.sock.closeWrite();
    } catch {
      return this.close();
    }
    const t = setTimeout(() => this.close(), LINGER_MS);
    await this.done;
    clearTimeout(t);
  }

  async #readLoop(): Promise<void> {
    const buf = new Uint8Array(PREFACE_READ);
    try {
      // The client connection preface first.
      let got = 0;
      const preface = new Uint8Array(CLIENT_PREFACE.length);
      while (got < preface.length) {
        const n = await this.sock.read(buf);
        if (n === null) return this.close();
        const take = Math.min(n, preface.length - got);
        preface.set(buf.subarray(0, take), got);
        for (let i = got; i < got + take; i++) {
          if (preface[i] !== CLIENT_PREFACE[i]) return await this.#notHttp2(preface, got + take);
        }
        got += take;
        // Our side of the preface, once the client's has arrived.
        if (got === preface.length) {
          this.sendSettings([[Setting.MAX_CONCURRENT_STREAMS, this.#maxStreams]]);
        }
        // Frames that came with it: a copy, as the frames' data views are kept.
        if (take < n) this.received(buf.slice(take, n));
      }
      for (;;) {
        if ((await this.readSome()) === null) break;
        if (this.#dead) return;
      }
    } catch (e) {
      if (this.#dead) return;
      if (e instanceof Http2Error && e.kind === "protocol") {
        this.send(goawayFrame(this.#lastStream, e.h2Code ?? ErrorCode.PROTOCOL_ERROR));
        await Promise.race([this.writer.drained(), new Promise((r) => setTimeout(r, 100))]);
      }
    }
    this.close();
  }

  /** Something other than HTTP/2 with prior knowledge: HTTP/1.x gets a readable answer. */
  async #notHttp2(start: Uint8Array, n: number): Promise<void> {
    const text = new TextDecoder().decode(start.subarray(0, n));
    if (/^[A-Z]+ /.test(text)) {
      const body = "this is a gRPC server: it speaks HTTP/2 only\n";
      this.send(new TextEncoder().encode(
        `HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-type: text/plain\r\n` +
          `content-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
      ));
    } else {
      this.send(goawayFrame(0, ErrorCode.PROTOCOL_ERROR));
    }
    await Promise.race([this.writer.drained(), new Promise((r) => setTimeout(r, 100))]);
    this.close();
  }

  protected dataFor(sid: number): Stream | null {
    const s = this.streams.get(sid);
    if (s) {
      if (s.remoteEnded) {
        protocolError(`DATA after the end of stream ${sid}`, ErrorCode.STREAM_CLOSED);
      }
    } else if (sid > this.#lastStream) {
      protocolError(`DATA on idle stream ${sid}`);
    }
    return s && !s.error ? s : null;
  }

  protected headerBlock(sid: number, flags: number, block: Uint8Array): void {
    const fields = this.decodeHeaders(block);
    const end = (flags & Flag.END_STREAM) !== 0;
    const existing = this.streams.get(sid);
    if (existing) {
      // Trailers of the request.
      if (!end || existing.remoteEnded) protocolError(`HEADERS again on stream ${sid}`);
      this.remoteEnd(existing);
      return;
    }
    if (sid % 2 === 0 || sid <= this.#lastStream) {
      if (sid % 2 === 0 || sid > this.#lastStream) protocolError(`HEADERS on stream ${sid}`);
      return; // a stream already closed (reset by us, say): nothing to do
    }
    this.#lastStream = sid;
    if (this.#goawaySent || this.#dead || this.streams.size >= this.#maxStreams) {
      this.sendControl(rstStreamFrame(sid, ErrorCode.REFUSED_STREAM));
      return;
    }
    const s = new Stream(sid, this, this.peerInitialWindow, this.local.streamWindow);
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
      this.sendControl(rstStreamFrame(sid, ErrorCode.PROTOCOL_ERROR));
      return;
    }
    s.remoteEnded = end;
    this.streams.set(sid, s);
    this.#onStreams?.(this.streams.size);
    try {
      const r = this.#handler(s);
      if (r instanceof Promise) r.catch(() => this.reset(s, ErrorCode.INTERNAL_ERROR));
    } catch {
      this.reset(s, ErrorCode.INTERNAL_ERROR);
    }
  }

  protected otherFrame(type: number, _flags: number, sid: number, payload: Uint8Array): void {
    switch (type) {
      case FrameType.RST_STREAM: {
        if (payload.length !== 4) {
          protocolError("RST_STREAM of the wrong size", ErrorCode.FRAME_SIZE_ERROR);
        }
        if (sid === 0) protocolError("RST_STREAM on stream 0");
        const now = Date.now();
        if (now - this.#resetsSince > 1000) {
          this.#resetsSince = now;
          this.#resets = 0;
        }
        if (++this.#resets > MAX_RESETS_PER_SECOND) {
          protocolError("too many streams reset", ErrorCode.ENHANCE_YOUR_CALM);
        }
        const s = this.streams.get(sid);
        if (s) {
          const code = new DataView(payload.buffer, payload.byteOffset, 4).getUint32(0);
          s.fail(
            new Http2Error("reset", `the client reset the stream: ${errorCodeName(code)}`, code),
          );
          this.dropReceived(s);
          this.forget(s);
        }
        break;
      }
      case FrameType.GOAWAY:
        // The client opens no more streams: finish those open, then close.
        this.#clientLeaving = true;
        if (this.streams.size === 0) this.#closeWhenFlushed();
        break;
      default:
        break; // PRIORITY and unknown types are ignored
    }
  }

  protected streamError(s: Stream, code: number): void {
    this.reset(s, code);
  }

  protected forget(s: Stream): void {
    if (s.closed) return;
    s.closed = true;
    this.streams.delete(s.id);
    this.wakeSenders();
    this.#onStreams?.(this.streams.size);
    if (this.streams.size === 0 && (this.#goawaySent || this.#clientLeaving) && !this.#dead) {
      this.#closeWhenFlushed();
    }
  }

  respond(s: Stream, status: number, headers: HeaderField[], endStream: boolean): void {
    if (s.headersSent || s.closed || this.#dead) return;
    s.headersSent = true;
    this.sendHeaders(s.id, [[":status", String(status)], ...headers], endStream);
    if (endStream) this.#ended(s);
  }

  async write(s: Stream, parts: Uint8Array[]): Promise<void> {
    if (!s.headersSent) this.respond(s, 200, [], false);
    // A client that does not read holds the writer here, not in memory.
    await this.sendData(s, parts, false);
  }

  end(s: Stream, trailers?: HeaderField[]): void {
    if (s.localEnded || s.closed || this.#dead) return;
    if (!s.headersSent) {
      // Trailers-only (or an empty response).
      s.headersSent = true;
      this.sendHeaders(s.id, [[":status", "200"], ...(trailers ?? [])], true);
    } else if (trailers && trailers.length > 0) {
      this.sendHeaders(s.id, trailers, true);
    } else {
      const head = new Uint8Array(FRAME_HEADER);
      frameHeader(head, 0, 0, FrameType.DATA, Flag.END_STREAM, s.id);
      this.send(head);
    }
    this.#ended(s);
  }

  #ended(s: Stream): void {
    s.localEnded = true;
    if (!s.remoteEnded) {
      // Answered before the request ended: the client may stop sending (RFC 9113 8.1).
      this.send(rstStreamFrame(s.id, ErrorCode.NO_ERROR));
      this.dropReceived(s);
      s.remoteEnded = true;
      s.notify();
    }
    this.maybeClose(s);
  }

  reset(s: Stream, code: number): void {
    if (s.closed || this.#dead) return;
    this.send(rstStreamFrame(s.id, code));
    s.fail(new Http2Error("reset", `stream reset: ${errorCodeName(code)}`, code));
    this.dropReceived(s);
    this.forget(s);
  }
}
