/**
 * Our HTTP/2 client against node:http2's server (flow control both ways, padding, Huffman and
 * the dynamic table, stream limits, resets, cancellation) and against a scripted raw server for
 * what node does not send on demand (CONTINUATION, GOAWAY mid-call, a lost or silent peer).
 */
import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { Http2Client, Http2Error } from "../../src/http2/client.ts";
import {
  CLIENT_PREFACE,
  ErrorCode,
  Flag,
  frame,
  FRAME_HEADER,
  FrameType,
  goawayFrame,
  rstStreamFrame,
  settingsFrame,
} from "../../src/http2/frames.ts";
import { encodeHeaders, type HeaderField } from "../../src/http2/hpack.ts";

/** A client of a server on 127.0.0.1:`port`, with `options` over the defaults. */
function loopbackClient(port: number, options: object = {}): Http2Client {
  return new Http2Client({
    connect: () => Deno.connect({ hostname: "127.0.0.1", port }),
    authority: `127.0.0.1:${port}`,
    scheme: "http",
    ...options,
  });
}

type Handler = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void;

async function nodeServer(
  handler: Handler,
  options: http2.ServerOptions = {},
): Promise<{ client: (o?: object) => Http2Client; close: () => Promise<void> }> {
  const server = http2.createServer(options);
  server.on("stream", (stream, headers) => {
    stream.on("error", () => {}); // resets the tests make
    handler(stream, headers);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  const clients: Http2Client[] = [];
  return {
    client: (o = {}) => {
      const c = loopbackClient(port, o);
      clients.push(c);
      return c;
    },
    close: async () => {
      for (const c of clients) c.close();
      await new Promise((r) => server.close(r));
    },
  };
}

function pattern(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

async function readAll(call: { body(): AsyncGenerator<Uint8Array> }): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const p of call.body()) {
    parts.push(p);
    n += p.length;
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const get = (path: string): HeaderField[] => [[":method", "GET"], [":path", path]];

Deno.test("http2 client: bodies far beyond both windows, padded frames, trailers", async () => {
  const data = pattern(16 << 20);
  for (
    const paddingStrategy of [
      http2.constants.PADDING_STRATEGY_NONE,
      http2.constants.PADDING_STRATEGY_MAX,
    ]
  ) {
    const srv = await nodeServer((stream) => {
      stream.respond({ ":status": 200, "x-kind": "pattern" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "x-done": "yes, all of it" }));
      // Many writes of odd sizes, so frames and reads split anywhere.
      let o = 0;
      const step = 12_345;
      const more = () => {
        while (o < data.length) {
          const ok = stream.write(data.subarray(o, o + step));
          o += step;
          if (!ok) return void stream.once("drain", more);
        }
        stream.end();
      };
      more();
    }, { paddingStrategy });
    try {
      // Small windows: the body crosses in many WINDOW_UPDATE rounds.
      const client = srv.client({ streamWindow: 65_535, connectionWindow: 100_000 });
      for (let i = 0; i < 2; i++) {
        const call = await client.request(get("/big"));
        const head = await call.response;
        assert.deepEqual(head.find(([n]) => n === "x-kind"), ["x-kind", "pattern"]);
        const got = await readAll(call);
        assert.equal(got.length, data.length);
        assert.deepEqual(got, data);
        assert.deepEqual(call.trailers, [["x-done", "yes, all of it"]]);
      }
    } finally {
      await srv.close();
    }
  }
});

Deno.test("http2 client: a request body beyond the server's window, header values Huffman-coded and indexed", async () => {
  const body = pattern(3 << 20, 7);
  const srv = await nodeServer((stream, headers) => {
    const parts: Uint8Array[] = [];
    stream.on("data", (c: Uint8Array) => parts.push(c));
    stream.on("end", () => {
      const n = parts.reduce((a, p) => a + p.length, 0);
      stream.respond({
        ":status": 200,
        "x-echo": String(headers["x-token"]),
        "x-length": String(n),
      });
      stream.end(parts.length > 0 ? Buffer.concat(parts).subarray(0, 16) : "");
    });
  }, { settings: { initialWindowSize: 65_535 } });
  try {
    const client = srv.client();
    for (let i = 0; i < 3; i++) { // repeated: the server's dynamic table entries are used
      const token = `token-${i}-${"abcdefghij".repeat(5)}`;
      const call = await client.request(
        [[":method", "POST"], [":path", "/echo"], ["x-token", token]],
        body,
      );
      const head = new Map(await call.response);
      assert.equal(head.get("x-echo"), token);
      assert.equal(head.get("x-length"), String(body.length));
      assert.deepEqual(await readAll(call), body.subarray(0, 16));
    }
  } finally {
    await srv.close();
  }
});

Deno.test("http2 client: more calls than the server's stream limit wait their turn", async () => {
  let open = 0;
  let most = 0;
  const srv = await nodeServer((stream) => {
    open++;
    most = Math.max(most, open);
    stream.on("close", () => open--);
    setTimeout(() => {
      stream.respond({ ":status": 200 });
      stream.end("ok");
    }, 5);
  }, { settings: { maxConcurrentStreams: 2 } });
  try {
    const client = srv.client();
    await (await client.request(get("/warm"))).response; // learn the server's settings
    const texts = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const call = await client.request(get(`/${i}`));
        return new TextDecoder().decode(await readAll(call));
      }),
    );
    assert.deepEqual(texts, Array(20).fill("ok"));
    assert(most <= 2, `the server saw ${most} streams at once`);
  } finally {
    await srv.close();
  }
});

Deno.test("http2 client: cancelling a call returns its unread bytes to the connection window", async () => {
  const data = pattern(4 << 20, 3);
  const resets: number[] = [];
  const srv = await nodeServer((stream) => {
    stream.on("close", () => resets.push(stream.rstCode));
    stream.respond({ ":status": 200 });
    stream.end(data);
  });
  try {
    const client = srv.client({ streamWindow: 1 << 20, connectionWindow: 1 << 20 });
    // Take one piece of each of three calls and stop: what they left unread must go back to the
    // connection window, or the fourth call could not get its 4 MiB through a 1 MiB window.
    for (let i = 0; i < 3; i++) {
      const call = await client.request(get("/data"));
      for await (const _ of call.body()) break;
    }
    const call = await client.request(get("/data"));
    assert.deepEqual(await readAll(call), data);
    await new Promise((r) => setTimeout(r, 50));
    assert(resets.filter((c) => c === http2.constants.NGHTTP2_CANCEL).length >= 1, `${resets}`);
  } finally {
    await srv.close();
  }
});

/** A scripted server: reads the client's frames, lets the test write raw frames. */
function rawServer(
  script: (
    conn: Deno.Conn,
    next: () => Promise<{ type: number; flags: number; stream: number; payload: Uint8Array }>,
  ) => Promise<void>,
): { client: (o?: object) => Http2Client; done: Promise<void>; close: () => Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const conns: Deno.Conn[] = [];
  const done = (async () => {
    const conn = await listener.accept();
    conns.push(conn);
    let buf = new Uint8Array(0);
    const fill = async (n: number) => {
      while (buf.length < n) {
        const chunk = new Uint8Array(65536);
        const got = await conn.read(chunk);
        if (got === null) throw new Error("client closed");
        const joined = new Uint8Array(buf.length + got);
        joined.set(buf);
        joined.set(chunk.subarray(0, got), buf.length);
        buf = joined;
      }
    };
    const take = async (n: number) => {
      await fill(n);
      const out = buf.slice(0, n);
      buf = buf.slice(n);
      return out;
    };
    const preface = await take(CLIENT_PREFACE.length);
    assert.deepEqual(preface, CLIENT_PREFACE);
    const next = async () => {
      const h = await take(FRAME_HEADER);
      const length = (h[0] << 16) | (h[1] << 8) | h[2];
      const stream = new DataView(h.buffer).getUint32(5) & 0x7fffffff;
      return { type: h[3], flags: h[4], stream, payload: await take(length) };
    };
    await conn.write(settingsFrame([]));
    try {
      await script(conn, next);
    } catch (e) {
      if (!/client closed|BadResource|reset|closed/i.test(String(e))) throw e;
    }
  })();
  const clients: Http2Client[] = [];
  return {
    done,
    client: (o = {}) => {
      const c = loopbackClient(port, o);
      clients.push(c);
      return c;
    },
    close: async () => {
      for (const c of clients) c.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      listener.close();
      await done.catch(() => {});
    },
  };
}

/** Waits for the next HEADERS frame, answering the client's SETTINGS on the way. */
async function nextRequest(
  conn: Deno.Conn,
  next: () => Promise<{ type: number; flags: number; stream: number; payload: Uint8Array }>,
): Promise<number> {
  for (;;) {
    const f = await next();
    if (f.type === FrameType.SETTINGS && !(f.flags & Flag.ACK)) {
      await conn.write(settingsFrame([], true));
    }
    if (f.type === FrameType.HEADERS) return f.stream;
  }
}

Deno.test("http2 client: header blocks in CONTINUATION frames, GOAWAY refusing later calls", async () => {
  const big = "v".repeat(40_000);
  const srv = rawServer(async (conn, next) => {
    const first = await nextRequest(conn, next);
    const second = await nextRequest(conn, next);
    // The response headers of the first call in three frames.
    const block = encodeHeaders([[":status", "200"], ["x-big", big]]);
    await conn.write(frame(FrameType.HEADERS, 0, first, block.subarray(0, 100)));
    await conn.write(frame(FrameType.CONTINUATION, 0, first, block.subarray(100, 30_000)));
    await conn.write(
      frame(FrameType.CONTINUATION, Flag.END_HEADERS, first, block.subarray(30_000)),
    );
    // Then GOAWAY: the first call may finish, the second was never taken.
    await conn.write(goawayFrame(first, ErrorCode.NO_ERROR));
    await conn.write(frame(FrameType.DATA, 0, first, new TextEncoder().encode("body")));
    const trailers = encodeHeaders([["grpc-status", "0"]]);
    await conn.write(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, first, trailers));
    assert(second > first);
    // A new connection for the next call: not scripted, the test only sees it is tried.
    await next().catch(() => {});
  });
  try {
    const client = srv.client();
    const a = await client.request(get("/a"));
    const b = await client.request(get("/b"));
    const head = new Map(await a.response);
    assert.equal(head.get("x-big"), big);
    await assert.rejects(readAll(b), (e) => e instanceof Http2Error && e.kind === "refused");
    assert.equal(new TextDecoder().decode(await readAll(a)), "body");
    assert.deepEqual(a.trailers, [["grpc-status", "0"]]);
  } finally {
    await srv.close();
  }
});

Deno.test("http2 client: a lost connection, resets, a silent server", async () => {
  // The server closes the connection in the middle of a body.
  const lost = rawServer(async (conn, next) => {
    const id = await nextRequest(conn, next);
    await conn.write(
      frame(FrameType.HEADERS, Flag.END_HEADERS, id, encodeHeaders([[":status", "200"]])),
    );
    await conn.write(frame(FrameType.DATA, 0, id, new Uint8Array(10)));
    conn.close();
  });
  try {
    const call = await lost.client().request(get("/lost"));
    await assert.rejects(readAll(call), (e) => e instanceof Http2Error && e.kind === "unavailable");
  } finally {
    await lost.close();
  }
  // A reset in the middle of a body fails the call with the server's code.
  const reset = rawServer(async (conn, next) => {
    const id = await nextRequest(conn, next);
    await conn.write(
      frame(FrameType.HEADERS, Flag.END_HEADERS, id, encodeHeaders([[":status", "200"]])),
    );
    await conn.write(frame(FrameType.DATA, 0, id, new Uint8Array(10)));
    await conn.write(rstStreamFrame(id, ErrorCode.ENHANCE_YOUR_CALM));
    await next();
  });
  try {
    const call = await reset.client().request(get("/reset"));
    await assert.rejects(readAll(call), (e) => {
      assert(e instanceof Http2Error);
      assert.equal(e.kind, "reset");
      assert.equal(e.h2Code, ErrorCode.ENHANCE_YOUR_CALM);
      return true;
    });
  } finally {
    await reset.close();
  }
  // REFUSED_STREAM: refused, so safe to retry.
  const refused = rawServer(async (conn, next) => {
    const id = await nextRequest(conn, next);
    await conn.write(rstStreamFrame(id, ErrorCode.REFUSED_STREAM));
    await next();
  });
  try {
    const call = await refused.client().request(get("/refused"));
    await assert.rejects(call.response, (e) => e instanceof Http2Error && e.kind === "refused");
  } finally {
    await refused.close();
  }
  // A server that takes the call and then says nothing, not even to PINGs.
  const silent = rawServer(async (_conn, next) => {
    for (;;) await next();
  });
  try {
    const client = silent.client({ pingIntervalMs: 100, pingTimeoutMs: 200 });
    const t = Date.now();
    const call = await client.request(get("/silent"));
    await assert.rejects(call.response, (e) => {
      assert(e instanceof Http2Error && e.kind === "unavailable", String(e));
      assert.match(e.message, /PING/);
      return true;
    });
    assert(Date.now() - t < 5_000);
  } finally {
    await silent.close();
  }
});

Deno.test("http2 client: a server breaking the protocol fails the calls, not the process", async () => {
  const srv = rawServer(async (conn, next) => {
    const id = await nextRequest(conn, next);
    // DATA before any HEADERS.
    await conn.write(frame(FrameType.DATA, 0, id, new Uint8Array(3)));
    await next().catch(() => {});
  });
  try {
    const call = await srv.client().request(get("/broken"));
    await assert.rejects(readAll(call), (e) => e instanceof Http2Error && e.kind === "protocol");
  } finally {
    await srv.close();
  }
  const refusedConnect = new Http2Client({
    connect: () => Deno.connect({ hostname: "127.0.0.1", port: 1 }),
    authority: "127.0.0.1:1",
    scheme: "http",
  });
  await assert.rejects(
    refusedConnect.request(get("/")),
    (e) => e instanceof Http2Error && e.kind === "unavailable",
  );
  refusedConnect.close();
});
