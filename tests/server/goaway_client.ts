/**
 * A deliberately rude HTTP/2 gRPC client for crash-loop tests: it opens a connection, reads a
 * blob (fully or partly), and leaves with GOAWAY, or by dropping the connection.
 *
 * It writes the HTTP/2 frames itself on a plain `Deno.connect` socket. Deno's `node:http2`
 * client, leaving this rudely thousands of times, can itself crash the process it runs in (the
 * nghttp2 session teardown of denoland/deno#36788), and that process is the test runner.
 *
 * @module
 */

/** How a cycle ends the connection. */
export type Leave = "goaway" | "close" | "destroy" | "early-goaway";

/** The gRPC request body of BlobService/Read for a digest (5-byte frame prefix + message). */
export function readRequestBody(digest: Uint8Array): Uint8Array {
  const msg = new Uint8Array(2 + digest.length);
  msg[0] = 0x0a; // field 1, length-delimited
  msg[1] = digest.length;
  msg.set(digest, 2);
  const body = new Uint8Array(5 + msg.length);
  new DataView(body.buffer).setUint32(1, msg.length);
  body.set(msg, 5);
  return body;
}

/** `host:port` or `unix:/path` → a function opening a connection there. */
export function sessionOpener(address: string): () => Promise<Deno.Conn> {
  if (address.startsWith("unix:")) {
    const path = address.slice(5);
    return () => Deno.connect({ transport: "unix", path });
  }
  const colon = address.lastIndexOf(":");
  const hostname = address.slice(0, colon).replace(/^\[|\]$/g, "");
  const port = Number(address.slice(colon + 1));
  return () => Deno.connect({ hostname, port });
}

const DATA = 0x0, HEADERS = 0x1, RST_STREAM = 0x3, SETTINGS = 0x4, PING = 0x6, GOAWAY = 0x7;
const WINDOW_UPDATE = 0x8;
const END_STREAM = 0x1, ACK = 0x1, END_HEADERS = 0x4;

function frame(type: number, flags: number, stream: number, payload: Uint8Array): Uint8Array {
  const f = new Uint8Array(9 + payload.length);
  const v = new DataView(f.buffer);
  v.setUint32(0, payload.length << 8); // 24-bit length, then the type byte overwritten below
  f[3] = type;
  f[4] = flags;
  v.setUint32(5, stream);
  f.set(payload, 9);
  return f;
}

function u32s(...words: number[]): Uint8Array {
  const b = new Uint8Array(words.length * 4);
  words.forEach((w, i) => new DataView(b.buffer).setUint32(i * 4, w));
  return b;
}

/** HPACK "literal header field without indexing, new name", no Huffman (all lengths < 127). */
function hpack(headers: [string, string][]): Uint8Array {
  const out: number[] = [];
  const enc = new TextEncoder();
  for (const [name, value] of headers) {
    const n = enc.encode(name), v = enc.encode(value);
    out.push(0x00, n.length, ...n, v.length, ...v);
  }
  return new Uint8Array(out);
}

/** Everything a polite client sends before the response: preface, settings, window, request. */
function requestBytes(body: Uint8Array): Uint8Array {
  const preface = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  // SETTINGS_INITIAL_WINDOW_SIZE (4) at its maximum, and the connection window opened as far:
  // the server may send the whole blob without waiting for us.
  const settings = new Uint8Array(6);
  new DataView(settings.buffer).setUint16(0, 4);
  new DataView(settings.buffer).setUint32(2, 0x7fffffff);
  const parts = [
    preface,
    frame(SETTINGS, 0, 0, settings),
    frame(WINDOW_UPDATE, 0, 0, u32s(0x7fffffff - 65535)),
    frame(
      HEADERS,
      END_HEADERS,
      1,
      hpack([
        [":method", "POST"],
        [":scheme", "http"],
        [":path", "/tvix.castore.v1.BlobService/Read"],
        [":authority", "localhost"],
        ["content-type", "application/grpc"],
        ["te", "trailers"],
      ]),
    ),
    frame(DATA, END_STREAM, 1, body),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
}

/**
 * One connect/read/disconnect cycle; resolves with the response bytes received on the stream
 * (never rejects: a rude client does not care how the server feels).
 *
 * - `goaway`: reads the whole response, sends GOAWAY, closes;
 * - `early-goaway`: sends GOAWAY after 100 kB, with data still in flight, and closes;
 * - `close`: reads the whole response and closes without GOAWAY;
 * - `destroy`: closes without a word after the first DATA frame.
 */
export async function readCycle(
  open: () => Promise<Deno.Conn>,
  body: Uint8Array,
  leave: Leave,
): Promise<number> {
  let conn: Deno.Conn;
  try {
    conn = await open();
  } catch {
    return 0;
  }
  let got = 0;
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch { /* already closed */ }
  }, 10_000);
  try {
    await writeAll(conn, requestBytes(body));
    let buf = new Uint8Array(0);
    const chunk = new Uint8Array(64 << 10);
    let ended = false;
    while (!ended) {
      const n = await conn.read(chunk);
      if (n === null) break;
      const joined = new Uint8Array(buf.length + n);
      joined.set(buf);
      joined.set(chunk.subarray(0, n), buf.length);
      buf = joined;
      let off = 0;
      while (!ended && buf.length - off >= 9) {
        const len = (buf[off] << 16) | (buf[off + 1] << 8) | buf[off + 2];
        if (buf.length - off < 9 + len) break;
        const type = buf[off + 3], flags = buf[off + 4];
        const stream = new DataView(buf.buffer, buf.byteOffset + off + 5, 4).getUint32(0) &
          0x7fffffff;
        const payload = buf.subarray(off + 9, off + 9 + len);
        off += 9 + len;
        if (type === SETTINGS && !(flags & ACK)) {
          await writeAll(conn, frame(SETTINGS, ACK, 0, new Uint8Array()));
        } else if (type === PING && !(flags & ACK)) {
          await writeAll(conn, frame(PING, ACK, 0, payload));
        } else if (type === DATA && stream === 1) {
          got += len;
          if (leave === "destroy") ended = true;
          else if (leave === "early-goaway" && got > 100_000) {
            await writeAll(conn, frame(GOAWAY, 0, 0, u32s(0, 0)));
            ended = true;
          }
          if (flags & END_STREAM) ended = true;
        } else if (type === HEADERS && stream === 1 && flags & END_STREAM) {
          ended = true; // trailers
        } else if (type === RST_STREAM || type === GOAWAY) {
          ended = true;
        }
      }
      buf = buf.slice(off);
    }
    if (leave === "goaway") await writeAll(conn, frame(GOAWAY, 0, 0, u32s(1, 0)));
  } catch { /* the server left first: fine */ }
  clearTimeout(timer);
  try {
    conn.close();
  } catch { /* already closed */ }
  return got;
}
