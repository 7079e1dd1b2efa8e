/**
 * `nixcas import --export`: what real Nix's `nix-store --export` writes (text CA paths with
 * references, added paths, a .drv, a built output with a deriver) is registered with the
 * references, NAR hash and size and deriver `nix path-info` shows, and `nar` equals
 * `nix-store --dump`; `export -r | import --export -` carries a closure into a second nixcas
 * store; a reference the store lacks, a malformed stream and bad arguments are refused.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { decodeDigest } from "../../src/store/nix_hash.ts";
import { encode as nixbase32 } from "../../src/store/nixbase32.ts";
import { makeFixture, sh } from "../nix_fixture.ts";
import { have, nixcas, run } from "../prereq.ts";

const NIX = have("import --export tests against Nix", ["nix", "nix-store", "nix-instantiate"]);
const td = new TextDecoder();

type Row = Record<string, unknown>;

/** What the export format carries, with narHash as sha256:<nix32>. */
function normal(r: Row): Row {
  const h = r.narHash as string;
  return {
    path: r.path,
    narHash: h.startsWith("sha256-")
      ? `sha256:${nixbase32(decodeDigest(h.slice(7), "sha256", true))}`
      : h,
    narSize: r.narSize,
    references: r.references,
    deriver: r.deriver ?? null,
  };
}

const byPath = (a: Row, b: Row) => (a.path as string) < (b.path as string) ? -1 : 1;

Deno.test({
  name: "import --export reads nix-store --export: path-info as Nix's, nar as nix-store --dump",
  ignore: !NIX,
  async fn(t) {
    const fx = await makeFixture();
    const env = { NIXCAS_DIR: `${fx.base}/nixcas` };
    try {
      // Every path and its closure, references first, as nix-store -qR orders them.
      const closure = (await sh("nix-store", ["-qR", ...fx.paths], fx.env)).split("\n");
      const stream = await run("nix-store", ["--export", ...closure], { env: fx.env });
      assert.equal(stream.code, 0, stream.stderr);

      await t.step("import --export - prints each path; path-info -r as Nix's", async () => {
        const imp = await nixcas(["import", "--export", "-"], { env, stdin: stream.stdout });
        assert.equal(imp.code, 0, imp.stderr);
        assert.deepEqual(td.decode(imp.stdout).trim().split("\n"), closure);
        // Nix's view, as one query per path (a .drv with --derivation, so it means itself).
        const want: Row[] = [];
        for (const p of closure) {
          const args = p.endsWith(".drv") ? ["--derivation", p] : [p];
          const rows = JSON.parse(
            await sh(
              "nix",
              ["--experimental-features", "nix-command", "path-info", "--json", ...args],
              fx.env,
            ),
          ) as Row[];
          want.push(normal(rows[0]));
        }
        const ours = await nixcas(["path-info", "--json", "-r", ...fx.paths], { env });
        assert.equal(ours.code, 0, ours.stderr);
        const got = (JSON.parse(td.decode(ours.stdout)) as Row[]).map(normal).sort(byPath);
        assert.deepEqual(got, want.sort(byPath));
        // The kinds the fixture makes are all there.
        assert.ok(got.some((r) => (r.references as string[]).length >= 2), "references");
        assert.ok(got.some((r) => r.deriver), "a built output with its deriver");
        assert.ok(got.some((r) => String(r.path).endsWith(".drv")), "a .drv");
      });

      await t.step("nar of every path equals nix-store --dump", async () => {
        for (const p of closure) {
          const ours = await nixcas(["nar", p], { env });
          assert.equal(ours.code, 0, ours.stderr);
          const dump = await run("nix-store", ["--dump", `${fx.store}${p}`]);
          assert.equal(dump.code, 0);
          assert.ok(Buffer.from(ours.stdout).equals(Buffer.from(dump.stdout)), p);
        }
      });

      await t.step("export -r | import --export - into a second nixcas store", async () => {
        const exp = await nixcas(["export", "-r", ...fx.paths], { env });
        assert.equal(exp.code, 0, exp.stderr);
        const env2 = { NIXCAS_DIR: `${fx.base}/nixcas2` };
        const imp = await nixcas(["import", "--export", "-"], { env: env2, stdin: exp.stdout });
        assert.equal(imp.code, 0, imp.stderr);
        assert.equal(td.decode(imp.stdout).trim().split("\n").length, closure.length);
        const info = (e: Record<string, string>) =>
          nixcas(["path-info", "--json", "-r", ...fx.paths], { env: e });
        const [a, b] = await Promise.all([info(env), info(env2)]);
        assert.equal(b.code, 0, b.stderr);
        assert.deepEqual(JSON.parse(td.decode(b.stdout)), JSON.parse(td.decode(a.stdout)));
        // Importing the same stream again registers the same paths again, unchanged.
        const again = await nixcas(["import", "--export", "-"], { env: env2, stdin: exp.stdout });
        assert.equal(again.code, 0, again.stderr);
        assert.deepEqual((await info(env2)).stdout, b.stdout);
      });

      await t.step("--export FILE", async () => {
        const file = `${fx.base}/closure.export`;
        await Deno.writeFile(file, stream.stdout);
        const env3 = { NIXCAS_DIR: `${fx.base}/nixcas3` };
        const imp = await nixcas(["import", "--export", file], { env: env3 });
        assert.equal(imp.code, 0, imp.stderr);
        assert.deepEqual(td.decode(imp.stdout).trim().split("\n"), closure);
      });

      await t.step("a reference the store lacks is refused, nothing registered", async () => {
        const top = closure.find((p) => p.endsWith("-c"))!;
        const refs = (await sh("nix-store", ["-q", "--references", top], fx.env)).split("\n");
        const one = await run("nix-store", ["--export", top], { env: fx.env });
        const env4 = { NIXCAS_DIR: `${fx.base}/nixcas4` };
        const imp = await nixcas(["import", "--export", "-"], { env: env4, stdin: one.stdout });
        assert.equal(imp.code, 1);
        assert.equal(td.decode(imp.stdout), "");
        assert.match(
          imp.stderr,
          new RegExp(
            `^error: invalid export at byte \\d+: ${top} refers to (${
              refs.join("|")
            }), which is neither in the store nor earlier in the export\\n$`,
          ),
        );
        const list = await nixcas(["list"], { env: env4 });
        assert.equal(list.code, 0, list.stderr);
        assert.equal(td.decode(list.stdout), "");
      });

      await t.step("a cut-short stream: the whole paths before the cut stay", async () => {
        // Cut inside the second path's NAR: the first path is registered and printed.
        const first = await run("nix-store", ["--export", closure[0]], { env: fx.env });
        const cut = stream.stdout.subarray(0, first.stdout.length + 20); // its 0 is the 1 here
        const env5 = { NIXCAS_DIR: `${fx.base}/nixcas5` };
        const imp = await nixcas(["import", "--export", "-"], { env: env5, stdin: cut });
        assert.equal(imp.code, 1);
        assert.equal(td.decode(imp.stdout), `${closure[0]}\n`);
        assert.match(
          imp.stderr,
          new RegExp(
            `^error: invalid export at byte ${cut.length}: the NAR of path 2 \\(from byte ${first.stdout.length}\\): invalid NAR at byte 20: `,
          ),
        );
      });

      await t.step("bad arguments", async () => {
        const both = await nixcas(["import", "--export", "-", "x"], { env });
        assert.equal(both.code, 1);
        assert.equal(
          both.stderr,
          "error: --export takes no PATH arguments\n(run 'nixcas import --help' for usage)\n",
        );
        const missing = await nixcas(["import", "--export", `${fx.base}/nothing`], { env });
        assert.equal(missing.code, 1);
        assert.match(missing.stderr, /^error: cannot open \S+\/nothing: No such file/);
      });
    } finally {
      await Deno.remove(fx.base, { recursive: true });
    }
  },
});
