/**
 * A Nix binary cache as the path info service (`nix+http://…`): `nixcas mount` over a cache
 * Nix wrote (served by python's http.server) and over a second `nixcas serve` reads every path
 * byte for byte as the source store has it; fetched paths are kept, so a second mount needs no
 * server; a path not signed by a trusted key is not served.
 */
import assert from "node:assert/strict";
import { readMountInfo } from "../../src/fuse/mount.ts";
import { makeFixture, pythonHttpServer, sh } from "../nix_fixture.ts";
import { have, nixcas, run, startNixcas } from "../prereq.ts";

const OK = have("Nix cache read-through tests", ["nix", "nix-store", "python3", "diff"], [
  "/dev/fuse",
]);
const td = new TextDecoder();

async function mounted<T>(
  mnt: string,
  flags: string[],
  env: Record<string, string>,
  fn: () => Promise<T>,
): Promise<T> {
  const { child, drained } = await startNixcas(["mount", mnt, ...flags], "mounted the store", env);
  try {
    return await fn();
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await drained;
    if (readMountInfo().some((m) => m.mountpoint === mnt)) await run("umount", ["-l", mnt]);
  }
}

Deno.test({
  name: "mount over nix+http:// serves a remote Nix cache lazily, checked and kept",
  ignore: !OK,
  sanitizeResources: false,
  async fn(t) {
    const fx = await makeFixture();
    const publicKey = (await Deno.readTextFile(fx.publicKeyFile)).trim();
    const mnt = `${fx.base}/mnt`;
    await Deno.mkdir(mnt);
    // Directories and a file of each kind: the built output, a text path, an added directory.
    const targets = fx.paths.filter((p) => !p.endsWith(".drv"));
    const diffAll = async () => {
      for (const p of targets) {
        const base = p.slice("/nix/store/".length);
        const diff = await run("diff", [
          "-r",
          "--no-dereference",
          `${fx.store}${p}`,
          `${mnt}/${base}`,
        ]);
        assert.equal(diff.code, 0, `${p}: ${td.decode(diff.stdout)}${diff.stderr}`);
      }
    };
    try {
      await t.step("a cache Nix wrote, over python's http.server", async () => {
        const server = await pythonHttpServer(fx.cache);
        const local = `sqlite://${fx.base}/b/store.db`;
        const addr = `nix+http://127.0.0.1:${server.port}?trusted-public-keys=` +
          `${encodeURIComponent(publicKey)}&local=${encodeURIComponent(local)}`;
        const flags = [
          "--blob-service-addr",
          local,
          "--directory-service-addr",
          local,
          "--path-info-service-addr",
          addr,
        ];
        const env = { NIXCAS_DIR: `${fx.base}/unused` };
        try {
          await mounted(mnt, flags, env, diffAll);
        } finally {
          await server.stop();
        }
        // Kept: with the server gone, the same paths are still served.
        await mounted(mnt, flags, env, diffAll);
        const list = await nixcas([
          "list",
          "--path-info-service-addr",
          local,
          "--blob-service-addr",
          local,
          "--directory-service-addr",
          local,
        ], { env });
        assert.equal(td.decode(list.stdout).trim().split("\n").length, targets.length);
      });

      await t.step("a second nixcas serve; an untrusted key serves nothing", async () => {
        const a = { NIXCAS_DIR: `${fx.base}/a` };
        const copy = await nixcas(["copy", "--from", `local?root=${fx.store}`, ...fx.paths], {
          env: a,
        });
        assert.equal(copy.code, 0, copy.stderr);
        await sh("nix-store", [
          "--generate-binary-cache-key",
          "serve-1",
          `${fx.base}/s.sk`,
          `${fx.base}/s.pk`,
        ], fx.env);
        const serveKey = (await Deno.readTextFile(`${fx.base}/s.pk`)).trim();
        const serve = await startNixcas(
          ["serve", "--listen", "127.0.0.1:0", "--secret-key-file", `${fx.base}/s.sk`],
          "listening",
          a,
        );
        try {
          const port = /listening http:\/\/127\.0\.0\.1:(\d+)/.exec(serve.stderr())?.[1];
          assert.ok(port, `no port in ${serve.stderr()}`);
          const local = `sqlite://${fx.base}/c/store.db`;
          const flags = (key: string) => [
            "--blob-service-addr",
            local,
            "--directory-service-addr",
            local,
            "--path-info-service-addr",
            `nix+http://127.0.0.1:${port}?trusted-public-keys=${encodeURIComponent(key)}&local=${
              encodeURIComponent(local)
            }`,
          ];
          const env = { NIXCAS_DIR: `${fx.base}/unused` };
          // Another key: the text and added paths are content-addressed and valid without a
          // signature, the built output is not.
          await mounted(mnt, flags("other-1:" + "A".repeat(43) + "="), env, async () => {
            const st = await run("stat", [`${mnt}/${fx.hello.slice(11)}`]);
            assert.notEqual(st.code, 0, "an unsigned input-addressed path must not appear");
          });
          await mounted(mnt, flags(serveKey), env, diffAll);
        } finally {
          serve.child.kill("SIGTERM");
          await serve.child.status;
          await serve.drained;
        }
      });
    } finally {
      await Deno.remove(fx.base, { recursive: true });
    }
  },
});
