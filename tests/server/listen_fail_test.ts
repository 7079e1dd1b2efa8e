/**
 * A daemon that cannot listen (port in use, socket path taken) fails with an error naming the
 * address, and leaves nothing behind: no listener or timer (the test sanitizers would report
 * it), no process.
 */
import assert from "node:assert/strict";
import { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import { serveDaemon } from "../../src/server/daemon.ts";
import { nixcas } from "../prereq.ts";

Deno.test("nixcas daemon on a port in use: exit 1, the address named", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "nixcas-listenfail-" });
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const addr = `127.0.0.1:${taken.addr.port}`;
    const r = await nixcas(["daemon", "--listen-address", addr], {
      env: { NIXCAS_DIR: `${tmp}/store` },
    });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`^error: cannot listen on ${addr}: .*in use`));
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  } finally {
    taken.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("serveDaemon that cannot listen rejects naming the address and cleans up", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "nixcas-listenfail-" });
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const live = Deno.listen({ transport: "unix", path: `${tmp}/live.sock` });
  await Deno.writeTextFile(`${tmp}/file`, "not a socket\n");
  try {
    const services = { blobs: new MemoryBlobService(), directories: new MemoryDirectoryService() };
    const cases: [string, RegExp][] = [
      [`127.0.0.1:${taken.addr.port}`, /in use/i],
      [`unix:${tmp}/live.sock`, /another server is listening there/],
      [`unix:${tmp}/file`, /exists and is not a socket/],
      [`unix:${tmp}/no/such/dir/d.sock`, /No such file|not found/i],
    ];
    for (const [listen, why] of cases) {
      await assert.rejects(serveDaemon({ ...services, listen }), (e: Error) => {
        assert.ok(e.message.startsWith(`cannot listen on ${listen}: `), `${listen}: ${e.message}`);
        assert.match(e.message, why, listen);
        return true;
      });
    }
    assert.equal(await Deno.readTextFile(`${tmp}/file`), "not a socket\n", "left alone");
  } finally {
    taken.close();
    live.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("a failed start leaves nothing running: the process ends by itself", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const child = new URL("./listen_fail_child.ts", import.meta.url).pathname;
  try {
    const p = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", child, `127.0.0.1:${taken.addr.port}`],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // A watchdog, not a timing: a leftover server would keep the child alive for good.
    const watchdog = setTimeout(() => p.kill("SIGKILL"), 30_000);
    const out = await p.output();
    clearTimeout(watchdog);
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.signal, null, `still running after the failed start: ${text}`);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.match(text, /^rejected: cannot listen on 127\.0\.0\.1:\d+: /);
  } finally {
    taken.close();
  }
});
