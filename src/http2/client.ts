/**
 * An HTTP/2 client (RFC 9113) over Deno's own connections (TCP, unix sockets, TLS with ALPN
 * `h2`). It exists for speed: Deno's `node:http2` hands a receiver a 1 MiB response in ≈80
 * pieces at ≈50 µs each; this client reads the socket in large pieces and parses frames itself
 * (docs/decisions/http2.md). It speaks what a gRPC client needs: requests with a body,
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
  FrameType,
  goawayFrame,
  MAX_WINDOW,
  rstStreamFrame,
  Setting,
} from "./frames.ts";
import type { HeaderField } from "./hpack.ts";
import { Http2Error, protocolError } from "./connection.ts";
import { Http2Peer, PeerStream } from "./peer.ts";

export { Http2Error, type Http2ErrorKind } from "./connection.ts";

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

/** Largest frame we accept (SETTINGS_MAX_FRAME_SIZE sent). */
const MAX_FRAME = 4 << 20;
/** Largest header block (all its CONTINUATION frames) we accept. */
const MAX_HEADER_BLOCK = 1 << 20;

/**
 * A request body: all of it, streamed from an iterable, written by the caller through
 * {@linkcode Http2Call.write} (`"writer"`), or none.
 */
export type RequestBody = Uint8Array | AsyncIterable<Uint8Array> | "writer" | null;

/** A call in progress: the response's headers, its body as it arrives, then its trailers. */
export interface Http2Call {
  /** The response headers (the first HEADERS block); rejects if the call fails before them. */
  readonly response: Promise<HeaderField[]>;
  /**
   * The body's pieces as they arrive. Each piece is the caller's to keep; taking it returns its
   * bytes to the flow-control windows. Throws {@linkcode Http2Error} if the call fails.
   */
  body(): AsyncGenerator<Uint8Array>;
  /** The trailers, once the body has ended (null if the response had none). */
  readonly trailers: HeaderField[] | null;
  /** Stops the call (RST_STREAM CANCEL) unless it has ended; queued data is dropped. */
  cancel(): void;
  /**
   * For a `"writer"` body: sends the pieces back to back within the server's windows; resolves
   * once they were written to the connection (the caller may then reuse them).
   */
  write(parts: Uint8Array[]): Promise<void>;
  /** For a `"writer"` body: ends it. */
  end(): Promise<void>;
}

class Stream extends PeerStream implements Http2Call {
  readonly response: Promise<HeaderField[]>;
  #resolve!: (h: HeaderField[]) => void;
  #reject!: (e: unknown) => void;
  #conn: Connection;
  headers: HeaderField[] | null = null;
  trailers: HeaderField[] | null = null;

  constructor(id: number, conn: Connection, sendWindow: number, recvWindow: number) {
    super(id, sendWindow, recvWindow);
    this.#conn = conn;
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

  async *body(): AsyncGenerator<Uint8Array> {
    try {
      yield* this.received(this.#conn);
    } finally {
      this.cancel();
    }
  }

  cancel(): void {
    this.#conn.cancel(this);
  }

  write(parts: Uint8Array[]): Promise<void> {
    return this.#conn.sendData(this, parts, false);
  }

  end(): Promise<void> {
    if (this.localEnded || this.closed) return Promise.resolve();
    return this.#conn.sendData(this, new Uint8Array(0), true);
  }
}

/** One HTTP/2 connection; the client makes a new one when this one is draining or lost. */
class Connection extends Http2Peer<Stream> {
  #opts: Required<Omit<Http2ClientOptions, "connect">>;
  #nextId = 1;
  /** New calls may not start here (GOAWAY received or sent, or lost). */
  draining = false;
  dead: Http2Error | null = null;
  #onIdle: () => void;
  #peerMaxStreams = Infinity;
  #waitingForSlot: (() => void)[] = [];
  // Liveness.
  #lastFrame = 0;
  #pingSent = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    sock: Deno.Conn,
    opts: Required<Omit<Http2ClientOptions, "connect">>,
    onIdle: () => void,
  ) {
    super(sock, {
      streamWindow: opts.streamWindow,
      connectionWindow: opts.connectionWindow,
      maxFrame: MAX_FRAME,
      maxHeaderBlock: MAX_HEADER_BLOCK,
      // Room for a few whole 1 MiB Read messages and their frame headers.
      readBuffer: (4 << 20) + (64 << 10),
    }, (e) =>
      this.#fail(
        new Http2Error("unavailable", `write failed: ${(e as Error).message}`, undefined, {
          cause: e,
        }),
      ));
    this.#opts = opts;
    this.#onIdle = onIdle;
    this.send(CLIENT_PREFACE);
    this.sendSettings([[Setting.ENABLE_PUSH, 0]]);
    this.sock.unref();
    this.#readLoop();
  }

  protected get ended(): boolean {
    return this.dead !== null;
  }

  /** Opens a stream: waits for a slot under the server's stream limit. */
  async open(headers: HeaderField[], body: RequestBody): Promise<Stream> {
    while (this.streams.size >= this.#peerMaxStreams && !this.dead && !this.draining) {
      await new Promise<void>((r) => this.#waitingForSlot.push(r));
    }
    if (this.dead) throw this.dead;
    if (this.draining) throw new Http2Error("refused", "the connection is closing");
    const id = this.#nextId;
    this.#nextId += 2;
    if (this.#nextId > MAX_WINDOW) this.draining = true;
    const s = new Stream(id, this, this.peerInitialWindow, this.local.streamWindow);
    this.streams.set(id, s);
    if (this.streams.size === 1) this.#busy();
    this.sendHeaders(id, headers, body === null);
    if (body === null) s.localEnded = true;
    else if (body instanceof Uint8Array) await this.sendData(s, body, true);
    else if (body !== "writer") this.#sendBody(s, body);
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
      this.send(rstStreamFrame(s.id, ErrorCode.CANCEL));
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
      this.forget(s);
    }
  }

  cancel(s: Stream): void {
    // Bytes never consumed still count against the connection window: give them back.
    this.dropReceived(s);
    if (s.closed) return;
    this.send(rstStreamFrame(s.id, ErrorCode.CANCEL));
    s.fail(new Http2Error("cancelled", "call cancelled"));
    this.forget(s);
  }

  protected forget(s: Stream): void {
    if (s.closed) return;
    s.closed = true;
    this.streams.delete(s.id);
    this.wakeSenders();
    this.#waitingForSlot.shift()?.();
    if (this.streams.size === 0) this.#idle();
  }

  protected streamError(s: Stream, code: number): void {
    this.send(rstStreamFrame(s.id, code));
    s.fail(new Http2Error("protocol", `stream ${s.id}: ${errorCodeName(code)}`, code));
    this.forget(s);
  }

  protected override settingsApplied(maxStreams: number | undefined): void {
    if (maxStreams !== undefined) this.#peerMaxStreams = maxStreams;
    for (const w of this.#waitingForSlot.splice(0)) w();
  }

  protected override pingAnswered(): void {
    this.#pingSent = 0;
  }

  #busy(): void {
    try {
      this.sock.ref();
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
      this.sock.unref();
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
      this.send(frame(FrameType.PING, 0, 0, new Uint8Array(8)));
    }
  }

  async #readLoop(): Promise<void> {
    try {
      for (;;) {
        const n = await this.readSome();
        if (n === null) {
          this.#fail(new Http2Error("unavailable", "the server closed the connection"));
          return;
        }
        this.#lastFrame = Date.now();
        if (this.dead) return;
      }
    } catch (e) {
      if (this.dead) return;
      if (e instanceof Http2Error && e.kind === "protocol") {
        // We accept no streams of the server's: the last one is 0.
        this.send(goawayFrame(0, e.h2Code ?? ErrorCode.PROTOCOL_ERROR));
        this.#fail(
          new Http2Error(
            "protocol",
            `HTTP/2 protocol error from the server: ${e.message}`,
            e.h2Code,
          ),
        );
        return;
      }
      this.#fail(
        new Http2Error("unavailable", `connection lost: ${(e as Error).message}`, undefined, {
          cause: e,
        }),
      );
    }
  }

  protected dataFor(sid: number): Stream | null {
    const s = this.streams.get(sid);
    if (s && s.headers === null) protocolError(`DATA before HEADERS on stream ${sid}`);
    return s && !s.remoteEnded && !s.error ? s : null;
  }

  protected otherFrame(type: number, _flags: number, sid: number, payload: Uint8Array): void {
    const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
    switch (type) {
      case FrameType.RST_STREAM: {
        if (payload.length !== 4) {
          protocolError("RST_STREAM of the wrong size", ErrorCode.FRAME_SIZE_ERROR);
        }
        const code = view.getUint32(0);
        const s = this.streams.get(sid);
        if (s) {
          // A reset after the whole response (NO_ERROR) only stops our sending.
          s.fail(
            new Http2Error(
              code === ErrorCode.REFUSED_STREAM ? "refused" : "reset",
              `the server reset the stream: ${errorCodeName(code)}`,
              code,
            ),
          );
          this.forget(s);
        }
        break;
      }
      case FrameType.GOAWAY: {
        if (payload.length < 8) {
          protocolError("GOAWAY of the wrong size", ErrorCode.FRAME_SIZE_ERROR);
        }
        const last = view.getUint32(0) & MAX_WINDOW;
        const code = view.getUint32(4);
        this.draining = true;
        for (const s of [...this.streams.values()]) {
          if (s.id > last) {
            s.fail(
              new Http2Error("refused", `the server is going away (${errorCodeName(code)})`, code),
            );
            this.forget(s);
          }
        }
        for (const w of this.#waitingForSlot.splice(0)) w();
        if (this.streams.size === 0) this.close();
        this.#onIdle();
        break;
      }
      default:
        break; // PRIORITY and unknown types are ignored
    }
  }

  protected headerBlock(sid: number, flags: number, block: Uint8Array): void {
    const fields = this.decodeHeaders(block);
    const s = this.streams.get(sid);
    if (!s || s.remoteEnded) return; // decoded for the table's sake only
    const end = (flags & Flag.END_STREAM) !== 0;
    if (s.headers === null) {
      const status = fields.find(([n]) => n === ":status")?.[1];
      if (status === undefined) protocolError(`response without :status on stream ${s.id}`);
      if (status.startsWith("1") && !end) return; // informational
      s.gotHeaders(fields);
    } else {
      if (!end) protocolError(`trailers without END_STREAM on stream ${s.id}`);
      s.trailers = fields;
    }
    if (end) this.remoteEnd(s);
  }

  #fail(e: Http2Error): void {
    if (this.dead) return;
    this.dead = e;
    this.draining = true;
    for (const s of [...this.streams.values()]) {
      s.fail(e);
      this.forget(s);
    }
    this.wakeSenders();
    for (const w of this.#waitingForSlot.splice(0)) w();
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    try {
      this.sock.close();
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
