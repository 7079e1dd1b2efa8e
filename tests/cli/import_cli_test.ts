/**
 * `nixcas import A B ...` through the real CLI: every path's result is reported in argument
 * order (store paths on stdout, one line per failure on stderr naming the path, no stack
 * trace), whichever path fails and whenever it fails, and the exit code is 1 if any failed.
 */
import assert from "node:assert/strict";
import { importStorePath } from "../../src/store/import.ts";
import { openStore } from "../../src/backends/open.ts";
import { AT_FDCWD, mkfifoAt } from "../../src/sys/libc.ts";
import { nixcas, serviceFlags } from "../prereq.ts";

const td = new TextDecoder();

/** The store path `path` gets, computed in-process. */
async function expected(path: string): Promise<string> {
  const store = await openStore("memory://");
  try {
    return (await importStorePath(path, store)).storePath.absolute;
  } finally {
    await store.close();
  }
}

Deno.test("import: every path reported in argument order, failures first or last", async () => {
  const base = await Deno.makeTempDir({ prefix: "nixcas-import-cli-" });
  try {
    // Big enough that its import is still running when a later argument fails.
    await Deno.mkdir(`${base}/src/sub`, { recursive: true });
    for (let i = 0; i < 300; i++) {
      await Deno.writeTextFile(`${base}/src/${i % 2 ? "sub/" : ""}f${i}`, `file ${i}\n`.repeat(i));
    }
    await Deno.writeFile(`${base}/big`, new Uint8Array(3 << 20).fill(7));
    await Deno.writeTextFile(`${base}/small`, "small\n");
    mkfifoAt(AT_FDCWD, new TextEncoder().encode(`${base}/fifo`));
    const want: Record<string, string> = {};
    for (const p of ["src", "big", "small"]) want[p] = await expected(`${base}/${p}`);
    const fails: Record<string, RegExp> = {
      missing: /^error: importing \S+\/missing: ENOENT: \S+\/missing\b/,
      fifo: /^error: importing \S+\/fifo: unsupported file type \(fifo\): \S+\/fifo$/,
    };

    let n = 0;
    for (
      const args of [
        ["src", "missing"],
        ["missing", "src"],
        ["src", "fifo"],
        ["fifo", "src"],
        ["big", "fifo", "src", "missing", "small"],
        ["missing", "big", "fifo"],
      ]
    ) {
      const flags = serviceFlags(`sqlite://${base}/store-${n++}.db`);
      const r = await nixcas(["import", "--quiet", ...flags, ...args.map((a) => `${base}/${a}`)]);
      const what = `import ${args.join(" ")}: ${r.stderr}`;
      const failed = args.filter((a) => a in fails);
      assert.equal(r.code, failed.length ? 1 : 0, what);
      assert.deepEqual(
        td.decode(r.stdout).split("\n").slice(0, -1),
        args.filter((a) => a in want).map((a) => want[a]),
        what,
      );
      const lines = r.stderr.split("\n").slice(0, -1);
      assert.equal(lines.length, failed.length + 1, what);
      failed.forEach((a, i) => assert.match(lines[i], fails[a], what));
      assert.equal(
        lines.at(-1),
        `error: ${failed.length} of ${args.length} paths failed to import`,
      );
      assert.ok(!/Uncaught|\n\s+at /.test(r.stderr), what);
    }
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});
