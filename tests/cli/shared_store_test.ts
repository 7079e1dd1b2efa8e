/**
 * One SQLite store shared by a daemon and CLI commands at the same time: an import through
 * `grpc+unix://` gives the same store path as a local import, and is visible to a CLI reading
 * the file directly while the daemon runs.
 */
import assert from "node:assert/strict";
import { nixcas, serviceFlags, startNixcas } from "../prereq.ts";

const td = new TextDecoder();

Deno.test("daemon and CLI share one SQLite file; import via grpc+unix equals a local import", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "nixcas-shared-" });
  const sock = `${tmp}/daemon.sock`;
  const env = { NIXCAS_DIR: `${tmp}/shared` };
  const { child: daemon } = await startNixcas(
    ["daemon", "--listen-address", `unix:${sock}`],
    "listening",
    env,
  );
  try {
    await Deno.mkdir(`${tmp}/tree/sub`, { recursive: true });
    await Deno.writeTextFile(`${tmp}/tree/sub/file`, "shared\n".repeat(1000));
    await Deno.writeFile(`${tmp}/tree/big`, new Uint8Array(3 << 20).fill(7));
    const remote = `grpc+unix://${sock}`;
    const viaDaemon = await nixcas([
      "import",
      "--quiet",
      ...serviceFlags(remote),
      `${tmp}/tree`,
    ]);
    assert.equal(viaDaemon.code, 0, viaDaemon.stderr);
    const local = await nixcas(["import", "--quiet", `${tmp}/tree`], {
      env: { NIXCAS_DIR: `${tmp}/local` },
    });
    assert.equal(local.code, 0, local.stderr);
    const path = td.decode(viaDaemon.stdout).trim();
    assert.equal(path, td.decode(local.stdout).trim());

    // The CLI reads the daemon's SQLite file directly while the daemon keeps running.
    const list = await nixcas(["list"], { env });
    assert.equal(td.decode(list.stdout).trim(), path);
    const cat = await nixcas(["cat", `${path}/sub/file`], { env });
    assert.equal(td.decode(cat.stdout), "shared\n".repeat(1000));
    // And a local import into the shared file is served by the daemon.
    await Deno.writeTextFile(`${tmp}/second`, "second\n");
    const second = await nixcas(["import", "--quiet", `${tmp}/second`], { env });
    assert.equal(second.code, 0, second.stderr);
    const viaRemote = await nixcas([
      "cat",
      td.decode(second.stdout).trim(),
      ...serviceFlags(remote),
    ]);
    assert.equal(viaRemote.code, 0, viaRemote.stderr);
    assert.equal(td.decode(viaRemote.stdout), "second\n");
  } finally {
    daemon.kill("SIGTERM");
    const status = await daemon.status;
    await Deno.remove(tmp, { recursive: true });
    assert.equal(status.code, 0, "daemon stops cleanly on SIGTERM");
  }
});
