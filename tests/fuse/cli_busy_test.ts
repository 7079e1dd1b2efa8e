// `nixcas mount` with a busy mount: the first SIGTERM detaches it (the process keeps serving
// the open directory), a second SIGTERM exits at once.
import assert from "node:assert/strict";
import { readMountInfo } from "../../src/fuse/mount.ts";
import { nixcas, startNixcas } from "../prereq.ts";
import { HAVE_FUSE } from "./helpers.ts";

const td = new TextDecoder();

Deno.test({
  name: "mount CLI: SIGTERM on a busy mount detaches, a second SIGTERM exits",
  ignore: !HAVE_FUSE,
  sanitizeResources: false,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "nixcas-busy-" });
    const env = { NIXCAS_DIR: `${tmp}/store` };
    const mnt = `${tmp}/mnt`;
    await Deno.mkdir(mnt);
    await Deno.mkdir(`${tmp}/src`);
    await Deno.writeTextFile(`${tmp}/src/hello`, "hello\n");
    const imported = await nixcas(["import", "--quiet", `${tmp}/src`], { env });
    assert.equal(imported.code, 0, imported.stderr);
    const base = td.decode(imported.stdout).trim().slice("/nix/store/".length);

    const { child: server, stderr, drained } = await startNixcas(
      ["mount", mnt],
      "mounted the store",
      env,
    );
    let holder: Deno.ChildProcess | null = null;
    try {
      // A process whose working directory is inside the mount keeps it busy.
      holder = new Deno.Command("sleep", { args: ["30"], cwd: `${mnt}/${base}` }).spawn();
      server.kill("SIGTERM");
      for (let i = 0; i < 100 && readMountInfo().some((m) => m.mountpoint === mnt); i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.ok(!readMountInfo().some((m) => m.mountpoint === mnt), "detached at once");
      const early = await Promise.race([
        server.status.then(() => "exited"),
        new Promise((r) => setTimeout(() => r("running"), 300)),
      ]);
      assert.equal(early, "running", "keeps serving the busy mount");
      server.kill("SIGTERM");
      const status = await server.status;
      await drained;
      assert.equal(status.code, 1);
      assert.match(stderr(), /second signal/);
    } finally {
      try {
        server.kill("SIGKILL");
      } catch { /* already exited */ }
      await server.status;
      if (holder) {
        holder.kill("SIGKILL");
        await holder.status;
      }
      if (readMountInfo().some((m) => m.mountpoint === mnt)) {
        await new Deno.Command("umount", { args: ["-l", mnt] }).output();
      }
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
