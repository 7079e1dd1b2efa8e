/**
 * What every command loads before it runs: the static import graph of `mod.ts` (the CLI's entry,
 * from the checkout and in the build). The gRPC client and server, HTTP/2, FUSE, the binary
 * cache, NAR ingest, closure copying and `node:crypto` load only in the commands that use them:
 * each cost every command start-up time when it was imported statically (`node:crypto` alone
 * ≈30 ms, connect and protobuf-es ≈20 ms).
 */
import assert from "node:assert/strict";
import { ROOT } from "../prereq.ts";

interface InfoModule {
  specifier: string;
  dependencies?: { code?: { specifier?: string }; isDynamic?: boolean }[];
}

/** Every module `entry` imports statically, directly or not. */
async function staticGraph(entry: string): Promise<Set<string>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    roots: string[];
    modules: InfoModule[];
  };
  const deps = new Map<string, string[]>();
  for (const m of info.modules) {
    deps.set(
      m.specifier,
      (m.dependencies ?? []).filter((d) => !d.isDynamic && d.code?.specifier).map((d) =>
        d.code!.specifier!
      ),
    );
  }
  const seen = new Set<string>(info.roots);
  const todo = [...info.roots];
  while (todo.length) {
    for (const d of deps.get(todo.pop()!) ?? []) {
      if (!seen.has(d)) {
        seen.add(d);
        todo.push(d);
      }
    }
  }
  return new Set([...seen].map((s) => s.replace(`file://${ROOT}/`, "")));
}

const LAZY = [
  /^npm:/,
  /^node:crypto$/,
  /^node:http2$/,
  /^src\/backends\/grpc\/(?!address\.ts$|auth_tokens\.ts$)/,
  /^src\/backends\/nix\//,
  /^src\/server\//,
  /^src\/http2?\//,
  /^src\/fuse\//,
  /^src\/gen\//,
  /^src\/nar\/ingest\.ts$/,
  /^src\/store\/(copy|import_export|signature|narinfo)\.ts$/,
];

Deno.test("cli start-up: mod.ts loads no module only some commands need", async () => {
  const graph = await staticGraph("mod.ts");
  assert.ok(graph.has("src/cli/main.ts"), "the graph is read");
  assert.ok(graph.has("node:sqlite"), "dependencies through node: are listed");
  const eager = [...graph].filter((m) => LAZY.some((re) => re.test(m)));
  assert.deepEqual(eager, [], `loaded at start-up by every command: ${eager.join(", ")}`);
});
