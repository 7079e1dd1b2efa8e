// The hand-built NAR fixtures against real Nix: `nix-store --dump` of equivalent paths must
// give the same bytes, so a mistake in the fixture's token helper cannot hide behind a matching
// mistake in our NarWriter or renderer.
import assert from "node:assert/strict";
import { have, run } from "../prereq.ts";
import {
  NAR_CONTENTS_COMPLICATED,
  NAR_CONTENTS_HELLOWORLD,
  NAR_CONTENTS_SYMLINK,
} from "./fixtures.ts";

const NIX = have("NAR fixtures vs nix-store --dump", ["nix-store"]);

Deno.test({
  name: "fixtures: NAR_CONTENTS_* equal nix-store --dump of the same symlink, file, directory",
  ignore: !NIX,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "nixcas-nar-fixtures-" });
    try {
      await Deno.symlink("/nix/store/somewhereelse", `${tmp}/symlink`);
      await Deno.writeTextFile(`${tmp}/helloworld`, "Hello World!");
      // Not executable whatever the umask: the fixture has no "executable" token.
      await Deno.chmod(`${tmp}/helloworld`, 0o644);
      await Deno.mkdir(`${tmp}/complicated/keep`, { recursive: true });
      await Deno.writeFile(`${tmp}/complicated/.keep`, new Uint8Array());
      await Deno.writeFile(`${tmp}/complicated/keep/.keep`, new Uint8Array());
      await Deno.chmod(`${tmp}/complicated/.keep`, 0o644);
      await Deno.chmod(`${tmp}/complicated/keep/.keep`, 0o644);
      await Deno.symlink("/nix/store/somewhereelse", `${tmp}/complicated/aa`);
      const cases: [string, Uint8Array][] = [
        ["symlink", NAR_CONTENTS_SYMLINK],
        ["helloworld", NAR_CONTENTS_HELLOWORLD],
        ["complicated", NAR_CONTENTS_COMPLICATED],
      ];
      for (const [name, fixture] of cases) {
        const out = await run("nix-store", ["--dump", `${tmp}/${name}`]);
        assert.equal(out.code, 0, `nix-store --dump ${tmp}/${name}: ${out.stderr}`);
        assert.deepEqual(fixture, out.stdout, `${name}: fixture bytes vs nix-store --dump`);
      }
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
