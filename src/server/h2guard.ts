/**
 * The HTTP/2 guard that keeps the daemon alive. Deno 2.9.6's `node:http2` server aborts the
 * whole process (an nghttp2 assertion in `find_stream_on_goaway_func`, exit 134, uncatchable)
 * when a client sends GOAWAY (denoland/deno#36788). So the HTTP/2 server listens only on a
 * private unix socket, the public listener is `Deno.listen`, and each connection is pumped
 * through, with every client→server GOAWAY frame cut out of the byte stream. A client's GOAWAY
 * only announces that it will open no more streams and is followed by the connection closing,
 * which the server still sees; dropping the frame loses nothing a server needs.
 *
 * @module
 */

/** Length of the HTTP/2 client connection preface (`PRI * HTTP/2.0…`). */
const PREFACE_LEN = 24;
/** Length of an HTTP/2 frame header. */
const HEADER_LEN = 9;
/** HTTP/2 frame type of GOAWAY. */
const GOAWAY = 0x7;

/**
 * Cuts GOAWAY frames out of a client→server HTTP/2 byte stream, fed in arbitrary pieces. The
 * state machine only looks at frame headers, so a piece without a GOAWAY comes back as one
 * span of the input (no copy).
 */
export class GoawayFilter {
  #preface = PREFACE_LEN;
  #header = new Uint8Array(HEADER_LEN);
  #headerFill = 0;
  #pass = 0; // payload bytes of the current frame still to pass through
  #skip = 0; // payload bytes of the current GOAWAY still to drop
  /** How many GOAWAY frames were dropped so far. */
  dropped = 0;

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
        if (input[i + 3] === GOAWAY) {
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
          if (h[3] === GOAWAY) {
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

const PUMP_BUFFER = 1 << 20;

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let w = 0;
  while (w < data.length) w += await conn.write(data.subarray(w));
}

/**
 * Pumps one public connection to the private HTTP/2 server and back, filtering GOAWAY from the
 * client. Resolves when both directions are done; never rejects.
 */
export async function pumpGuarded(client: Deno.Conn, server: Deno.Conn): Promise<void> {
  const inbound = async () => {
    const filter = new GoawayFilter();
    const buf = new Uint8Array(PUMP_BUFFER);
    try {
      for (;;) {
        const n = await client.read(buf);
        if (n === null) break;
        for (const span of filter.push(buf.subarray(0, n))) await writeAll(server, span);
      }
    } catch {
      // The client vanished or the server closed: either way this direction is over.
    }
    try {
      await server.closeWrite();
    } catch { /* already closed */ }
  };
  const outbound = async () => {
    const buf = new Uint8Array(PUMP_BUFFER);
    try {
      for (;;) {
        const n = await server.read(buf);
        if (n === null) break;
        await writeAll(client, buf.subarray(0, n));
      }
    } catch {
      // As above.
    }
    // The server is done with this connection: so is the client.
    try {
      client.close();
    } catch { /* already closed */ }
    try {
      server.close();
    } catch { /* already closed */ }
  };
  await Promise.all([inbound(), outbound()]);
}
