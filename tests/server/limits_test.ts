/**
 * The daemon never stops serving because of what clients do with connections: running out of
 * file descriptors, a connection cap, idle connections (closed after `--idle-timeout`), and a
 * slowloris of idle connections. Each daemon is `nixcas daemon` in its own process.
 */
import assert from "node:assert/strict";
import { have } from "../prereq.ts";
import { closedWithin, putAndStat, rawConnect, startCliDaemon } from "./cli_daemon.ts";

const havePrlimit = have("daemon fd-limit tests", ["prlimit"]);
const te = new TextEncoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Opens `n` raw connections (as many as connect), a few at a time. */
async function openMany(address: string, n: number): Promise<Deno.Conn[]> {
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < n; i += 50) {
    const batch = await Promise.allSettled(
      Array.from({ length: Math.min(50, n - i) }, () => rawConnect(address)),
    );
    for (const r of batch) if (r.status === "fulfilled") conns.push(r.value);
  }
  return conns;
}

function closeAll(conns: Deno.Conn[]): void {
  for (const c of conns) {
    try {
      c.close();
    } catch { /* closed by the daemon */ }
  }
}

/** Our client's put and stat within 5 s each; a failure carries the daemon's log. */
async function served(d: { url: string; stderr(): string }, what: string): Promise<void> {
  try {
    await putAndStat(d.url, te.encode(what), 5000);
  } catch (e) {
    throw new Error(`${what}: ${e}\ndaemon log:\n${d.stderr()}`);
  }
}

/** Waits until `f()` or `ms` passed. */
async function until(f: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!f() && Date.now() < end) await sleep(50);
  return f();
}

for (const cap of [undefined, 1000]) {
  Deno.test({
    name: `fd exhaustion: a daemon with 128 fds, 300 connections opened and closed, then serves` +
      (cap ? ` (--max-connections ${cap}, above what the fds hold)` : " (default cap)"),
    ignore: !havePrlimit,
    async fn() {
      const d = await startCliDaemon(
        "127.0.0.1:0",
        cap ? ["--max-connections", String(cap)] : [],
        { nofile: 128 },
      );
      try {
        const conns = await openMany(d.address, 300);
        assert.ok(conns.length >= 100, `only ${conns.length} connections`);
        if (cap) {
          // The descriptors did run out (and the daemon said so, once).
          assert.ok(
            await until(() => /accepting connections: .*retrying/.test(d.stderr()), 10_000),
            d.stderr(),
          );
        }
        closeAll(conns);
        await served(d, "after the storm");
        assert.ok(d.alive());
        if (cap) {
          const bursts = d.stderr().match(/accepting connections: .*retrying/g) ?? [];
          assert.ok(bursts.length <= 3, `logged ${bursts.length} times:\n${d.stderr()}`);
        }
      } finally {
        const s = await d.stop();
        assert.equal(s.code, 0, d.stderr());
      }
    },
  });
}

Deno.test("idle timeout: a connection with no stream is closed, one with a stream is not", async () => {
  const d = await startCliDaemon("127.0.0.1:0", ["--idle-timeout", "1"]);
  try {
    // Silent: not even the HTTP/2 preface.
    const silent = await rawConnect(d.address);
    assert.equal(await closedWithin(silent, 10_000), true, "a silent connection stayed open");
    closeAll([silent]);

    // A health Watch keeps its stream open for as long as the client wants.
    const busy = await rawConnect(d.address);
    await writeAll(busy, watchRequest());
    assert.equal(
      await closedWithin(busy, 3000),
      false,
      `a connection with a Watch was closed: ${d.stderr()}`,
    );
    closeAll([busy]);

    // A client that made a call and then holds the connection is closed too.
    const after = await rawConnect(d.address);
    await writeAll(after, checkRequest());
    assert.equal(await closedWithin(after, 10_000), true, "an idle connection stayed open");
    closeAll([after]);
    await putAndStat(d.url, te.encode("still serving"));
  } finally {
    const s = await d.stop();
    assert.equal(s.code, 0, d.stderr());
  }
});

Deno.test("connection cap: excess closed at once, busy connections kept, newcomers served", async () => {
  const d = await startCliDaemon("127.0.0.1:0", ["--max-connections", "20"]);
  try {
    // 20 connections, each with an open Watch: all busy, so a 21st is closed at once.
    const busy = await openMany(d.address, 20);
    for (const c of busy) await writeAll(c, watchRequest());
    await sleep(500); // let the daemon see their streams
    const extra = await rawConnect(d.address);
    assert.equal(await closedWithin(extra, 5000), true, "a connection over the cap was kept");
    closeAll([extra]);
    assert.match(d.stderr(), /connection limit 20 reached: every connection is busy/);
    for (const c of busy) assert.equal(await closedWithin(c, 10), false, "a busy one was closed");
    // Once one leaves, there is room again.
    closeAll(busy.splice(0, 1));
    await sleep(200);
    await served(d, "room again");
    closeAll(busy);
  } finally {
    const s = await d.stop();
    assert.equal(s.code, 0, d.stderr());
  }
});

/** Connections the slowloris opens: 2,000 where this process may hold that many sockets. */
const SLOWLORIS = (() => {
  const m = /^Max open files\s+(\d+)/m.exec(Deno.readTextFileSync("/proc/self/limits"));
  return Math.min(2000, Number(m?.[1] ?? 1024) - 200);
})();

Deno.test({
  name:
    `slowloris: ${SLOWLORIS} idle connections on a daemon with 4096 fds do not lock a client out`,
  ignore: !havePrlimit,
  async fn() {
    // The default cap (1,024 here) is below the slowloris: the longest idle ones make room.
    const d = await startCliDaemon("127.0.0.1:0", [], { nofile: 4096 });
    try {
      const preface = te.encode("PRI * HTTP/2.0\r\n"); // half of it, then nothing
      const idle = await openMany(d.address, SLOWLORIS);
      assert.equal(idle.length, SLOWLORIS);
      for (const c of idle) await c.write(preface).catch(() => 0);
      await sleep(500);
      await served(d, "served anyway");
      await served(d, "and again");
      assert.ok(d.alive());
      closeAll(idle);
    } finally {
      const s = await d.stop();
      assert.equal(s.code, 0, d.stderr());
    }
  },
});

// --- raw HTTP/2 requests to grpc.health.v1.Health ---

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
}

function frame(type: number, flags: number, stream: number, payload: Uint8Array): Uint8Array {
  const f = new Uint8Array(9 + payload.length);
  const v = new DataView(f.buffer);
  v.setUint32(0, payload.length << 8);
  f[3] = type;
  f[4] = flags;
  v.setUint32(5, stream);
  f.set(payload, 9);
  return f;
}

/** Preface, empty SETTINGS, and one unary-or-streaming call with an empty request message. */
function request(path: string): Uint8Array {
  const hp: number[] = [];
  for (
    const [n, v] of [
      [":method", "POST"],
      [":scheme", "http"],
      [":path", path],
      [":authority", "localhost"],
      ["content-type", "application/grpc"],
      ["te", "trailers"],
    ]
  ) hp.push(0, n.length, ...te.encode(n), v.length, ...te.encode(v));
  const parts = [
    te.encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    frame(0x4, 0, 0, new Uint8Array()),
    frame(0x1, 0x4, 1, new Uint8Array(hp)),
    frame(0x0, 0x1, 1, new Uint8Array(5)), // an empty HealthCheckRequest: service ""
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

const watchRequest = () => request("/grpc.health.v1.Health/Watch");
const checkRequest = () => request("/grpc.health.v1.Health/Check");
