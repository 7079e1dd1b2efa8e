/**
 * nixcas used from outside this checkout, against a real `nixcas daemon`: imported as a library
 * by a program with no config of its own (type check and a gRPC store), and run from a URL. Each
 * starts from an empty DENO_DIR holding only the npm packages a run needs; a run from the checkout
 * finds nothing else in it either (`--cached-only`), so a dev tool in the lockfile would show.
 */
import assert from "node:assert/strict";
// The runtime packages, so this process has them in its cache to copy from.
import "npm:@connectrpc/connect-node@2.2.0";
import { nixcas, ROOT, serviceFlags, startNixcas } from "../prereq.ts";

const td = new TextDecoder();

/**
 * The npm packages a gRPC command or library user may download. hash-wasm is the BLAKE3
 * reference of tests and bench: pinned in the same lockfile, a run from the checkout installs it.
 */
const RUNTIME_PACKAGES = [
  "@bufbuild/protobuf",
  "@connectrpc/connect",
  "@connectrpc/connect-node",
  "hash-wasm",
];

/** A fresh DENO_DIR holding copies of only RUNTIME_PACKAGES from this process's own cache. */
async function runtimeDenoDir(into: string): Promise<string> {
  const info = JSON.parse(
    td.decode(
      (await new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).output())
        .stdout,
    ),
  );
  const from = `${info.npmCache}/registry.npmjs.org`;
  const dir = `${into}/deno_dir`;
  for (const pkg of RUNTIME_PACKAGES) {
    const dest = `${dir}/npm/registry.npmjs.org/${pkg}`;
    await Deno.mkdir(dest, { recursive: true });
    const cp = await new Deno.Command("cp", { args: ["-a", `${from}/${pkg}/.`, dest] }).output();
    assert.ok(cp.success, `copy ${pkg}: ${td.decode(cp.stderr)}`);
  }
  return dir;
}

/** A daemon over a fresh SQLite store holding two imported files; returns their store paths. */
async function daemonWithTwoPaths(tmp: string) {
  const sock = `${tmp}/daemon.sock`;
  const daemon = await startNixcas(
    ["daemon", "--listen-address", `unix:${sock}`],
    "listening",
    { NIXCAS_DIR: `${tmp}/store` },
  );
  const url = `grpc+unix://${sock}`;
  await Deno.writeTextFile(`${tmp}/a.txt`, "first file\n");
  await Deno.writeTextFile(`${tmp}/b.txt`, "second file\n");
  const imported = await nixcas([
    "import",
    "--quiet",
    ...serviceFlags(url),
    `${tmp}/a.txt`,
    `${tmp}/b.txt`,
  ]);
  assert.equal(imported.code, 0, imported.stderr);
  const paths = td.decode(imported.stdout).trim().split("\n");
  return {
    url,
    paths,
    async stop() {
      daemon.child.kill("SIGTERM");
      await daemon.child.status;
      await daemon.drained;
    },
  };
}

function deno(args: string[], opts: { cwd?: string; denoDir: string }) {
  return new Deno.Command(Deno.execPath(), {
    args,
    cwd: opts.cwd,
    env: { DENO_DIR: opts.denoDir, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
}

Deno.test("a first run of `list` through a daemon needs only the runtime npm packages", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "nixcas-first-run-" });
  const d = await daemonWithTwoPaths(tmp);
  try {
    const denoDir = await runtimeDenoDir(tmp);
    const out = await deno(
      ["run", "--cached-only", "-A", "--quiet", `${ROOT}/mod.ts`, "list", ...serviceFlags(d.url)],
      { cwd: ROOT, denoDir },
    );
    assert.equal(out.code, 0, td.decode(out.stderr));
    assert.deepEqual(td.decode(out.stdout).trim().split("\n").sort(), [...d.paths].sort());
  } finally {
    await d.stop();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("a program outside the checkout (no config) imports mod.ts: type check, list, read", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "nixcas-library-" });
  const d = await daemonWithTwoPaths(tmp);
  try {
    const denoDir = await runtimeDenoDir(tmp);
    const prog = `${tmp}/prog/main.ts`;
    await Deno.mkdir(`${tmp}/prog`);
    await Deno.writeTextFile(
      prog,
      `import { openStore, readBlob, B3Digest } from "file://${ROOT}/mod.ts";
const store = await openStore(Deno.args[0]);
try {
  const names: string[] = [];
  const texts: string[] = [];
  for await (const info of store.pathInfos.list()) {
    const node = info.node!.node;
    names.push(new TextDecoder().decode(node.value!.name));
    if (node.case !== "file") throw new Error("expected a file");
    const data = await readBlob(store.blobs, B3Digest.fromBytes(node.value.digest));
    texts.push(new TextDecoder().decode(data));
  }
  console.log(JSON.stringify({ names: names.sort(), texts: texts.sort() }));
} finally {
  await store.close();
}
`,
    );
    const check = await deno(["check", "--no-config", prog], { cwd: `${tmp}/prog`, denoDir });
    assert.equal(check.code, 0, td.decode(check.stderr));
    const run = await deno(["run", "--no-config", "-A", prog, d.url], {
      cwd: `${tmp}/prog`,
      denoDir,
    });
    assert.equal(run.code, 0, td.decode(run.stderr));
    assert.deepEqual(JSON.parse(td.decode(run.stdout)), {
      names: d.paths.map((p) => p.slice("/nix/store/".length)).sort(),
      texts: ["first file\n", "second file\n"],
    });
  } finally {
    await d.stop();
    await Deno.remove(tmp, { recursive: true });
  }
});

/** Serves the checkout on loopback, `.ts` as application/typescript (python's server does not). */
function serveCheckout() {
  const requested: string[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (req) => {
      const path = decodeURIComponent(new URL(req.url).pathname);
      requested.push(path);
      if (path.includes("..")) return new Response("bad path", { status: 400 });
      try {
        const body = await Deno.readFile(`${ROOT}${path}`);
        const type = path.endsWith(".ts") ? "application/typescript" : "application/octet-stream";
        return new Response(body, { headers: { "content-type": type } });
      } catch {
        return new Response("not found", { status: 404 });
      }
    },
  );
  return { server, port: server.addr.port, requested };
}

Deno.test("`deno run -A http://127.0.0.1:PORT/mod.ts list` through a daemon", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "nixcas-url-" });
  const d = await daemonWithTwoPaths(tmp);
  const files = serveCheckout();
  try {
    const denoDir = await runtimeDenoDir(tmp);
    const out = await deno(
      [
        "run",
        "-A",
        "--quiet",
        `http://127.0.0.1:${files.port}/mod.ts`,
        "list",
        ...serviceFlags(d.url),
      ],
      { cwd: tmp, denoDir },
    );
    assert.equal(out.code, 0, td.decode(out.stderr));
    assert.deepEqual(td.decode(out.stdout).trim().split("\n").sort(), [...d.paths].sort());
    assert.ok(
      files.requested.includes("/src/backends/grpc/transport.ts"),
      "the gRPC client came from the URL",
    );
  } finally {
    await files.server.shutdown();
    await d.stop();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("src/ imports npm packages by full specifiers, at the versions deno.json and deno.lock pin", async () => {
  const imports: Record<string, string> = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`))
    .imports;
  const lock = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.lock`));
  const files = [`${ROOT}/mod.ts`];
  const walkDir = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      if (e.isDirectory) await walkDir(`${dir}/${e.name}`);
      else if (e.name.endsWith(".ts")) files.push(`${dir}/${e.name}`);
    }
  };
  await walkDir(`${ROOT}/src`);
  const seen = new Set<string>();
  for (const file of files) {
    // Doc examples (in comments) import the package's own public specifiers.
    const text = (await Deno.readTextFile(file)).replace(/\/\*[\s\S]*?\*\//g, "");
    const specs = [
      ...text.matchAll(/\bfrom\s+"([^"]+)"/g),
      ...text.matchAll(/\bimport\s*\(\s*"([^"]+)"\s*\)/g),
      ...text.matchAll(/^\s*import\s+"([^"]+)"/gm),
    ].map((m) => m[1]);
    for (const spec of specs) {
      if (/^(\.|node:|file:)/.test(spec)) continue;
      const m = /^npm:((?:@[^/@]+\/)?[^/@]+)@([^/]+)(\/.*)?$/.exec(spec);
      assert.ok(m, `${file}: import "${spec}" is not a full npm: specifier`);
      const [, name, version] = m;
      assert.equal(imports[name], `npm:${name}@${version}`, `${file}: ${spec} vs deno.json`);
      seen.add(`npm:${name}@${version}`);
    }
  }
  for (const spec of seen) assert.ok(spec in lock.specifiers, `${spec} is not in deno.lock`);
  // What a run needs, and nothing the generator or type checker brings.
  assert.deepEqual(
    Object.keys(lock.npm).map((k) => /^@?[^@]+/.exec(k)![0]).sort(),
    [...RUNTIME_PACKAGES].sort(),
  );
});
