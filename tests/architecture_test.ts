/**
 * The shape of the code (docs/architecture.md): every module under `src/` sits on a floor and
 * imports only from its own floor or those below. This test reads every import and export
 * specifier, so that an import running up a floor fails here rather than in a review.
 */
import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";
import { ROOT } from "./prereq.ts";

/**
 * Floors from the bottom up: a prefix of a path under the repository root, and the floor it is
 * on. The longest matching prefix wins.
 */
const FLOORS: [prefix: string, floor: number, name: string][] = [
  ["src/base/", 0, "foundation: base"],
  ["src/gen/", 1, "foundation: generated protobuf"],
  ["src/sys/", 1, "foundation: sys"],
  ["src/http2/", 1, "foundation: http2"],
  ["src/hash/", 2, "foundation: hash"],
  ["src/compress/", 2, "foundation: compression"],
  ["src/castore/", 3, "castore"],
  ["src/nar/", 4, "nar"],
  ["src/store/", 5, "store"],
  ["src/backends/", 6, "backends"],
  ["src/server/", 7, "frontend: server"],
  ["src/fuse/", 7, "frontend: fuse"],
  ["src/http/", 7, "frontend: http"],
  ["src/cli/", 8, "frontend: cli"],
  ["mod.ts", 9, "public entry point"],
];

/** Folders on one floor that must not import each other. */
const SIBLINGS = [
  ["src/server/", "src/fuse/", "src/http/"],
  ["src/backends/memory/", "src/backends/sqlite/", "src/backends/grpc/", "src/backends/nix/"],
];

function floorOf(path: string): [number, string] | undefined {
  let best: [string, number, string] | undefined;
  for (const f of FLOORS) {
    if (path.startsWith(f[0]) && (!best || f[0].length > best[0].length)) best = f;
  }
  return best && [best[1], best[2]];
}

function* sourceFiles(dir: string): Generator<string> {
  for (const e of Deno.readDirSync(`${ROOT}/${dir}`)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) yield* sourceFiles(path);
    else if (e.name.endsWith(".ts")) yield path;
  }
}

/** Relative specifiers of static imports, re-exports and dynamic imports (not doc examples). */
function importsOf(file: string): string[] {
  const text = Deno.readTextFileSync(`${ROOT}/${file}`)
    .replace(/\/\*[\s\S]*?\*\//g, "") // block comments hold the doc examples
    .replace(/^\s*\/\/.*$/gm, "");
  const specs: string[] = [];
  // `from` after white space or `}`: a string "from" (a header name, say) is not an import.
  const re = /(?:(?<=[\s}])from\s*|\bimport\s*\(\s*|^\s*import\s+)(["'])([^"']+)\1/gm;
  for (const m of text.matchAll(re)) specs.push(m[2]);
  return specs;
}

function resolved(file: string, spec: string): string | undefined {
  if (!spec.startsWith(".")) return undefined;
  return relative(ROOT, normalize(join(ROOT, dirname(file), spec)));
}

const files = [...sourceFiles("src"), "mod.ts"];

Deno.test("architecture: every module under src/ is on a floor", () => {
  const homeless = files.filter((f) => !floorOf(f));
  assert.deepEqual(homeless, [], "add these files' folders to FLOORS (and docs/architecture.md)");
});

Deno.test("architecture: no import runs up a floor", () => {
  const up: string[] = [];
  for (const file of files) {
    const [from, fromName] = floorOf(file) ?? [Infinity, "?"];
    for (const spec of importsOf(file)) {
      const target = resolved(file, spec);
      if (!target) continue;
      const [to, toName] = floorOf(target) ?? [Infinity, "?"];
      if (to > from) {
        up.push(`${file} (${fromName}) imports ${target} (${toName})`);
      }
    }
  }
  assert.deepEqual(up, []);
});

Deno.test("architecture: sibling folders on one floor do not import each other", () => {
  const across: string[] = [];
  for (const group of SIBLINGS) {
    for (const file of files) {
      const own = group.find((g) => file.startsWith(g));
      if (!own) continue;
      for (const spec of importsOf(file)) {
        const target = resolved(file, spec);
        const other = target && group.find((g) => g !== own && target.startsWith(g));
        if (other) across.push(`${file} imports ${target}`);
      }
    }
  }
  assert.deepEqual(across, []);
});

Deno.test("architecture: castore knows no Nix concept", () => {
  const nixWords = /\b(nar|narinfo|store ?path|nixbase32|PathInfo)\b/i;
  const offenders: string[] = [];
  for (const file of files.filter((f) => f.startsWith("src/castore/"))) {
    for (const spec of importsOf(file)) {
      if (nixWords.test(spec)) offenders.push(`${file} imports ${spec}`);
    }
  }
  assert.deepEqual(offenders, []);
});

Deno.test("architecture: only sys/ binds native libraries", () => {
  // One FFI layer: every libc and libcrypto symbol is bound in src/sys/.
  const binders = files.filter((f) =>
    !f.startsWith("src/sys/") && /\bDeno\.dlopen\(/.test(Deno.readTextFileSync(`${ROOT}/${f}`))
  );
  assert.deepEqual(binders, []);
});

Deno.test("architecture: runtime code names npm packages with full npm: specifiers", () => {
  // Bare specifiers resolve only through this package's deno.json: from a URL or from another
  // project they fail.
  const bare: string[] = [];
  for (const file of files) {
    for (const spec of importsOf(file)) {
      if (!/^(\.|npm:|node:|jsr:|https?:)/.test(spec)) bare.push(`${file}: ${spec}`);
    }
  }
  assert.deepEqual(bare, []);
});

Deno.test("architecture: the floor checker catches an import that runs up", () => {
  // The checker itself must be able to fail: a castore file importing store/ is on a higher floor.
  const [castore] = floorOf("src/castore/x.ts")!;
  const [store] = floorOf("src/store/y.ts")!;
  assert(store > castore);
  assert.equal(resolved("src/castore/x.ts", "../store/y.ts"), "src/store/y.ts");
  assert.deepEqual(importsOf("tests/architecture_test.ts").includes("./prereq.ts"), true);
});
