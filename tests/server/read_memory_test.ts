/**
 * Daemon memory under many reads: 1,000 concurrent Reads of one 3 MiB blob on one channel, from
 * an SQLite store; then, idle, the daemon gives what it grew to back to the system.
 */
import assert from "node:assert/strict";
import { GrpcBlobService } from "../../src/backends/grpc/blob.ts";
import { putBlob, readBlob } from "../../src/castore/blob_util.ts";
import { slow } from "../prereq.ts";
import { bytes } from "../fixtures.ts";
import { startCliDaemon } from "./cli_daemon.ts";

const MiB = 1 << 20;

/** A field of /proc/PID/status, in bytes. */
function status(pid: number, field: "VmRSS" | "VmHWM"): number {
  const text = Deno.readTextFileSync(`/proc/${pid}/status`);
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
  if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

Deno.test({
  name: "daemon memory: 1,000 concurrent Reads of a 3 MiB blob, then back below 200 MiB when idle",
  ignore: slow(),
  async fn() {
    const dir = await Deno.makeTempDir();
    const d = await startCliDaemon(`unix:${dir}/d.sock`, [
      "--blob-service-addr",
      `sqlite://${dir}/store.db`,
    ]);
    try {
      const blobs = new GrpcBlobService(d.url);
      try {
        const data = bytes(3 * MiB, 7);
        const digest = await putBlob(blobs, data);
        const before = status(d.pid, "VmRSS");
        const results = await Promise.all(
          Array.from({ length: 1000 }, async () => {
            const got = await readBlob(blobs, digest);
            return got.length === data.length && got[12345] === data[12345];
          }),
        );
        assert.equal(results.filter((ok) => ok).length, 1000, "every read whole");
        const peak = status(d.pid, "VmHWM");
        // Idle: freed buffers go back to the system (V8 frees its own some seconds later).
        const until = Date.now() + 60_000;
        let rss = status(d.pid, "VmRSS");
        while (rss >= 200 * MiB && Date.now() < until) {
          await new Promise((r) => setTimeout(r, 1000));
          rss = status(d.pid, "VmRSS");
        }
        const mib = (n: number) => `${(n / MiB).toFixed(0)} MiB`;
        console.log(`daemon RSS ${mib(before)} before, peak ${mib(peak)}, ${mib(rss)} idle`);
        assert.ok(rss < 200 * MiB, `RSS ${mib(rss)} a minute after the reads`);
        // The goal (issue 20); measured 347–367 MiB on our own HTTP/2 server (docs/performance.md).
        assert.ok(peak <= 512 * MiB, `peak RSS ${mib(peak)}`);
        assert.ok(d.alive(), d.stderr());
      } finally {
        await blobs.close();
      }
    } finally {
      await d.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
