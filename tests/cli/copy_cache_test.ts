/**
 * Binary caches between real Nix and nixcas: `copy --to file://` makes a cache real `nix copy
 * --from` accepts with our key (and refuses with another); caches Nix writes (xz, zstd, none),
 * read from a directory or over HTTP, copy into nixcas with their signatures checked; bad
 * signatures, missing references and wrong NAR bytes register nothing.
 */
import assert from "node:assert/strict";
import { makeFixture, pythonHttpServer, sh } from "../nix_fixture.ts";
import { have, nixcas, run } from "../prereq.ts";

const NIX = have("binary cache copy tests against Nix", ["nix", "nix-store", "python3"]);
const td = new TextDecoder();
const NIX_CMD = ["--experimental-features", "nix-command"];

/** Real `nix copy --from CACHE --to STORE` trusting only `key`. */
function nixCopyFrom(
  cache: string,
  store: string,
  key: string,
  paths: string[],
  env: Record<string, string>,
) {
  return run("nix", [
    ...NIX_CMD,
    "copy",
    "--from",
    cache,
    "--to",
    store,
    "--option",
    "trusted-public-keys",
    key,
    ...paths,
  ], { env });
}

Deno.test({
  name: "copy to and from Nix binary caches, checked both ways",
  ignore: !NIX,
  async fn(t) {
    const fx = await makeFixture();
    const env = { NIXCAS_DIR: `${fx.base}/nixcas` };
    const publicKey = (await Deno.readTextFile(fx.publicKeyFile)).trim();
    const nonCA = fx.hello; // input-addressed: only a signature makes it acceptable
    try {
      const setup = await nixcas(["copy", "--from", `local?root=${fx.store}`, ...fx.paths], {
        env,
      });
      assert.equal(setup.code, 0, setup.stderr);
      await sh("nix-store", [
        "--generate-binary-cache-key",
        "ours-1",
        `${fx.base}/o.sk`,
        `${fx.base}/o.pk`,
      ], fx.env);
      const ourKey = (await Deno.readTextFile(`${fx.base}/o.pk`)).trim();
      await sh("nix-store", [
        "--generate-binary-cache-key",
        "other-1",
        `${fx.base}/x.sk`,
        `${fx.base}/x.pk`,
      ], fx.env);
      const otherKey = (await Deno.readTextFile(`${fx.base}/x.pk`)).trim();

      for (const compression of ["xz", "zstd", "none"]) {
        await t.step(
          `copy --to file:// (${compression}) is a cache real Nix copies from`,
          async () => {
            const cache = `${fx.base}/ours-${compression}`;
            const to = `file://${cache}?compression=${compression}`;
            const r = await nixcas([
              "copy",
              "--to",
              to,
              "--secret-key-file",
              `${fx.base}/o.sk`,
              ...fx.paths,
            ], { env });
            assert.equal(r.code, 0, r.stderr);
            const fresh = `local?root=${fx.base}/from-${compression}`;
            const xdg = { ...fx.env, XDG_CACHE_HOME: `${fx.base}/xdg-${compression}` };
            // A key that signed nothing here:
            const wrong = await nixCopyFrom(`file://${cache}`, fresh, otherKey, [nonCA], xdg);
            assert.notEqual(wrong.code, 0, "a cache signed by another key must be refused");
            assert.match(wrong.stderr, /lacks a valid signature/);
            const ok = await nixCopyFrom(`file://${cache}`, fresh, ourKey, fx.paths, xdg);
            assert.equal(ok.code, 0, ok.stderr);
            const verify = await run("nix-store", ["--verify", "--check-contents"], {
              env: { ...fx.env, NIX_REMOTE: fresh },
            });
            assert.equal(verify.code, 0, verify.stderr);
            assert.doesNotMatch(verify.stderr, /error|modified/i);
          },
        );
      }

      await t.step("sign: a stored signature by our key is what Nix checks", async () => {
        const store = { NIXCAS_DIR: `${fx.base}/nixcas-sign` };
        const r = await nixcas(["copy", "--from", `local?root=${fx.store}`, nonCA], { env: store });
        assert.equal(r.code, 0, r.stderr);
        const sign = await nixcas(["sign", "--key-file", `${fx.base}/x.sk`, nonCA], { env: store });
        assert.equal(sign.code, 0, sign.stderr);
        const [info] = JSON.parse(
          td.decode((await nixcas(["path-info", "--json", nonCA], { env: store })).stdout),
        );
        assert.ok(info.signatures.some((s: string) => s.startsWith("other-1:")), info.signatures);
        // Written without a key: only the stored signatures go out.
        const cache = `${fx.base}/signed-cache`;
        const out = await nixcas(["copy", "--to", `file://${cache}`, nonCA], { env: store });
        assert.equal(out.code, 0, out.stderr);
        const pull = await nixCopyFrom(
          `file://${cache}`,
          `local?root=${fx.base}/from-signed`,
          otherKey,
          [nonCA],
          { ...fx.env, XDG_CACHE_HOME: `${fx.base}/xdg-signed` },
        );
        assert.equal(pull.code, 0, pull.stderr);
        const missing = await nixcas(["sign", nonCA], { env: store });
        assert.equal(missing.code, 1);
        assert.match(missing.stderr, /--key-file is required/);
      });

      // Caches written by Nix itself, signed with the fixture's key.
      const nixCaches: Record<string, string> = { none: fx.cache };
      for (const compression of ["xz", "zstd"]) {
        const cache = `${fx.base}/nix-${compression}`;
        const to = compression === "xz"
          ? `file://${cache}?secret-key=${fx.secretKeyFile}` // Nix's default: xz
          : `file://${cache}?secret-key=${fx.secretKeyFile}&compression=zstd`;
        await sh("nix", [
          ...NIX_CMD,
          "copy",
          "--to",
          to,
          ...fx.paths.filter((p) => !p.endsWith(".drv")),
        ], fx.env);
        await sh("nix", [...NIX_CMD, "copy", "--to", to, "--derivation", fx.drv], fx.env);
        nixCaches[compression] = cache;
      }

      for (const [compression, cache] of Object.entries(nixCaches)) {
        await t.step(
          `copy --from a cache Nix wrote (${compression}), signatures checked`,
          async () => {
            const store = { NIXCAS_DIR: `${fx.base}/nixcas-from-${compression}` };
            const from = `file://${cache}`;
            const unsigned = await nixcas(["copy", "--from", from, nonCA], { env: store });
            assert.equal(unsigned.code, 1);
            assert.match(
              unsigned.stderr,
              new RegExp(`${nonCA}.*no signature by a trusted key|${nonCA}.*signature`),
            );
            assert.equal((await nixcas(["path-info", nonCA], { env: store })).code, 1);
            const r = await nixcas([
              "copy",
              "--from",
              from,
              "--trusted-public-keys",
              publicKey,
              ...fx.paths,
            ], { env: store });
            assert.equal(r.code, 0, r.stderr);
            const ours = await nixcas(["path-info", "--json", "-r", ...fx.paths], { env: store });
            const theirs = await nixcas(["path-info", "--json", "-r", ...fx.paths], { env });
            // The same paths, with the cache's signatures (Nix signed every path it wrote).
            const rows = (b: Uint8Array) => JSON.parse(td.decode(b)) as Record<string, unknown>[];
            const bare = (rs: Record<string, unknown>[]) => rs.map(({ signatures: _, ...r }) => r);
            assert.deepEqual(bare(rows(ours.stdout)), bare(rows(theirs.stdout)));
            for (const row of rows(ours.stdout)) {
              const sigs = row.signatures as string[];
              assert.ok(sigs.some((s) => s.startsWith("test-key-1:")), String(row.path));
            }
          },
        );
      }

      await t.step(
        "copy --from http:// (python's http.server on the Nix-made xz cache)",
        async () => {
          const server = await pythonHttpServer(nixCaches.xz);
          const port = server.port;
          try {
            const store = { NIXCAS_DIR: `${fx.base}/nixcas-http` };
            const r = await nixcas([
              "copy",
              "--from",
              `http://127.0.0.1:${port}`,
              "--trusted-public-keys",
              publicKey,
              ...fx.paths,
            ], { env: store });
            assert.equal(r.code, 0, r.stderr);
            const nar = await nixcas(["nar", nonCA], { env: store });
            const dump = await run("nix-store", ["--dump", `${fx.store}${nonCA}`]);
            assert.deepEqual(nar.stdout, dump.stdout);
          } finally {
            await server.stop();
          }
        },
      );

      await t.step(
        "bad input registers nothing: signature, missing reference, NAR bytes",
        async () => {
          // A copy of the uncompressed Nix cache to spoil.
          const bad = `${fx.base}/bad`;
          await sh("cp", ["-r", fx.cache, bad], fx.env);
          const hash = nonCA.slice(11, 43);
          const narinfo = await Deno.readTextFile(`${bad}/${hash}.narinfo`);
          const flip = (s: string) =>
            s.replace(/Sig: ([^:]+):(.)/, (_, n, c) => `Sig: ${n}:${c === "A" ? "B" : "A"}`);
          await Deno.writeTextFile(`${bad}/${hash}.narinfo`, flip(narinfo));
          const store = { NIXCAS_DIR: `${fx.base}/nixcas-bad` };
          const key = ["--trusted-public-keys", publicKey];
          const sig = await nixcas(["copy", "--from", `file://${bad}`, ...key, nonCA], {
            env: store,
          });
          assert.equal(sig.code, 1);
          assert.match(sig.stderr, new RegExp(nonCA));
          assert.equal((await nixcas(["path-info", nonCA], { env: store })).code, 1);

          // A reference the cache does not have.
          const missing = "/nix/store/00000000000000000000000000000000-gone";
          await Deno.writeTextFile(
            `${bad}/${hash}.narinfo`,
            narinfo.replace(
              /^References: (.*)$/m,
              (_, refs) =>
                `References: ${refs} ${missing.slice(11)}`.replace(": ", ": ").replace(/  +/g, " "),
            ),
          );
          const ref = await nixcas(["copy", "--from", `file://${bad}`, "--no-check-sigs", nonCA], {
            env: store,
          });
          assert.equal(ref.code, 1);
          assert.match(
            ref.stderr,
            new RegExp(`${missing} is not in file://${bad} \\(a reference of ${nonCA}\\)`),
          );
          assert.equal((await nixcas(["path-info", nonCA], { env: store })).code, 1);

          // NAR bytes that do not hash to the narinfo's NarHash (compression=none: flip a byte).
          await Deno.writeTextFile(`${bad}/${hash}.narinfo`, narinfo);
          const url = /^URL: (.*)$/m.exec(narinfo)![1];
          const nar = await Deno.readFile(`${bad}/${url}`);
          const at = new TextDecoder("latin1").decode(nar).indexOf("hi\n"); // the file's contents
          assert.ok(at > 0);
          nar[at] ^= 1;
          await Deno.writeFile(`${bad}/${url}`, nar);
          const body = await nixcas(["copy", "--from", `file://${bad}`, ...key, nonCA], {
            env: store,
          });
          assert.equal(body.code, 1);
          assert.match(body.stderr, new RegExp(`${nonCA} from file://${bad}: .*SHA-256`));
          assert.equal((await nixcas(["path-info", nonCA], { env: store })).code, 1);
        },
      );
    } finally {
      await Deno.remove(fx.base, { recursive: true });
    }
  },
});
