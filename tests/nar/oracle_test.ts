// Real Nix as the oracle: NAR bytes against `nix-store --dump`, store paths against
// `nix-store --add` in a throw-away store, for trees imported by the castore importer.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import type { AnyNode } from "../../src/castore/directory.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import { calculateNar } from "../../src/nar/hash.ts";
import { renderNar } from "../../src/nar/render.ts";
import { collect } from "../../src/base/async.ts";
import { concat } from "../../src/base/bytes.ts";
import { importPath } from "../../src/castore/import/mod.ts";
import { sourceStorePath } from "../../src/store/store_path.ts";

const te = new TextEncoder();

function hasNix(): boolean {
  try {
    return new Deno.Command("nix-store", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}
const NIX = hasNix();
if (!NIX) console.log("nix-store not found: skipping the real-Nix oracle tests");

async function run(args: string[], env: Record<string, string> = {}): Promise<Uint8Array> {
  const out = await new Deno.Command(args[0], { args: args.slice(1), env, stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return out.stdout;
}

async function renderAll(node: AnyNode, blobs: MemoryBlobService, dirs: MemoryDirectoryService) {
  return concat(await collect(renderNar(node, blobs, dirs)));
}

/** Builds the test tree: modes, symlinks, byte-order names, padding, a multi-chunk file. */
async function buildTree(root: string): Promise<void> {
  const w = (p: string, s: string | Uint8Array, mode = 0o644) =>
    Deno.writeFile(`${root}/${p}`, typeof s === "string" ? te.encode(s) : s, { mode });
  await Deno.mkdir(`${root}/tree/sub/deeper`, { recursive: true });
  await Deno.mkdir(`${root}/tree/empty-dir`);
  await w("tree/a", "hello\n");
  await w("tree/B", "upper case sorts first\n");
  await w("tree/.hidden", "");
  await w("tree/a-b", "1234567");
  await w("tree/a.b", "12345678");
  await w("tree/run.sh", "#!/bin/sh\necho hi\n", 0o755);
  await w("tree/owner-only-x", "x", 0o744);
  await w("tree/group-x", "x", 0o645);
  const big = new Uint8Array((1 << 20) + 12345);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 9)) & 0xff;
  await w("tree/sub/big.bin", big);
  await w("tree/sub/deeper/leaf", "leaf");
  await Deno.symlink("a", `${root}/tree/link-rel`);
  await Deno.symlink("/nix/store/somewhereelse", `${root}/tree/sub/link-abs`);
  await Deno.symlink("does/not/exist", `${root}/tree/dangling`);
  // Modes chmod'ed explicitly: writeFile's mode is subject to the umask.
  await Deno.chmod(`${root}/tree/run.sh`, 0o755);
  await Deno.chmod(`${root}/tree/owner-only-x`, 0o744);
  await Deno.chmod(`${root}/tree/group-x`, 0o645);
  await w("file.txt", "a single file\n");
  await Deno.symlink("file.txt", `${root}/root-link`);
}

Deno.test({
  name: "oracle: NAR bytes equal nix-store --dump; sourceStorePath equals nix-store --add",
  ignore: !NIX,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "nixcas-oracle-" });
    try {
      await Deno.mkdir(`${tmp}/src`);
      await buildTree(`${tmp}/src`);
      const env = { NIX_REMOTE: `local?root=${tmp}/nixroot` };
      for (const entry of ["tree", "file.txt", "root-link"]) {
        const path = `${tmp}/src/${entry}`;
        const blobs = new MemoryBlobService();
        const dirs = new MemoryDirectoryService();
        const node = await importPath(path, blobs, dirs);
        const ours = await renderAll(node, blobs, dirs);
        const theirs = await run(["nix-store", "--dump", path]);
        assert.equal(ours.length, theirs.length, `${entry}: NAR length`);
        assert.deepEqual(ours, theirs, `${entry}: NAR bytes`);

        const calc = await calculateNar(node, blobs, dirs);
        assert.equal(calc.narSize, theirs.length);
        assert.deepEqual(
          calc.narSha256,
          new Uint8Array(createHash("sha256").update(theirs).digest()),
        );

        const added = new TextDecoder().decode(await run(["nix-store", "--add", path], env))
          .trim();
        assert.equal(sourceStorePath(entry, calc.narSha256).absolute, added, entry);
      }
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
