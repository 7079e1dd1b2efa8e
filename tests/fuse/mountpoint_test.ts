/**
 * Mountpoints that would hide files are refused, by the library and by `nixcas mount`, with an
 * error naming the directory; nothing is mounted and the directory's files stay visible.
 */
import assert from "node:assert/strict";
import { mountStore } from "../../src/fuse/mod.ts";
import { readMountInfo } from "../../src/fuse/mount.ts";
import { ROOT } from "../prereq.ts";
import { genSvcs, HAVE_FUSE, unmountOrDetach } from "./helpers.ts";

async function nonEmptyDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "nixcas-nonempty-" });
  await Deno.writeTextFile(`${dir}/precious`, "keep me visible\n");
  return dir;
}

const mounted = (dir: string) => readMountInfo().some((m) => m.mountpoint === dir);

Deno.test({
  name: "mountStore refuses a non-empty mountpoint, naming it",
  ignore: !HAVE_FUSE,
  async fn() {
    const dir = await nonEmptyDir();
    try {
      let handle;
      try {
        handle = await mountStore({ ...genSvcs(), mountpoint: dir });
      } catch (e) {
        assert.equal(
          (e as Error).message,
          `mountpoint ${dir} is not empty: a mount would hide its files`,
        );
      }
      if (handle) await unmountOrDetach(handle, dir);
      assert.ok(!handle, "mounted over a non-empty directory");
      assert.equal(await Deno.readTextFile(`${dir}/precious`), "keep me visible\n");
    } finally {
      if (mounted(dir)) await new Deno.Command("umount", { args: ["-l", dir] }).output();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "nixcas mount refuses a non-empty mountpoint: exit 1, one line naming it",
  ignore: !HAVE_FUSE,
  async fn() {
    const dir = await nonEmptyDir();
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", `${ROOT}/mod.ts`, "mount", dir],
      env: { NIXCAS_DIR: `${dir}.store` },
      stdout: "null",
      stderr: "piped",
    }).spawn();
    let stderr = "";
    try {
      // Read until it exits, or until it says it mounted (the bug): then stop it.
      for await (const t of child.stderr.pipeThrough(new TextDecoderStream())) {
        stderr += t;
        if (stderr.includes("mounted the store")) child.kill("SIGTERM");
      }
      const status = await child.status;
      assert.doesNotMatch(stderr, /mounted the store/);
      assert.equal(status.code, 1, stderr);
      assert.equal(stderr.trim().split("\n").length, 1, stderr);
      assert.match(stderr, new RegExp(`mountpoint ${dir} is not empty`));
      assert.equal(await Deno.readTextFile(`${dir}/precious`), "keep me visible\n");
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
      if (mounted(dir)) await new Deno.Command("umount", { args: ["-l", dir] }).output();
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(`${dir}.store`, { recursive: true }).catch(() => {});
    }
  },
});
