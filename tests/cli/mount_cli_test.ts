/**
 * `nixcas mount` end to end: import a tree, mount the store through the CLI, `diff -r` the
 * mounted store path against its source, then SIGTERM unmounts cleanly. Plus clear errors for a
 * missing and a busy mountpoint.
 */
import assert from "node:assert/strict";
import { readMountInfo } from "../../src/fuse/mount.ts";
import { have, nixcas, run, startNixcas } from "../prereq.ts";

const td = new TextDecoder();
const FUSE = have("FUSE mount CLI tests", ["diff"], ["/dev/fuse"]);

Deno.test({
  name: "mount: diff -r of a mounted store path against its source is empty; SIGTERM unmounts",
  ignore: !FUSE,
  sanitizeResources: false,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "nixcas-mountcli-" });
    const env = { NIXCAS_DIR: `${tmp}/store` };
    const mnt = `${tmp}/mnt`;
    await Deno.mkdir(mnt);
    await Deno.mkdir(`${tmp}/src/sub/deeper`, { recursive: true });
    await Deno.writeTextFile(`${tmp}/src/hello`, "hello\n");
    await Deno.writeFile(`${tmp}/src/sub/big`, new Uint8Array(5 << 20).map((_, i) => i * 7));
    await Deno.writeTextFile(`${tmp}/src/sub/deeper/run.sh`, "#!/bin/sh\n", { mode: 0o755 });
    await Deno.symlink("../hello", `${tmp}/src/sub/link`);
    const imported = await nixcas(["import", "--quiet", `${tmp}/src`], { env });
    assert.equal(imported.code, 0, imported.stderr);
    const storePath = td.decode(imported.stdout).trim();
    const base = storePath.slice("/nix/store/".length);

    const { child: daemon } = await startNixcas(["mount", mnt], "mounted the store", env);
    try {
      // Lookups and reads happen in other processes: the server must not serve itself.
      const diff = await run("diff", ["-r", `${tmp}/src`, `${mnt}/${base}`]);
      assert.equal(diff.code, 0, td.decode(diff.stdout) + diff.stderr);
      const ls = await run("ls", [mnt]);
      assert.notEqual(ls.code, 0, "listing the root is refused without --list-root");
      const busy = await nixcas(["mount", mnt], { env });
      assert.equal(busy.code, 1);
      assert.match(busy.stderr, /busy/);
    } finally {
      daemon.kill("SIGTERM");
      const status = await daemon.status;
      const still = readMountInfo().some((m) => m.mountpoint === mnt);
      if (still) await run("umount", ["-l", mnt]);
      await Deno.remove(tmp, { recursive: true });
      assert.equal(status.code, 0, "mount exits 0 on SIGTERM");
      assert.ok(!still, "SIGTERM unmounted");
    }
  },
});

Deno.test("mount: a missing mountpoint is a clear error", async () => {
  const r = await nixcas(["mount", "/nonexistent/nixcas-mnt"], {
    env: { NIXCAS_DIR: "/tmp/nixcas-unused" },
  });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /mountpoint \/nonexistent\/nixcas-mnt does not exist/);
});
