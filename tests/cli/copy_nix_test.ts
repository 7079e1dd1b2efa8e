/**
 * Closures between real Nix and nixcas: `copy --from local?root=…` keeps references, NAR hash
 * and size, CA, deriver and signatures exactly as `nix path-info` shows them, `nar` equals
 * `nix-store --dump`, and `export -r | nix-store --import` loads the closure into a fresh Nix
 * store that `nix-store --verify --check-contents` finds clean.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { decodeDigest } from "../../src/store/nix_hash.ts";
import { encode as nixbase32 } from "../../src/store/nixbase32.ts";
import { makeFixture, sh } from "../nix_fixture.ts";
import { have, nixcas, run } from "../prereq.ts";

const NIX = have("copy tests against Nix", ["nix", "nix-store", "nix-instantiate"]);
const td = new TextDecoder();

type Row = Record<string, unknown>;

/** `nix path-info --json -r` rows, with narHash as sha256:<nix32> and no registration time. */
async function nixPathInfo(env: Record<string, string>, paths: string[]) {
  const query = async (args: string[]) =>
    JSON.parse(
      await sh(
        "nix",
        ["--experimental-features", "nix-command", "path-info", "--json", ...args],
        env,
      ),
    ) as Row[];
  // A .drv argument means its outputs unless --derivation, which makes any other path mean its
  // deriver: one query for each kind.
  const drvs = paths.filter((p) => p.endsWith(".drv"));
  const rows = [
    ...await query(["-r", ...paths.filter((p) => !p.endsWith(".drv"))]),
    ...(drvs.length ? await query(["-r", "--derivation", ...drvs]) : []),
  ];
  const unique = new Map(rows.map((r) => [r.path as string, normal(r)]));
  return [...unique.values()].sort(byPath);
}

function normal(r: Row): Row {
  const out: Row = { path: r.path, narSize: r.narSize, references: r.references };
  const h = r.narHash as string;
  out.narHash = h.startsWith("sha256-")
    ? `sha256:${nixbase32(decodeDigest(h.slice(7), "sha256", true))}`
    : h;
  if (r.deriver) out.deriver = r.deriver;
  if (r.ca) out.ca = r.ca;
  if (r.signatures) out.signatures = r.signatures;
  return out;
}

const byPath = (a: Row, b: Row) => (a.path as string) < (b.path as string) ? -1 : 1;

Deno.test({
  name: "copy --from local?root= keeps every path's metadata; nar equals nix-store --dump; " +
    "export -r loads into Nix",
  ignore: !NIX,
  async fn(t) {
    const fx = await makeFixture();
    const env = { NIXCAS_DIR: `${fx.base}/nixcas` };
    const from = `local?root=${fx.store}`;
    try {
      await t.step("copy the closures and compare path-info -r with Nix", async () => {
        const copy = await nixcas(["copy", "--from", from, ...fx.paths], { env });
        assert.equal(copy.code, 0, copy.stderr);
        assert.match(copy.stderr, /paths copied/);
        const want = await nixPathInfo(fx.env, fx.paths);
        const ours = await nixcas(["path-info", "--json", "-r", ...fx.paths], { env });
        assert.equal(ours.code, 0, ours.stderr);
        const got = (JSON.parse(td.decode(ours.stdout)) as Row[]).map(normal).sort(byPath);
        assert.deepEqual(got, want);
        // The kinds the issue names are all there.
        assert.ok(got.some((r) => String(r.ca).startsWith("text:")), "a text CA path");
        assert.ok(got.some((r) => String(r.ca).startsWith("fixed:r:sha256:")), "an added path");
        assert.ok(got.some((r) => r.deriver && r.signatures && !r.ca), "a signed built output");
        assert.ok(got.some((r) => String(r.path).endsWith(".drv")), "a .drv");
        // Copying again copies nothing.
        const again = await nixcas(["copy", "--from", from, ...fx.paths], { env });
        assert.equal(again.code, 0, again.stderr);
        assert.match(again.stderr, /0 paths copied/);
      });

      await t.step("closure size as nix path-info -S", async () => {
        const nix = JSON.parse(
          await sh("nix", [
            "--experimental-features",
            "nix-command",
            "path-info",
            "--json",
            "-S",
            fx.paths[0],
          ], fx.env),
        );
        const ours = await nixcas(["path-info", "--json", "-S", fx.paths[0]], { env });
        assert.equal(JSON.parse(td.decode(ours.stdout))[0].closureSize, nix[0].closureSize);
      });

      await t.step("nar of every path equals nix-store --dump", async () => {
        const all = (JSON.parse(
          td.decode((await nixcas(["path-info", "--json", "-r", ...fx.paths], { env })).stdout),
        ) as Row[]).map((r) => r.path as string);
        for (const p of all) {
          const ours = await nixcas(["nar", p], { env });
          assert.equal(ours.code, 0, ours.stderr);
          const dump = await run("nix-store", ["--dump", `${fx.store}${p}`]);
          assert.ok(Buffer.from(ours.stdout).equals(Buffer.from(dump.stdout)), p);
        }
      });

      await t.step("export -r | nix-store --import into a fresh store", async () => {
        const exp = await nixcas(["export", "-r", ...fx.paths], { env });
        assert.equal(exp.code, 0, exp.stderr);
        const fresh = { ...fx.env, NIX_REMOTE: `local?root=${fx.base}/fresh` };
        const imp = await run("nix-store", ["--import"], { env: fresh, stdin: exp.stdout });
        assert.equal(imp.code, 0, imp.stderr);
        const verify = await run("nix-store", ["--verify", "--check-contents"], { env: fresh });
        assert.equal(verify.code, 0, verify.stderr);
        assert.doesNotMatch(verify.stderr, /error|modified|corrupt/i);
        // Same paths, hashes, sizes, references and derivers (the export format carries no CA
        // and no signatures).
        const strip = (rows: Row[]) =>
          rows.map(({ path, narHash, narSize, references, deriver }) => ({
            path,
            narHash,
            narSize,
            references,
            deriver,
          }));
        assert.deepEqual(
          strip(await nixPathInfo(fresh, fx.paths)),
          strip(await nixPathInfo(fx.env, fx.paths)),
        );
      });

      await t.step("copy --to local?root= writes through nix-store --import", async () => {
        const to = `local?root=${fx.base}/fresh2`;
        const copy = await nixcas(["copy", "--to", to, fx.paths[0]], { env });
        assert.equal(copy.code, 0, copy.stderr);
        const fresh = { ...fx.env, NIX_REMOTE: to };
        const verify = await run("nix-store", ["--verify", "--check-contents"], { env: fresh });
        assert.equal(verify.code, 0, verify.stderr);
        const q = await sh("nix-store", ["-q", "--requisites", fx.paths[0]], fresh);
        assert.equal(q.split("\n").length, 3);
        const again = await nixcas(["copy", "--to", to, fx.paths[0]], { env });
        assert.match(again.stderr, /0 paths copied \(.*\), 3 already in/);
      });

      await t.step(
        "bad input: unknown path, unknown store, path absent from the source",
        async () => {
          const missing = "/nix/store/00000000000000000000000000000000-nothing";
          const r = await nixcas(["copy", "--from", from, missing], { env });
          assert.equal(r.code, 1);
          assert.match(r.stderr, new RegExp(`${missing} is not in ${from.replace(/[?]/g, "\\?")}`));
          const bad = await nixcas(["copy", "--from", "local?root=/nonexistent", fx.paths[0]], {
            env,
          });
          assert.equal(bad.code, 1);
          assert.match(
            bad.stderr,
            /no Nix database at \/nonexistent\/nix\/var\/nix\/db\/db\.sqlite/,
          );
          const addr = await nixcas(["copy", "--from", "ftp://x", fx.paths[0]], { env });
          assert.match(addr.stderr, /ftp:\/\/x: not a store address/);
        },
      );
    } finally {
      await Deno.remove(fx.base, { recursive: true });
    }
  },
});
