/** `narListing` against the `.ls` file real Nix writes (`?write-nar-listing=true`). */
import assert from "node:assert/strict";
import { openStore } from "../../src/backends/open.ts";
import { fromNodeMessage } from "../../src/castore/directory.ts";
import { narListing } from "../../src/nar/listing.ts";
import { importStorePath } from "../../src/store/import.ts";
import { have, run } from "../prereq.ts";

const NIX = have("the nix listing oracle", ["nix", "nix-store"]);

Deno.test({
  name: "narListing equals the .ls Nix writes, offsets included",
  ignore: !NIX,
  fn: async () => {
    const tmp = await Deno.makeTempDir();
    try {
      const t = `${tmp}/tree`;
      await Deno.mkdir(`${t}/sub/deeper`, { recursive: true });
      await Deno.writeTextFile(`${t}/a`, "hello\n");
      await Deno.writeTextFile(`${t}/empty`, "");
      await Deno.writeTextFile(`${t}/sub/x`, "#!/bin/sh\n", { mode: 0o755 });
      await Deno.writeFile(`${t}/sub/deeper/big`, new Uint8Array(100_003).fill(7));
      await Deno.symlink("a", `${t}/l`);
      await Deno.symlink("x".repeat(300), `${t}/sub/long`);
      const env = { NIX_REMOTE: `local?root=${tmp}/n` };
      const add = await run("nix-store", ["--add", t], { env });
      assert.equal(add.code, 0, add.stderr);
      const path = new TextDecoder().decode(add.stdout).trim();
      const cp = await run("nix", [
        "--experimental-features",
        "nix-command",
        "copy",
        "--to",
        `file://${tmp}/c?write-nar-listing=true&compression=none`,
        path,
      ], { env });
      assert.equal(cp.code, 0, cp.stderr);
      const want = JSON.parse(await Deno.readTextFile(`${tmp}/c/${path.slice(11, 43)}.ls`));
      const store = await openStore("memory://");
      const { pathInfo } = await importStorePath(t, store);
      const got = await narListing(fromNodeMessage(pathInfo.node), store.directories);
      assert.deepEqual(got, want);
      await store.close();
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
