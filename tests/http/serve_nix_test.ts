/**
 * `nixcas serve` against real Nix 2.8 over loopback HTTP: `nix copy --to` pushes the fixture's
 * closure (xz, none, zstd), `nix copy --from` and `nix-store -r` with the serve key as the only
 * trusted key bring it back into fresh stores that `nix-store --verify --check-contents` finds
 * clean (another key is refused), `nix path-info` and `nix store cat` over HTTP show the same
 * data as the source store; tokens, read-only and authenticated reads refuse what they should; a
 * blob lost or corrupted under a running server fails the transfer instead of ending it short.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { decodeDigest } from "../../src/store/nix_hash.ts";
import { encode as nixbase32 } from "../../src/store/nixbase32.ts";
import { type Fixture, makeFixture, sh } from "../nix_fixture.ts";
import { type Background, have, nixcas, run, startNixcas } from "../prereq.ts";

const NIX = have("serve tests against Nix", ["nix", "nix-store", "nix-instantiate", "curl"]);
const NIX_CMD = ["--experimental-features", "nix-command"];
const td = new TextDecoder();

/** A running `nixcas serve` on a loopback port. */
interface Server {
  url: string;
  port: number;
  proc: Background;
  stop(): Promise<void>;
}

async function serve(args: string[], env: Record<string, string>): Promise<Server> {
  const proc = await startNixcas(
    ["serve", "--listen", "127.0.0.1:0", ...args],
    "listening",
    env,
  );
  // The line may arrive in pieces: wait for the whole address.
  let m: RegExpExecArray | null = null;
  for (
    let i = 0;
    i < 100 && !(m = /listening http:\/\/127\.0\.0\.1:(\d+)/.exec(proc.stderr()));
    i++
  ) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(m, `no port in ${proc.stderr()}`);
  const port = Number(m[1]);
  assert.ok(port > 0, "--listen 127.0.0.1:0 prints the port it got");
  let stopped = false;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    proc,
    async stop() {
      if (stopped) return;
      stopped = true;
      proc.child.kill("SIGTERM");
      await proc.child.status;
      await proc.drained;
    },
  };
}

type Row = Record<string, unknown>;

/** `nix path-info --json -r` rows (narHash as sha256:<nix32>), sorted; `store` as --store. */
async function pathInfo(env: Record<string, string>, paths: string[], store?: string) {
  const rows = JSON.parse(
    await sh("nix", [
      ...NIX_CMD,
      "path-info",
      "--json",
      "-r",
      ...(store ? ["--store", store] : []),
      ...paths,
    ], env),
  ) as Row[];
  return rows.map((r) => {
    const out: Row = { path: r.path, narSize: r.narSize, references: r.references };
    const h = r.narHash as string;
    out.narHash = h.startsWith("sha256-")
      ? `sha256:${nixbase32(decodeDigest(h.slice(7), "sha256", true))}`
      : h;
    if (r.deriver) out.deriver = r.deriver;
    if (r.ca) out.ca = r.ca;
    return out;
  }).sort((a, b) => (a.path as string) < (b.path as string) ? -1 : 1);
}

/** The fixture with a serve key, another key, and fresh Nix client caches on demand. */
interface Setup {
  fx: Fixture;
  serveKey: string;
  otherKey: string;
  serveSk: string;
  /** The fixture's Nix env with a fresh XDG_CACHE_HOME (Nix caches narinfo answers). */
  nixEnv(extra?: Record<string, string>): Record<string, string>;
  /** A fresh directory name under the fixture. */
  fresh(tag: string): string;
  /** The paths without the .drv (which `nix copy` takes with --derivation). */
  outputs: string[];
  /** The closure of every path of the fixture, sorted. */
  closure: string[];
}

async function setup(): Promise<Setup> {
  const fx = await makeFixture();
  await sh("nix-store", [
    "--generate-binary-cache-key",
    "serve-1",
    `${fx.base}/serve.sk`,
    `${fx.base}/serve.pk`,
  ], fx.env);
  await sh("nix-store", [
    "--generate-binary-cache-key",
    "other-1",
    `${fx.base}/other.sk`,
    `${fx.base}/other.pk`,
  ], fx.env);
  let n = 0;
  const fresh = (tag: string) => `${fx.base}/${tag}-${n++}`;
  return {
    fx,
    serveKey: (await Deno.readTextFile(`${fx.base}/serve.pk`)).trim(),
    otherKey: (await Deno.readTextFile(`${fx.base}/other.pk`)).trim(),
    serveSk: `${fx.base}/serve.sk`,
    nixEnv: (extra = {}) => ({ ...fx.env, XDG_CACHE_HOME: fresh("xdg"), ...extra }),
    fresh,
    outputs: fx.paths.filter((p) => !p.endsWith(".drv")),
    closure: [...new Set((await sh("nix-store", ["-qR", ...fx.paths], fx.env)).split("\n"))].sort(),
  };
}

/** `nix copy --to URL` of the closure (the outputs, then the .drv), as the fixture does. */
async function push(s: Setup, to: string, extra: string[] = []) {
  const env = s.nixEnv();
  const a = await run("nix", [...NIX_CMD, "copy", ...extra, "--to", to, ...s.outputs], { env });
  if (a.code !== 0) return a;
  return await run("nix", [...NIX_CMD, "copy", ...extra, "--to", to, "--derivation", s.fx.drv], {
    env,
  });
}

async function nixcasList(dir: string): Promise<string[]> {
  const r = await nixcas(["list"], { env: { NIXCAS_DIR: dir } });
  if (r.code !== 0) return [];
  return td.decode(r.stdout).split("\n").filter(Boolean).sort();
}

Deno.test({
  name: "serve: nix copy --to (xz, none, zstd) and --from with the serve key; verify is clean",
  ignore: !NIX,
  async fn(t) {
    const s = await setup();
    const servers: Server[] = [];
    try {
      for (const compression of ["xz", "none", "zstd"]) {
        await t.step(`push with ${compression}, copy back, verify`, async () => {
          const dir = s.fresh("nixcas");
          const server = await serve(["--secret-key-file", s.serveSk], { NIXCAS_DIR: dir });
          servers.push(server);
          // xz is Nix's default: no parameter.
          const to = compression === "xz" ? server.url : `${server.url}?compression=${compression}`;
          const pushed = await push(s, to);
          assert.equal(pushed.code, 0, pushed.stderr);
          assert.deepEqual(await nixcasList(dir), s.closure);
          // Pushing again finds everything there and uploads nothing.
          const again = await push(s, to);
          assert.equal(again.code, 0, again.stderr);

          const root = s.fresh("from");
          const wrong = await run("nix", [
            ...NIX_CMD,
            "copy",
            "--from",
            server.url,
            "--to",
            `local?root=${root}`,
            "--option",
            "trusted-public-keys",
            s.otherKey,
            s.fx.hello, // input-addressed: only a signature makes it acceptable
          ], { env: s.nixEnv() });
          assert.notEqual(wrong.code, 0, "a cache signed by another key must be refused");
          assert.match(wrong.stderr, /lacks a valid signature/);

          const env = s.nixEnv();
          for (const args of [s.outputs, ["--derivation", s.fx.drv]]) {
            const ok = await run("nix", [
              ...NIX_CMD,
              "copy",
              "--from",
              server.url,
              "--to",
              `local?root=${root}`,
              "--option",
              "trusted-public-keys",
              s.serveKey,
              ...args,
            ], { env });
            assert.equal(ok.code, 0, ok.stderr);
          }
          const local = { ...s.fx.env, NIX_REMOTE: `local?root=${root}` };
          const verify = await run("nix-store", ["--verify", "--check-contents"], { env: local });
          assert.equal(verify.code, 0, verify.stderr);
          assert.doesNotMatch(verify.stderr, /error|modified|corrupt/i);
          // The same paths, hashes, references, derivers and CAs as the source store.
          assert.deepEqual(
            await pathInfo(local, s.fx.paths),
            await pathInfo(s.fx.env, s.fx.paths),
          );
          // The signature the server adds is the serve key's.
          const sigs = JSON.parse(
            await sh("nix", [...NIX_CMD, "path-info", "--json", s.fx.hello], local),
          )[0].signatures as string[];
          assert.ok(sigs.some((x) => x.startsWith("serve-1:")), sigs.join(" "));
          if (compression !== "xz") await server.stop();
        });
      }

      const server = servers[0]; // xz, still running
      await t.step("nix-store -r substitutes the closure from the server", async () => {
        const root = s.fresh("subst");
        const env = s.nixEnv({ NIX_REMOTE: `local?root=${root}` });
        const r = await run("nix-store", [
          "-r",
          s.fx.hello,
          s.fx.paths[0], // the text path c, with its references b and a
          "--option",
          "substituters",
          server.url,
          "--option",
          "trusted-public-keys",
          s.serveKey,
        ], { env });
        assert.equal(r.code, 0, r.stderr);
        assert.equal(await Deno.readTextFile(`${root}${s.fx.hello}`), "hi\n");
        const closure = (await sh("nix-store", ["-qR", s.fx.paths[0]], env)).split("\n");
        assert.equal(closure.length, 3);
        for (const p of closure) {
          assert.equal(
            await Deno.readTextFile(`${root}${p}`),
            await Deno.readTextFile(`${s.fx.store}${p}`),
          );
        }
        const verify = await run("nix-store", ["--verify", "--check-contents"], { env });
        assert.equal(verify.code, 0, verify.stderr);
      });

      await t.step("nix path-info and nix store cat/ls --store http://", async () => {
        assert.deepEqual(
          await pathInfo(s.nixEnv(), s.outputs, server.url),
          await pathInfo(s.fx.env, s.outputs),
        );
        const dir = s.outputs.find((p) => p.endsWith("-d"))!;
        const cat = await sh(
          "nix",
          [...NIX_CMD, "store", "cat", "--store", server.url, `${dir}/y`],
          s.nixEnv(),
        );
        assert.equal(cat, "x");
        const ls = await sh(
          "nix",
          [...NIX_CMD, "store", "ls", "--store", server.url, "-l", dir],
          s.nixEnv(),
        );
        assert.match(ls, /-r-xr-xr-x +10 \.\/run\n/);
        assert.match(ls, /lrwxrwxrwx +0 \.\/l -> y\n/);
      });
    } finally {
      for (const server of servers) await server.stop();
      await Deno.remove(s.fx.base, { recursive: true });
    }
  },
});

Deno.test({
  name: "serve: tokens (netrc), --read-only, --auth-reads against Nix and curl",
  ignore: !NIX,
  async fn(t) {
    const s = await setup();
    const tokenFile = `${s.fx.base}/tokens`;
    await Deno.writeTextFile(tokenFile, "another\ns3cret-token\n");
    const netrc = `${s.fx.base}/netrc`;
    await Deno.writeTextFile(netrc, "machine 127.0.0.1 login x password s3cret-token\n");
    const wrongNetrc = `${s.fx.base}/netrc-wrong`;
    await Deno.writeTextFile(wrongNetrc, "machine 127.0.0.1 login x password nope\n");
    const servers: Server[] = [];
    const start = async (args: string[]) => {
      const dir = s.fresh("nixcas");
      const server = await serve(args, { NIXCAS_DIR: dir });
      servers.push(server);
      return { server, dir };
    };
    try {
      await t.step("a push needs the token; Nix sends it from a netrc file", async () => {
        const { server, dir } = await start(["--auth-token-file", tokenFile]);
        const without = await push(s, server.url);
        assert.notEqual(without.code, 0, "a push without credentials must fail");
        const wrong = await push(s, server.url, ["--option", "netrc-file", wrongNetrc]);
        assert.notEqual(wrong.code, 0, "a push with a wrong token must fail");
        assert.deepEqual(await nixcasList(dir), []);
        const ok = await push(s, server.url, ["--option", "netrc-file", netrc]);
        assert.equal(ok.code, 0, ok.stderr);
        assert.deepEqual(await nixcasList(dir), s.closure);
        // Reads stay public.
        const hash = s.fx.hello.slice(11, 43);
        const res = await fetch(`${server.url}/${hash}.narinfo`);
        assert.equal(res.status, 200);
        assert.match(await res.text(), new RegExp(`StorePath: ${s.fx.hello}`));
        const curl = await run("curl", [
          "-s",
          "-o",
          "/dev/null",
          "-w",
          "%{http_code}",
          "-X",
          "PUT",
          "--data-binary",
          "StoreDir: /nix/store\n",
          `${server.url}/nix-cache-info`,
        ]);
        assert.equal(td.decode(curl.stdout), "401");
      });

      await t.step("--read-only refuses every PUT with 403", async () => {
        const { server, dir } = await start(["--read-only"]);
        const r = await push(s, server.url);
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /403/);
        for (const path of ["/nix-cache-info", `/nar/${"1".repeat(52)}.nar`]) {
          const res = await fetch(`${server.url}${path}`, { method: "PUT", body: "x" });
          assert.equal(res.status, 403, path);
          await res.body?.cancel();
        }
        assert.deepEqual(await nixcasList(dir), []);
        const info = await fetch(`${server.url}/nix-cache-info`);
        assert.equal(info.status, 200);
        assert.match(await info.text(), /^StoreDir: \/nix\/store\n/);
      });

      await t.step("--auth-reads: reads need the token, /health does not", async () => {
        const { server } = await start(["--auth-token-file", tokenFile, "--auth-reads"]);
        const ok = await push(s, server.url, ["--option", "netrc-file", netrc]);
        assert.equal(ok.code, 0, ok.stderr);
        const hash = s.fx.hello.slice(11, 43);
        for (const path of [`/${hash}.narinfo`, "/nix-cache-info", `/nar/${hash}.nar`]) {
          const res = await fetch(`${server.url}${path}`);
          assert.equal(res.status, 401, path);
          await res.body?.cancel();
        }
        const health = await fetch(`${server.url}/health`);
        assert.equal(health.status, 200);
        await health.body?.cancel();
        const curl = await run("curl", [
          "-sf",
          "--netrc-file",
          netrc,
          `${server.url}/${hash}.narinfo`,
        ]);
        assert.equal(curl.code, 0, curl.stderr);
        assert.match(td.decode(curl.stdout), new RegExp(`StorePath: ${s.fx.hello}`));
        // Nix with the netrc reads; without it, it finds nothing.
        const root = s.fresh("from");
        const copy = (extra: string[]) =>
          run("nix", [
            ...NIX_CMD,
            "copy",
            ...extra,
            "--from",
            server.url,
            "--to",
            `local?root=${root}`,
            "--option",
            "trusted-public-keys",
            (Deno.readTextFileSync(s.fx.publicKeyFile)).trim(), // hello's own signature
            s.fx.hello,
          ], { env: s.nixEnv() });
        assert.notEqual((await copy([])).code, 0);
        const withNetrc = await copy(["--option", "netrc-file", netrc]);
        assert.equal(withNetrc.code, 0, withNetrc.stderr);
      });
    } finally {
      for (const server of servers) await server.stop();
      await Deno.remove(s.fx.base, { recursive: true });
    }
  },
});

Deno.test({
  name: "serve: a blob lost or corrupted under a running server fails the transfer",
  ignore: !NIX,
  async fn(t) {
    const s = await setup();
    // A path with a file over 1 MiB (its bytes in the pack file) and a small one.
    const src = `${s.fx.base}/big`;
    await Deno.mkdir(src);
    const data = new Uint8Array(3 << 20);
    for (let o = 0; o < data.length; o += 65536) {
      crypto.getRandomValues(data.subarray(o, o + 65536));
    }
    await Deno.writeFile(`${src}/data.bin`, data);
    await Deno.writeTextFile(`${src}/note`, "small\n");
    const big = await sh("nix-store", ["--add", src], s.fx.env);
    const hash = big.slice(11, 43);
    const servers: Server[] = [];
    try {
      for (const harm of ["delete the blob row", "corrupt the pack bytes"]) {
        await t.step(harm, async () => {
          const dir = s.fresh("nixcas");
          const server = await serve([], { NIXCAS_DIR: dir });
          servers.push(server);
          const env = s.nixEnv();
          const pushed = await run("nix", [...NIX_CMD, "copy", "--to", server.url, big], { env });
          assert.equal(pushed.code, 0, pushed.stderr);
          const narinfo = await (await fetch(`${server.url}/${hash}.narinfo`)).text();
          const size = Number(/^NarSize: (\d+)$/m.exec(narinfo)![1]);
          const url = `${server.url}/${/^URL: (.*)$/m.exec(narinfo)![1]}`;
          // Whole before the harm.
          assert.equal((await (await fetch(url)).bytes()).length, size);

          const db = new DatabaseSync(`${dir}/store.db`);
          try {
            if (harm.startsWith("delete")) {
              const r = db.prepare("DELETE FROM blobs WHERE size > 1048576").run();
              assert.equal(r.changes, 1);
            } else {
              const row = db.prepare("SELECT chunks FROM blobs WHERE size > 1048576").get() as {
                chunks: Uint8Array;
              };
              // The second chunk's position: the first bytes already went out unharmed.
              const pos = Number(
                new DataView(row.chunks.buffer, row.chunks.byteOffset).getBigUint64(8, true),
              );
              const pack = await Deno.open(`${dir}/store.db-pack`, { write: true });
              await pack.seek(pos + 100, Deno.SeekMode.Start);
              await pack.write(new Uint8Array(16).fill(0x55));
              pack.close();
            }
          } finally {
            db.close();
          }

          // curl: the reply ends before Content-Length bytes, and curl says so.
          const curl = await run("curl", [
            "-s",
            "-o",
            `${s.fx.base}/out.nar`,
            "-w",
            "%{http_code} %{size_download}",
            url,
          ]);
          assert.notEqual(curl.code, 0, "curl must see a failed transfer");
          const [code, got] = td.decode(curl.stdout).split(" ");
          assert.equal(code, "200");
          assert.ok(Number(got) < size, `${got} of ${size} bytes`);
          // fetch: the body errors.
          const res = await fetch(url);
          await assert.rejects(res.bytes());
          // A range past the harm too.
          const ranged = await fetch(url, { headers: { range: "bytes=1000-" } });
          assert.equal(ranged.status, 206);
          await assert.rejects(ranged.bytes());

          const root = s.fresh("from");
          const copy = await run("nix", [
            ...NIX_CMD,
            "copy",
            "--from",
            server.url,
            "--to",
            `local?root=${root}`,
            "--no-check-sigs",
            // One retry (the default 5 take ~8 s of back-off): it fails the same way.
            "--option",
            "download-attempts",
            "2",
            big,
          ], { env: s.nixEnv() });
          assert.notEqual(copy.code, 0, "nix copy --from must fail");
          const valid = await run("nix-store", ["--check-validity", big], {
            env: { ...s.fx.env, NIX_REMOTE: `local?root=${root}` },
          });
          assert.notEqual(valid.code, 0, `${big} must not be valid in the target`);
          // The server logged it and goes on serving.
          assert.match(server.proc.stderr(), new RegExp(`GET /nar/${hash}\\.nar: `));
          const health = await fetch(`${server.url}/health`);
          assert.equal(health.status, 200);
          await health.body?.cancel();
          await server.stop();
        });
      }
    } finally {
      for (const server of servers) await server.stop();
      await Deno.remove(s.fx.base, { recursive: true });
    }
  },
});
