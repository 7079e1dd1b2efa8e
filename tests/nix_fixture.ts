/**
 * A throw-away Nix store made by real Nix (Debian nix-bin 2.8), with every kind of path Nix
 * makes: text paths with references (`builtins.toFile`), `nix-store --add` and `--add-fixed`
 * paths of each hash, a `.drv`, and a built output with a deriver, signed; and a `file://`
 * cache of them, signed, written by `nix copy`.
 */
import assert from "node:assert/strict";
import { run } from "./prereq.ts";

const td = new TextDecoder();

export interface Fixture {
  base: string;
  env: Record<string, string>;
  store: string;
  cache: string;
  secretKeyFile: string;
  publicKeyFile: string;
  /** The built output (input-addressed, with a deriver). */
  hello: string;
  drv: string;
  /** Every path made, the built output and the .drv included. */
  paths: string[];
}

export async function sh(
  cmd: string,
  args: string[],
  env: Record<string, string>,
): Promise<string> {
  const out = await run(cmd, args, { env });
  assert.equal(out.code, 0, `${cmd} ${args.join(" ")}: ${out.stderr}`);
  return td.decode(out.stdout).trim();
}

export async function makeFixture(): Promise<Fixture> {
  const base = await Deno.makeTempDir({ prefix: "nixcas-sigs-" });
  const store = `${base}/store`;
  // A fresh HOME and cache: Nix must not reuse another run's narinfo answers.
  // No substituters: nothing here may reach the network.
  const env = {
    NIX_REMOTE: `local?root=${store}`,
    HOME: base,
    XDG_CACHE_HOME: `${base}/cache`,
    NIX_CONFIG: "substituters =\n",
  };
  const secretKeyFile = `${base}/sk`;
  const publicKeyFile = `${base}/pk`;
  await sh("nix-store", [
    "--generate-binary-cache-key",
    "test-key-1",
    secretKeyFile,
    publicKeyFile,
  ], env);
  const paths: string[] = [];
  paths.push(JSON.parse(
    await sh("nix-instantiate", [
      "--eval",
      "--read-write-mode",
      "-E",
      'let a = builtins.toFile "a" "x"; b = builtins.toFile "b" "uses ${a}"; in ' +
      'builtins.toFile "c" "uses ${b} and ${a}"',
    ], env),
  ));
  await Deno.writeTextFile(`${base}/f`, "hi\n");
  await Deno.mkdir(`${base}/d`);
  await Deno.writeTextFile(`${base}/d/y`, "x\n");
  await Deno.writeTextFile(`${base}/d/run`, "#!/bin/sh\n", { mode: 0o755 });
  await Deno.symlink("y", `${base}/d/l`);
  paths.push(await sh("nix-store", ["--add", `${base}/f`, `${base}/d`], env));
  for (const args of [["sha256", "f"], ["sha1", "f"], ["md5", "f"], ["sha512", "f"]]) {
    paths.push(await sh("nix-store", ["--add-fixed", args[0], `${base}/${args[1]}`], env));
  }
  for (const algo of ["sha1", "sha512", "md5"]) {
    paths.push(await sh("nix-store", ["--add-fixed", "--recursive", algo, `${base}/d`], env));
  }
  await Deno.writeTextFile(
    `${base}/drv.nix`,
    'derivation { name = "hello"; system = builtins.currentSystem; builder = "/bin/sh"; ' +
      'args = ["-c" "echo hi > $out"]; src = builtins.toFile "src" "x"; }',
  );
  const drv = await sh("nix-instantiate", [`${base}/drv.nix`], env);
  // A root store builds in a chroot: give the builder the host's shell and libraries.
  const hostPaths = ["/bin", "/lib", "/lib64", "/usr"].filter((p) => {
    try {
      Deno.statSync(p);
      return true;
    } catch {
      return false;
    }
  });
  const hello = await sh("nix-store", [
    "--realise",
    drv,
    "--option",
    "sandbox-paths",
    hostPaths.join(" "),
  ], env);
  // The built output is signed in the store, as a trusted builder's would be.
  await sh("nix", [
    "--experimental-features",
    "nix-command",
    "store",
    "sign",
    "--key-file",
    secretKeyFile,
    hello,
  ], env);
  const cache = `${base}/cache1`;
  const nixCopy = ["--experimental-features", "nix-command", "copy", "--to"];
  const to = `file://${cache}?secret-key=${secretKeyFile}&compression=none`;
  await sh("nix", [...nixCopy, to, ...paths.join("\n").split("\n"), hello], env);
  await sh("nix", [...nixCopy, to, "--derivation", drv], env);
  const all = [...paths.join("\n").split("\n"), hello, drv];
  return { base, env, store, cache, secretKeyFile, publicKeyFile, hello, drv, paths: all };
}

/** `python3 -m http.server` on a loopback port chosen by the system, serving `dir`. */
export async function pythonHttpServer(
  dir: string,
): Promise<{ port: string; stop(): Promise<void> }> {
  const child = new Deno.Command("python3", {
    args: ["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"],
    cwd: dir,
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  let port = "";
  while (!port) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`http.server ended: ${seen}`);
    seen += value;
    port = /port (\d+)/.exec(seen)?.[1] ?? "";
  }
  // Kept reading (not cancelled): a closed pipe would end the server at its next write.
  const drained = (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })().catch(() => {});
  return {
    port,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* it has ended already */ }
      await child.status;
      await drained;
    },
  };
}
