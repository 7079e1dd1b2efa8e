/**
 * Our HTTP/2 server against clients that break the rules, through a real `nixcas daemon`
 * process: each abuse ends that connection (GOAWAY with the code RFC 9113 and the known attacks
 * call for, or a plain answer for HTTP/1.1), nothing more, and the daemon serves the next client.
 */
import assert from "node:assert/strict";
import {
  CLIENT_PREFACE,
  ErrorCode,
  Flag,
  frame,
  FRAME_HEADER,
  FrameType,
  rstStreamFrame,
  settingsFrame,
  windowUpdateFrame,
} from "../../src/http2/frames.ts";
import { encodeHeaders } from "../../src/http2/hpack.ts";
import { putAndStat, rawConnect, startCliDaemon } from "../server/cli_daemon.ts";

type Frame = { type: number; flags: number; stream: number; payload: Uint8Array };

/** Reads frames until the server closes the connection or `ms` pass. */
async function framesUntilClosed(
  conn: Deno.Conn,
  ms = 10_000,
): Promise<{ frames: Frame[]; closed: boolean; raw: Uint8Array }> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
  const reading = (async () => {
    const buf = new Uint8Array(1 << 16);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        chunks.push(buf.slice(0, n));
        total += n;
      }
    } catch { /* reset */ }
    return true as const;
  })();
  const closed = await Promise.race([reading, timeout]);
  clearTimeout(timer);
  const raw = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) {
    raw.set(c, o);
    o += c.length;
  }
  const frames: Frame[] = [];
  for (let i = 0; i + FRAME_HEADER <= raw.length;) {
    const len = (raw[i] << 16) | (raw[i + 1] << 8) | raw[i + 2];
    if (i + FRAME_HEADER + len > raw.length) break;
    frames.push({
      type: raw[i + 3],
      flags: raw[i + 4],
      stream: new DataView(raw.buffer, i + 5, 4).getUint32(0) & 0x7fffffff,
      payload: raw.subarray(i + FRAME_HEADER, i + FRAME_HEADER + len),
    });
    i += FRAME_HEADER + len;
  }
  return { frames, closed, raw };
}

function goawayCode(frames: Frame[]): number | undefined {
  const g = frames.find((f) => f.type === FrameType.GOAWAY);
  return g && new DataView(g.payload.buffer, g.payload.byteOffset + 4, 4).getUint32(0);
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<boolean> {
  try {
    for (let o = 0; o < data.length;) o += await conn.write(data.subarray(o));
    return true;
  } catch {
    return false; // the server closed first
  }
}

const READ_HEADERS = encodeHeaders([
  [":method", "POST"],
  [":scheme", "http"],
  [":path", "/tvix.castore.v1.BlobService/Read"],
  [":authority", "localhost"],
  ["content-type", "application/grpc"],
  ["te", "trailers"],
]);

function hello(): Uint8Array {
  return new Uint8Array([...CLIENT_PREFACE, ...settingsFrame([])]);
}

Deno.test("http2 server: abusive clients lose their connection, the daemon keeps serving", async (t) => {
  const d = await startCliDaemon("127.0.0.1:0");
  const stillServes = async (what: string) => {
    const digest = await putAndStat(d.url, new TextEncoder().encode(`after ${what}`));
    assert.equal(digest.length, 32, what);
    assert(d.alive(), `${what}: the daemon died: ${d.stderr()}`);
  };
  try {
    await t.step("HTTP/1.1 gets a readable refusal", async () => {
      const conn = await rawConnect(d.address);
      await writeAll(conn, new TextEncoder().encode("GET / HTTP/1.1\r\nhost: x\r\n\r\n"));
      const { raw, closed } = await framesUntilClosed(conn);
      conn.close();
      assert(closed);
      assert.match(new TextDecoder().decode(raw), /^HTTP\/1\.1 505 /);
      await stillServes("HTTP/1.1");
    });

    await t.step("random bytes after the preface: GOAWAY", async () => {
      const conn = await rawConnect(d.address);
      const junk = new Uint8Array(4096);
      crypto.getRandomValues(junk);
      junk[3] = 0xff; // an unknown frame type would be ignored: make the first one too long
      junk[0] = 0xff;
      await writeAll(conn, new Uint8Array([...hello(), ...junk]));
      const { frames, closed } = await framesUntilClosed(conn);
      conn.close();
      assert(closed);
      assert.equal(goawayCode(frames), ErrorCode.FRAME_SIZE_ERROR);
      await stillServes("random bytes");
    });

    await t.step("rapid reset: streams opened and reset at once", async () => {
      const conn = await rawConnect(d.address);
      const parts: Uint8Array[] = [hello()];
      for (let i = 0; i < 5_000; i++) {
        const id = 2 * i + 1;
        parts.push(frame(FrameType.HEADERS, Flag.END_HEADERS, id, READ_HEADERS));
        parts.push(rstStreamFrame(id, ErrorCode.CANCEL));
      }
      const sending = writeAll(conn, new Uint8Array(parts.flatMap((p) => [...p])));
      const { frames, closed } = await framesUntilClosed(conn);
      await sending;
      conn.close();
      assert(closed, "the connection was not closed");
      assert.equal(goawayCode(frames), ErrorCode.ENHANCE_YOUR_CALM);
      await stillServes("rapid reset");
    });

    await t.step("CONTINUATION flood: a header block that never ends", async () => {
      const conn = await rawConnect(d.address);
      const parts: Uint8Array[] = [hello(), frame(FrameType.HEADERS, 0, 1, READ_HEADERS)];
      const filler = new Uint8Array(16_000).fill(0x40);
      for (let i = 0; i < 64; i++) parts.push(frame(FrameType.CONTINUATION, 0, 1, filler));
      const sending = writeAll(conn, new Uint8Array(parts.flatMap((p) => [...p])));
      const { frames, closed } = await framesUntilClosed(conn);
      await sending;
      conn.close();
      assert(closed);
      assert.equal(goawayCode(frames), ErrorCode.ENHANCE_YOUR_CALM);
      await stillServes("CONTINUATION flood");
    });

    await t.step("PING and SETTINGS floods from a client that reads nothing", async () => {
      for (
        const make of [
          () => frame(FrameType.PING, 0, 0, new Uint8Array(8)),
          () => settingsFrame([[0x4, 65535]]),
        ]
      ) {
        const conn = await rawConnect(d.address);
        const one = make();
        const batch = new Uint8Array(one.length * 10_000);
        for (let i = 0; i < 10_000; i++) batch.set(one, i * one.length);
        await writeAll(conn, hello());
        // Far more answers than fit in the socket buffers: the server must give up on us.
        let sent = 0;
        while (sent < 2_000_000 && await writeAll(conn, batch)) sent += 10_000;
        assert(sent < 2_000_000, "the server kept taking a flood it could not answer");
        conn.close();
      }
      await stillServes("PING and SETTINGS floods");
    });

    await t.step("a window beyond 2^31-1: FLOW_CONTROL_ERROR", async () => {
      const conn = await rawConnect(d.address);
      await writeAll(
        conn,
        new Uint8Array([
          ...hello(),
          ...windowUpdateFrame(0, 0x7fffffff),
          ...windowUpdateFrame(0, 0x7fffffff),
        ]),
      );
      const { frames, closed } = await framesUntilClosed(conn);
      conn.close();
      assert(closed);
      assert.equal(goawayCode(frames), ErrorCode.FLOW_CONTROL_ERROR);
      await stillServes("window overflow");
    });

    await t.step("more streams than allowed: the excess refused, the rest served", async () => {
      const conn = await rawConnect(d.address);
      const parts: Uint8Array[] = [hello()];
      // Read calls whose request never ends: each holds its stream open.
      for (let i = 0; i < 300; i++) {
        parts.push(frame(FrameType.HEADERS, Flag.END_HEADERS, 2 * i + 1, READ_HEADERS));
      }
      await writeAll(conn, new Uint8Array(parts.flatMap((p) => [...p])));
      const { frames } = await framesUntilClosed(conn, 1_000);
      conn.close();
      const refused = frames.filter((f) =>
        f.type === FrameType.RST_STREAM &&
        new DataView(f.payload.buffer, f.payload.byteOffset, 4).getUint32(0) ===
          ErrorCode.REFUSED_STREAM
      );
      assert.equal(refused.length, 300 - 256);
      assert(refused.every((f) => f.stream > 2 * 256), "only streams past the limit are refused");
      await stillServes("too many streams");
    });
  } finally {
    await d.stop();
  }
});
