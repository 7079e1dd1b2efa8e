/**
 * The HTTP/2 guard that keeps our processes alive. Deno 2.9.6's `node:http2` crashes the whole
 * process (an nghttp2 assertion in `find_stream_on_goaway_func`, exit 134, or a segfault, exit
 * 139; uncatchable) when a session receives GOAWAY in some states (denoland/deno#36788): a
 * server when a client leaves, a client when its server stops after a large upload.
 *
 * So no `node:http2` session ever sees the peer's GOAWAY. The daemon's HTTP/2 server listens only
 * on a private unix socket behind `Deno.listen`, and each connection is pumped between `Deno`
 * sockets with the client's GOAWAY frames cut out of the byte stream ({@linkcode pumpGuarded} with
 * `cut: "client"`). Our clients need no guard: they speak HTTP/2 themselves (`src/http2/`).
 *
 * A GOAWAY only announces that the sender opens (or accepts) no more streams and is followed by
 * the connection closing, which the other side still sees; dropping the frame loses nothing the
 * other side needs. Streams a server refuses meanwhile fail with REFUSED_STREAM, as over a
 * connection that broke.
 *
 * @module
 */

/** Length of the HTTP/2 client connection preface (`PRI * HTTP/2.0…`). */
const PREFACE_LEN = 24;
/** Length of an HTTP/2 frame header. */
const HEADER_LEN = 9;
/** HTTP/2 frame types and flags the guard looks at. */
const DATA = 0x0, HEADERS = 0x1, RST_STREAM = 0x3, GOAWAY = 0x7;
const END_STREAM = 0x1;

/** Sees the header of every frame of one direction: type, flags, stream id. */
export type FrameObserver = (type: number, flags: number, stream: number) => void;

/** How {@linkcode GoawayFilter} treats the stream. */
export interface FilterOptions {
  /** Cut GOAWAY frames out (default true); false only observes. */
  drop?: boolean;
  /** Called with each frame header, in order. */
  onFrame?: FrameObserver;
}

/**
 * Cuts GOAWAY frames out of one direction of an HTTP/2 byte stream, fed in arbitrary pieces.
 * The state machine only looks at frame headers, so a piece without a GOAWAY comes back as one
 * span of the input (no copy).
 */
export class GoawayFilter {
  #preface: number;
  #header = new Uint8Array(HEADER_LEN);
  #headerFill = 0;
  #pass = 0; // payload bytes of the current frame still to pass through
  #skip = 0; // payload bytes of the current GOAWAY still to drop
  #drop: boolean;
  #onFrame?: FrameObserver;
  /** How many GOAWAY frames were dropped so far. */
  dropped = 0;

  /**
   * @param from Whose bytes are filtered: a client's begin with the 24-byte connection
   * preface, a server's with a frame.
   */
  constructor(from: "client" | "server", options: FilterOptions = {}) {
    this.#preface = from === "client" ? PREFACE_LEN : 0;
    this.#drop = options.drop ?? true;
    this.#onFrame = options.onFrame;
  }

  /**
   * Filters the next piece of the stream; returns the spans to forward, in order. Spans may
   * point into `input` or into the filter's own buffer, so forward them before the next call.
   */
  push(input: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let runStart = 0; // start of the span of `input` being forwarded as is
    let i = 0;
    const n = input.length;
    const flush = (end: number) => {
      if (end > runStart) out.push(input.subarray(runStart, end));
    };
    while (i < n) {
      if (this.#preface > 0) {
        const k = Math.min(this.#preface, n - i);
        this.#preface -= k;
        i += k;
      } else if (this.#pass > 0) {
        const k = Math.min(this.#pass, n - i);
        this.#pass -= k;
        i += k;
      } else if (this.#skip > 0) {
        const k = Math.min(this.#skip, n - i);
        this.#skip -= k;
        i += k;
        runStart = i;
      } else if (this.#headerFill === 0 && n - i >= HEADER_LEN) {
        // Fast path: the whole header is in this piece.
        const len = (input[i] << 16) | (input[i + 1] << 8) | input[i + 2];
        this.#onFrame?.(input[i + 3], input[i + 4], streamId(input, i + 5));
        if (input[i + 3] === GOAWAY && this.#drop) {
          flush(i);
          this.dropped++;
          this.#skip = len;
          i += HEADER_LEN;
          runStart = i;
        } else {
          this.#pass = len;
          i += HEADER_LEN;
        }
      } else {
        // A header split across pieces: collect it, forwarding nothing of it yet.
        if (this.#headerFill === 0) flush(i);
        const k = Math.min(HEADER_LEN - this.#headerFill, n - i);
        this.#header.set(input.subarray(i, i + k), this.#headerFill);
        this.#headerFill += k;
        i += k;
        runStart = i;
        if (this.#headerFill === HEADER_LEN) {
          this.#headerFill = 0;
          const h = this.#header;
          const len = (h[0] << 16) | (h[1] << 8) | h[2];
          this.#onFrame?.(h[3], h[4], streamId(h, 5));
          if (h[3] === GOAWAY && this.#drop) {
            this.dropped++;
            this.#skip = len;
          } else {
            out.push(h.slice());
            this.#pass = len;
          }
        }
      }
    }
    if (this.#headerFill === 0) flush(n);
    return out;
  }
}

function streamId(b: Uint8Array, at: number): number {
  return ((b[at] & 0x7f) << 24 | b[at + 1] << 16 | b[at + 2] << 8 | b[at + 3]) >>> 0;
}

/**
 * Counts the open streams of one HTTP/2 connection from both directions' frame headers, so a
 * connection with none can be told from a busy one (a long Read, a health Watch) without
 * asking the HTTP/2 server. A stream opens with the client's HEADERS and closes when both
 * sides sent END_STREAM or either sent RST_STREAM.
 */
export class StreamTracker {
  #ended = new Map<number, number>(); // open stream → END_STREAM seen: 1 client, 2 server
  #highest = 0;
  /** Called whenever the number of open streams changes. */
  onChange?: (open: number) => void;

  /** Open streams now. */
  get open(): number {
    return this.#ended.size;
  }

  /** The observer for the bytes `from` sends. */
  observer(from: "client" | "server"): FrameObserver {
    const bit = from === "client" ? 1 : 2;
    return (type, flags, id) => {
      if (id === 0) return;
      const before = this.#ended.size;
      if (type === RST_STREAM) {
        this.#ended.delete(id);
      } else if (type === HEADERS || type === DATA) {
        let ended = this.#ended.get(id);
        if (ended === undefined) {
          // Only a client's HEADERS on a new stream id opens one; anything else on an unknown
          // id belongs to a stream already reset.
          if (from !== "client" || type !== HEADERS || id <= this.#highest) return;
          this.#highest = id;
          ended = 0;
        }
        if (flags & END_STREAM) ended |= bit;
        if (ended === 3) this.#ended.delete(id);
        else this.#ended.set(id, ended);
      }
      if (this.#ended.size !== before) this.onChange?.(this.#ended.size);
    };
  }
}

// The pump's read buffer starts small (an idle connection costs little) and grows while reads
// fill it, up to this.
const PUMP_BUFFER_MIN = 16 << 10;
const PUMP_BUFFER = 1 << 20;

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let w = 0;
  while (w < data.length) w += await conn.write(data.subarray(w));
}

/** Copies one direction until its end, through `filter` when given. Never rejects. */
// The next piece is read while the last is written (two buffers per direction, a read ahead of
// the writes: one piece at a time left the connection idle between them). A peer that does not
// read stops the pump, and then the sender, by flow control: at most two buffers are held.
async function copy(
  from: Deno.Conn,
  to: Deno.Conn,
  filter?: GoawayFilter,
  first?: Uint8Array,
): Promise<void> {
  const bufs = [new Uint8Array(PUMP_BUFFER_MIN), new Uint8Array(PUMP_BUFFER_MIN)];
  const send = async (piece: Uint8Array) => {
    if (!filter) await writeAll(to, piece);
    else for (const span of filter.push(piece)) await writeAll(to, span);
  };
  let writing: Promise<void> = Promise.resolve();
  try {
    if (first) await send(first);
    for (let k = 0;; k ^= 1) {
      const buf = bufs[k];
      const n = await from.read(buf);
      if (n === null) break;
      await writing; // in order, and the other buffer is free again
      writing = send(buf.subarray(0, n));
      writing.catch(() => {}); // seen by the next await, or the last
      // A full read asks for a bigger buffer (the one being written keeps its own).
      if (n === buf.length && buf.length < PUMP_BUFFER) bufs[k] = new Uint8Array(buf.length * 4);
    }
    await writing;
  } catch {
    // The sender vanished or the receiver closed: either way this direction is over.
    await writing.catch(() => {});
  }
}

/**
 * Pumps one connection between an HTTP/2 client and server, cutting out the GOAWAY frames of
 * the side named by `cut`, and counting its open streams in `tracker` when given. `serverFirst`
 * and `clientFirst`: bytes already read from either, forwarded first. Resolves when both
 * directions are done; never rejects.
 */
export async function pumpGuarded(
  client: Deno.Conn,
  server: Deno.Conn,
  cut: "client" | "server",
  tracker?: StreamTracker,
  serverFirst?: Uint8Array,
  clientFirst?: Uint8Array,
): Promise<void> {
  const filter = (from: "client" | "server") =>
    cut === from || tracker
      ? new GoawayFilter(from, { drop: cut === from, onFrame: tracker?.observer(from) })
      : undefined;
  const inbound = async () => {
    await copy(client, server, filter("client"), clientFirst);
    // A client gone with streams open (a Watch, a Read it abandoned) cannot take the rest (nor
    // open windows for it), and a server may keep such a stream forever: end it all. Otherwise
    // a half-close lets the server finish and close.
    if (tracker && tracker.open > 0) {
      for (const c of [client, server]) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      return;
    }
    try {
      await server.closeWrite();
    } catch { /* already closed */ }
  };
  const outbound = async () => {
    await copy(server, client, filter("server"), serverFirst);
    // The server is done with this connection: so is the client.
    for (const c of [client, server]) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
  };
  await Promise.all([inbound(), outbound()]);
}
