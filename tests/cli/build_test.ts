/**
 * The built CLI (`deno task build`: minified, split into chunks that load when a command needs
 * them) runs from any directory and does what the checkout does, including the commands whose
 * code sits in chunks loaded on demand (the gRPC daemon and client).
 */
import assert from "node:assert/strict";
import { nixcas, ROOT, run, serviceFlags, startNixcas } from "../prereq.ts";

Deno.test("the built CLI runs from anywhere, imports like the checkout and serves gRPC", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "nixcas-build-" });
  try {
    const out = `${tmp}/cli`;
    const b = await run("bash", [`${ROOT}/scripts/build.sh`, out], {
      env: { DENO: Deno.execPath() },
    });
    assert.equal(b.code, 0, b.stderr);
    const entry = `${out}/mod.js`;
    await Deno.mkdir(`${tmp}/tree/sub`, { recursive: true });
    await Deno.writeTextFile(`${tmp}/tree/sub/f`, "built\n");
    await Deno.writeFile(`${tmp}/tree/big`, new Uint8Array(3 << 20).map((_, i) => i * 7));
    await Deno.symlink("sub/f", `${tmp}/tree/link`);
    // From an unrelated directory, with no config file around.
    await Deno.mkdir(`${tmp}/elsewhere`);
    const built = (args: string[]) =>
      run(Deno.execPath(), ["run", "-A", "--quiet", entry, ...args], {
        cwd: `${tmp}/elsewhere`,
        env: { NIXCAS_DIR: `${tmp}/store-a` },
      });
    const viaBuild = await built(["import", "--quiet", `${tmp}/tree`]);
    assert.equal(viaBuild.code, 0, viaBuild.stderr);
    const checkoutEnv = { env: { NIXCAS_DIR: `${tmp}/store-b` } };
    const viaCheckout = await nixcas(["import", "--quiet", `${tmp}/tree`], checkoutEnv);
    assert.equal(viaCheckout.code, 0, viaCheckout.stderr);
    const storePath = new TextDecoder().decode(viaBuild.stdout).trim();
    assert.match(storePath, /^\/nix\/store\/[0-9a-z]{32}-tree$/);
    assert.equal(storePath, new TextDecoder().decode(viaCheckout.stdout).trim());

    const narBuilt = await built(["nar", storePath]);
    assert.equal(narBuilt.code, 0, narBuilt.stderr);
    const narCheckout = await nixcas(["nar", storePath], checkoutEnv);
    assert.deepEqual(narBuilt.stdout, narCheckout.stdout);

    // The daemon and the gRPC client live in chunks of their own.
    const socket = `${tmp}/d.sock`;
    const daemon = await startNixcas(
      ["daemon", "--listen-address", `unix://${socket}`],
      "listening",
      { NIXCAS_DIR: `${tmp}/store-a` },
      entry,
    );
    try {
      const addr = `grpc+unix://${socket}`;
      const info = await built([
        "path-info",
        "--json",
        ...serviceFlags(addr),
        storePath,
      ]);
      assert.equal(info.code, 0, info.stderr);
      assert.match(new TextDecoder().decode(info.stdout), new RegExp(storePath.slice(11, 43)));
    } finally {
      daemon.child.kill("SIGTERM");
      await daemon.child.status;
      await daemon.drained;
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
