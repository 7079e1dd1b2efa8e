/**
 * writevAllAsync: many parts (more than one writev takes) reach a socket in order, also when a
 * slow reader makes each writev short, and a closed peer is an error saying how far it got.
 */
import assert from "node:assert/strict";
import { close, libc, readAsync, type WriteProgress, writevAllAsync } from "../../src/sys/libc.ts";
import { concat } from "../../src/base/bytes.ts";
import { bytes } from "../fixtures.ts";

const AF_UNIX = 1;
const SOCK_STREAM = 1;

function socketPair(): [number, number] {
  const fds = new Int32Array(2);
  assert.equal(libc().socketpair(AF_UNIX, SOCK_STREAM, 0, new Uint8Array(fds.buffer)), 0);
  return [fds[0], fds[1]];
}

Deno.test("writevAllAsync: 3,000 parts, short writes, in order", async () => {
  const [a, b] = socketPair();
  try {
    // Views of one buffer and separate arrays, some empty, 5 MiB in all: far more than a socket
    // buffer, so writes come back short and continue mid-part.
    const pool = bytes(4 << 20, 5);
    const parts: Uint8Array[] = [];
    for (let i = 0, o = 0; i < 3000; i++) {
      if (i % 10 === 0) parts.push(bytes(300 + i, i));
      else if (i % 97 === 0) parts.push(new Uint8Array());
      else {
        const n = (i * 131) % 2000;
        parts.push(pool.subarray(o, o + n));
        o += n;
      }
    }
    const want = concat(parts);
    const got: Uint8Array[] = [];
    const reading = (async () => {
      let n = 0;
      const buf = new Uint8Array(7000); // small reads: the writer waits on a full socket
      while (n < want.length) {
        const k = await readAsync(b, buf);
        assert.ok(k > 0);
        got.push(buf.slice(0, k));
        n += k;
      }
    })();
    const at: WriteProgress = { part: 0, offset: 0 };
    await writevAllAsync(a, parts, undefined, at);
    await reading;
    assert.deepEqual(concat(got), want);
    assert.deepEqual(at, { part: parts.length, offset: 0 });
  } finally {
    close(a);
    close(b);
  }
});

Deno.test("writevAllAsync: a closed peer is an error (EPIPE), with how far it got", async () => {
  const [a, b] = socketPair();
  close(b);
  const at: WriteProgress = { part: 0, offset: 0 };
  try {
    // MSG_NOSIGNAL is not available to writev; Deno ignores SIGPIPE, so the call fails instead.
    await assert.rejects(writevAllAsync(a, [new Uint8Array(10)], undefined, at), /Broken pipe/);
    assert.deepEqual(at, { part: 0, offset: 0 });
  } finally {
    close(a);
  }
});
