// The unprivileged path: an ordinary user mounts through fusermount3, which passes the
// /dev/fuse descriptor back over a unix socket (SCM_RIGHTS).
import assert from "node:assert/strict";
import { readMountInfo } from "../../src/fuse/mod.ts";
import { HAVE_FUSE } from "./helpers.ts";

const NOBODY = 65534;
const canSwitch = HAVE_FUSE && Deno.uid() === 0 && (() => {
  try {
    Deno.statSync("/usr/bin/setpriv");
    Deno.statSync("/usr/bin/fusermount3");
    // fusermount3 opens /dev/fuse with the user's rights: it must be 0666 as on most systems.
    return (Deno.statSync("/dev/fuse").mode! & 0o006) === 0o006;
  } catch {
    return false;
  }
})();
if (HAVE_FUSE && !canSwitch) {
  console.error(
    "skipping the non-root mount test (needs root, setpriv, fusermount3, /dev/fuse mode 0666)",
  );
}

const asNobody = (args: string[], denoDir: string) =>
  new Deno.Command("setpriv", {
    args: [
      `--reuid=${NOBODY}`,
      `--regid=${NOBODY}`,
      "--clear-groups",
      "env",
      `HOME=${denoDir}`,
      `DENO_DIR=${denoDir}`,
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
    cwd: "/",
  });

Deno.test({
  name: "an unprivileged user mounts through fusermount3",
  ignore: !canSwitch,
  sanitizeResources: false,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "nixcas-nonroot-" });
    await Deno.chmod(tmp, 0o755);
    const mnt = `${tmp}/mnt`, denoDir = `${tmp}/deno`;
    await Deno.mkdir(mnt);
    await Deno.mkdir(denoDir);
    await Deno.chown(mnt, NOBODY, NOBODY);
    await Deno.chown(denoDir, NOBODY, NOBODY);
    const script = new URL("./nonroot_server.ts", import.meta.url).pathname;
    const server = asNobody(
      [Deno.execPath(), "run", "-A", "--no-config", "--no-lock", script, mnt],
      denoDir,
    ).spawn();
    const out = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    try {
      while (!seen.includes("mounted")) {
        const { value, done } = await out.read();
        if (done) throw new Error(`server exited: ${seen}`);
        seen += value;
      }
      const m = readMountInfo().find((x) => x.mountpoint === mnt);
      assert.equal(m?.fstype, "fuse.nixcas");
      const line = Deno.readTextFileSync("/proc/self/mountinfo").split("\n").find((l) =>
        l.includes(` ${mnt} `)
      )!;
      assert.match(line, /user_id=65534/);
      const cat = await asNobody(["cat", `${mnt}/hello`], denoDir).output();
      assert.equal(new TextDecoder().decode(cat.stdout), "hello from an unprivileged mount\n");
      server.kill("SIGTERM");
      for (let r = await out.read(); !r.done; r = await out.read()) seen += r.value;
      const status = await server.status;
      assert.equal(
        status.code,
        0,
        new TextDecoder().decode(await new Response(server.stderr).arrayBuffer()),
      );
      assert.match(seen, /unmounted/);
      assert.ok(!readMountInfo().some((x) => x.mountpoint === mnt), "unmounted by fusermount3 -u");
    } finally {
      try {
        server.kill("SIGKILL");
      } catch { /* exited */ }
      await server.status;
      if (readMountInfo().some((x) => x.mountpoint === mnt)) {
        await new Deno.Command("umount", { args: ["-l", mnt] }).output();
      }
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
