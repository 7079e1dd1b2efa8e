/**
 * A daemon that cannot listen (port in use, socket path taken) fails with an error naming the
 * address, and leaves nothing behind: no private `nixcas-h2-*` directory, no inner HTTP/2 server
 * (the test sanitizers would report it), no process.
 */
import assert from "node:assert/strict";
import { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import { serveDaemon } from "../../src/server/daemon.ts";
import { nixcas } from "../prereq.ts";

async function h2Dirs(tmp: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(tmp)) if (e.name.startsWith("nixcas-h2-")) out.push(e.name);
  return out;
}

Deno.test("nixcas daemon on a port in use: exit 1, the address named, no temp dir left", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "nixcas-listenfail-" });
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const addr = `127.0.0.1:${taken.addr.port}`;
    await Deno.mkdir(`${tmp}/t`);
    // A private TMPDIR: other tests' daemons make nixcas-h2-* directories in /tmp meanwhile.
    const r = await nixcas(["daemon", "--listen-address", addr], {
      env: { TMPDIR: `${tmp}/t`, NIXCAS_DIR: `${tmp}/store` },
    });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`^error: cannot listen on ${addr}: .*in use`));
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.deepEqual(await h2Dirs(`${tmp}/t`), []);
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
  const oldTmp = Deno.env.get("TMPDIR");
  await Deno.mkdir(`${tmp}/t`);
  Deno.env.set("TMPDIR", `${tmp}/t`);
  try {
    const services = { blobs: new MemoryBlobService(), directories: new MemoryDirectoryService() };
    const cases: [string, RegExp][] = [
      [`127.0.0.1:${taken.addr.port}`, /in use/i],
      [`unix:${tmp}/live.sock`, /another server is listening there/],
      [`unix:${tmp}/file`, /exists and is not a socket/],
      [`unix:${tmp}/no/such/dir/d.sock`, /No such file|not found/i],
    ];
    for (const [listen, why] of cases) {
      for (const guard of [true, false]) {
        const what = `${listen} (guard ${guard})`;
        await assert.rejects(serveDaemon({ ...services, listen, guard }), (e: Error) => {
          assert.ok(e.message.startsWith(`cannot listen on ${listen}: `), `${what}: ${e.message}`);
          assert.match(e.message, why, what);
          return true;
        });
        assert.deepEqual(await h2Dirs(`${tmp}/t`), [], what);
      }
    }
    assert.equal(await Deno.readTextFile(`${tmp}/file`), "not a socket\n", "left alone");
  } finally {
    if (oldTmp === undefined) Deno.env.delete("TMPDIR");
    else Deno.env.set("TMPDIR", oldTmp);
    taken.close();
    live.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("a failed start leaves nothing running: the process ends by itself", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const child = new URL("./listen_fail_child.ts", import.meta.url).pathname;
  try {
    for (const guard of ["guard", "no-guard"]) {
      const p = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--quiet", child, `127.0.0.1:${taken.addr.port}`, guard],
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      // A watchdog, not a timing: a leftover server would keep the child alive for good.
      const watchdog = setTimeout(() => p.kill("SIGKILL"), 30_000);
      const out = await p.output();
      clearTimeout(watchdog);
      const text = new TextDecoder().decode(out.stdout);
      assert.equal(out.signal, null, `${guard}: still running after the failed start: ${text}`);
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      assert.match(text, /^rejected: cannot listen on 127\.0\.0\.1:\d+: /, guard);
    }
  } finally {
    taken.close();
  }
});
