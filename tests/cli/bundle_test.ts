/**
 * One-file distribution: `deno bundle` output runs with a bare `deno run` from any directory and
 * imports a tree to the same store path as the checkout.
 */
import assert from "node:assert/strict";
import { nixcas, ROOT, run } from "../prereq.ts";

Deno.test("the bundle runs from anywhere and gives the same store path", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "nixcas-bundle-" });
  try {
    const out = `${tmp}/nixcas.js`;
    const b = await run(Deno.execPath(), ["bundle", "--quiet", "-o", out, `${ROOT}/mod.ts`], {
      cwd: ROOT,
    });
    assert.equal(b.code, 0, b.stderr);
    await Deno.mkdir(`${tmp}/tree/sub`, { recursive: true });
    await Deno.writeTextFile(`${tmp}/tree/sub/f`, "bundled\n");
    await Deno.symlink("sub/f", `${tmp}/tree/link`);
    // From an unrelated directory, with no config file around.
    await Deno.mkdir(`${tmp}/elsewhere`);
    const viaBundle = await run(Deno.execPath(), [
      "run",
      "-A",
      "--quiet",
      out,
      "import",
      "--quiet",
      `${tmp}/tree`,
    ], {
      cwd: `${tmp}/elsewhere`,
      env: { NIXCAS_DIR: `${tmp}/store-a` },
    });
    assert.equal(viaBundle.code, 0, viaBundle.stderr);
    const viaCheckout = await nixcas(["import", "--quiet", `${tmp}/tree`], {
      env: { NIXCAS_DIR: `${tmp}/store-b` },
    });
    assert.equal(viaCheckout.code, 0, viaCheckout.stderr);
    const p = new TextDecoder().decode(viaBundle.stdout);
    assert.match(p, /^\/nix\/store\/[0-9a-z]{32}-tree\n$/);
    assert.equal(p, new TextDecoder().decode(viaCheckout.stdout));
    const help = await run(Deno.execPath(), ["run", "-A", out, "--help"], {
      cwd: `${tmp}/elsewhere`,
    });
    assert.match(new TextDecoder().decode(help.stdout), /import/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
