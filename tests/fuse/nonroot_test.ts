// The unprivileged path: an ordinary user mounts through fusermount3, which passes the
// /dev/fuse descriptor back over a unix socket (SCM_RIGHTS).
import assert from "node:assert/strict";
import { readMountInfo } from "../../src/fuse/mount.ts";
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
if (HAVE_FUSE && !canSwitch && !canNamespaceCheck()) {
  console.error(
    "skipping the non-root mount test (needs root, setpriv, fusermount3, and /dev/fuse mode " +
      "0666 or unshare to provide one in a private mount namespace)",
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

/**
 * What the unprivileged server runs, all inside `tmp` so that it does not matter where Deno and
 * the checkout live (a fresh machine's /root, holding the npm-installed Deno, is mode 0700): a
 * copy of the deno binary, the server bundled into one file, and a DENO_DIR primed by root so
 * the run needs nothing else (`--cached-only`: no network).
 */
async function prepareForNobody(tmp: string) {
  const deno = `${tmp}/deno`, script = `${tmp}/server.js`, denoDir = `${tmp}/deno-dir`;
  await Deno.copyFile(Deno.execPath(), deno);
  await Deno.chmod(deno, 0o755);
  const src = new URL("./nonroot_server.ts", import.meta.url).pathname;
  const steps = [
    ["bundle", "--quiet", "--no-config", "--no-lock", "--no-remote", "--no-npm", "-o", script, src],
    ["cache", "--quiet", "--no-config", "--no-lock", script],
  ];
  for (const args of steps) {
    const r = await new Deno.Command(deno, {
      args,
      env: { DENO_DIR: denoDir },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!r.success) {
      throw new Error(`deno ${args[0]} failed: ${new TextDecoder().decode(r.stderr)}`);
    }
  }
  await Deno.mkdir(denoDir, { recursive: true });
  // Deno keeps writing to its caches (SQLite files): the user must own them.
  await new Deno.Command("chown", { args: ["-R", `${NOBODY}:${NOBODY}`, denoDir] }).output();
  await Deno.chmod(script, 0o644);
  return { deno, script, denoDir };
}

// Registered where it can run directly, or to report the skip when no variant can run.
const registerDirect = canSwitch || !canNamespaceCheck();

function canNamespaceCheck(): boolean {
  return HAVE_FUSE && Deno.uid() === 0 && !Deno.env.get("NIXCAS_FUSE_NS") &&
    ["/usr/bin/unshare", "/usr/bin/setpriv", "/usr/bin/fusermount3"].every((p) => {
      try {
        Deno.statSync(p);
        return true;
      } catch {
        return false;
      }
    });
}

if (registerDirect) {
  Deno.test({
    name: "an unprivileged user mounts through fusermount3",
    ignore: !canSwitch,
    sanitizeResources: false,
    async fn() {
      const tmp = await Deno.makeTempDir({ prefix: "nixcas-nonroot-" });
      await Deno.chmod(tmp, 0o755);
      const mnt = `${tmp}/mnt`;
      await Deno.mkdir(mnt);
      await Deno.chown(mnt, NOBODY, NOBODY);
      let prepared;
      try {
        prepared = await prepareForNobody(tmp);
      } catch (e) {
        await Deno.remove(tmp, { recursive: true });
        throw e;
      }
      const { deno, script, denoDir } = prepared;
      const server = asNobody(
        [deno, "run", "-A", "--no-config", "--no-lock", "--cached-only", script, mnt],
        denoDir,
      ).spawn();
      // Read stderr all along: it says why the server failed, and a full pipe would block it.
      let errText = "";
      const errDone = (async () => {
        for await (const t of server.stderr.pipeThrough(new TextDecoderStream())) errText += t;
      })();
      const out = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let seen = "";
      try {
        while (!seen.includes("mounted")) {
          const { value, done } = await out.read();
          if (done) {
            await errDone;
            throw new Error(`server exited: ${seen}${errText}`);
          }
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
        await errDone;
        assert.equal(status.code, 0, errText);
        assert.match(seen, /unmounted/);
        assert.ok(
          !readMountInfo().some((x) => x.mountpoint === mnt),
          "unmounted by fusermount3 -u",
        );
      } finally {
        try {
          server.kill("SIGKILL");
        } catch { /* exited */ }
        await server.status;
        await errDone;
        if (readMountInfo().some((x) => x.mountpoint === mnt)) {
          await new Deno.Command("umount", { args: ["-l", mnt] }).output();
        }
        await Deno.remove(tmp, { recursive: true });
      }
    },
  });
}

// Where /dev/fuse is 0600 (containers), run the test above in a private mount namespace whose
// /dev/fuse is a 0666 node bound over the real one: the host's device is never changed.
const canNamespace = !canSwitch && canNamespaceCheck();

Deno.test({
  name: "an unprivileged user mounts through fusermount3 (private namespace, 0666 /dev/fuse)",
  ignore: !canNamespace,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "nixcas-fusens-" });
    try {
      const self = new URL(import.meta.url).pathname;
      const script = [
        "set -e",
        `mknod -m 0666 ${tmp}/fuse c 10 229`,
        `mount --bind ${tmp}/fuse /dev/fuse`,
        `exec "${Deno.execPath()}" test -A --quiet "${self}"`,
      ].join("\n");
      const out = await new Deno.Command("unshare", {
        args: ["--mount", "--propagation", "private", "sh", "-c", script],
        env: { NIXCAS_FUSE_NS: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      // deno-lint-ignore no-control-regex
      const text = new TextDecoder().decode(out.stdout).replace(/\x1b\[[0-9;]*m/g, "");
      assert.equal(out.code, 0, text + new TextDecoder().decode(out.stderr));
      assert.match(text, /an unprivileged user mounts through fusermount3 \.\.\. ok/);
      assert.match(text, /1 passed/);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
