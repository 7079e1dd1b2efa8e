/**
 * The public API is chosen on purpose (issue 18): deno.json names every entry point, each is a
 * documented module of named exports, and every exported symbol has an example that asserts and
 * imports the package's public specifier, as a user would write it.
 */
import assert from "node:assert/strict";
import { ROOT } from "./prereq.ts";

const config = JSON.parse(Deno.readTextFileSync(`${ROOT}/deno.json`));
const exportsMap: Record<string, string> = typeof config.exports === "string"
  ? { ".": config.exports }
  : config.exports;
const entries = Object.values(exportsMap).map((p) => p.replace(/^\.\//, ""));

/** Public symbols that have no example yet (none now; the check below keeps the list honest). */
const SYMBOLS_NOT_YET = new Set<string>([]);

Deno.test("api: deno.json exports the entry points, each a documented module", () => {
  assert.deepEqual(Object.keys(exportsMap).sort(), [
    ".",
    "./backends",
    "./castore",
    "./cli",
    "./fuse",
    "./grpc",
    "./http",
    "./nar",
    "./server",
    "./store",
  ]);
  for (const file of entries) {
    const text = Deno.readTextFileSync(`${ROOT}/${file}`);
    assert.match(text, /^\/\*\*[\s\S]*?@module[\s\S]*?\*\//, `${file}: no @module doc`);
    const star = text.match(/^export \*(?! as )[^;]*;/m);
    assert.equal(star, null, `${file}: ${star?.[0]} (name what is public)`);
  }
});

Deno.test("api: mod.ts ends with its import.meta.main block", () => {
  const text = Deno.readTextFileSync(`${ROOT}/mod.ts`).trimEnd();
  const at = text.lastIndexOf("if (import.meta.main)");
  assert(at > 0, "no import.meta.main block");
  assert.doesNotMatch(text.slice(at), /^export /m, "exports after the import.meta.main block");
});

function* sourceFiles(dir: string): Generator<string> {
  for (const e of Deno.readDirSync(`${ROOT}/${dir}`)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory && path !== "src/gen") yield* sourceFiles(path);
    else if (e.name.endsWith(".ts")) yield path;
  }
}

/** Every ```ts block of every JSDoc comment in `file`, with its first line number. */
function examplesOf(file: string): { line: number; code: string; ignored: boolean }[] {
  const lines = Deno.readTextFileSync(`${ROOT}/${file}`).split("\n");
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^\s*\* ```(ts|typescript)(.*)$/.exec(lines[i]);
    if (!m) continue;
    let j = i + 1;
    while (j < lines.length && !/^\s*\* ```\s*$/.test(lines[j])) j++;
    const code = lines.slice(i + 1, j).map((l) => l.replace(/^\s*\* ?/, "")).join("\n");
    out.push({ line: i + 1, code, ignored: /\bignore\b/.test(m[2]) });
    i = j;
  }
  return out;
}

Deno.test("api: doc examples run, assert, and import no mod.ts by relative path", () => {
  const problems: string[] = [];
  for (const file of [...sourceFiles("src"), "mod.ts"]) {
    for (const ex of examplesOf(file)) {
      const where = `${file}:${ex.line}`;
      if (ex.ignored) {
        problems.push(`${where}: is not run (ignore); make it runnable, with a temp dir`);
        continue;
      }
      if (!/\bassert\b/.test(ex.code)) problems.push(`${where}: asserts nothing`);
      if (/console\.log\(.*\);?\s*\/\/|\/\/ =>/.test(ex.code)) {
        problems.push(`${where}: shows a result in a comment instead of asserting it`);
      }
      if (/from "(\.\.?\/)+mod\.ts"/.test(ex.code)) {
        problems.push(`${where}: imports mod.ts by relative path (use "@nixcas/nixcas...")`);
      }
    }
  }
  assert.deepEqual(problems, []);
});

/** Whether the JSDoc right above line `line` (0-based) of `file` has an @example. */
function hasExampleAt(file: string, line: number): boolean {
  const lines = Deno.readTextFileSync(new URL(file)).split("\n");
  let i = line - 1;
  while (i >= 0 && lines[i].trim() === "") i--;
  if (i < 0 || !lines[i].trim().endsWith("*/")) return false;
  let j = i;
  while (j >= 0 && !lines[j].includes("/**")) j--;
  return lines.slice(j, i + 1).some((l) => l.includes("@example"));
}

interface DocDecl {
  kind: string;
  jsDoc?: { tags?: { kind: string }[] };
  def?: { target?: { filename: string; line: number } };
}

Deno.test("api: every symbol of every entry point has an example", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--json", ...entries],
    cwd: ROOT,
    stderr: "inherit",
  }).output();
  assert(out.success, "deno doc failed");
  const doc = JSON.parse(new TextDecoder().decode(out.stdout));
  const byFile = Object.fromEntries(
    Object.entries(exportsMap).map(([k, v]) => [new URL(v, `file://${ROOT}/`).href, k]),
  );
  const missing: string[] = [];
  let count = 0;
  for (
    const [url, node] of Object.entries<{ symbols: { name: string; declarations: DocDecl[] }[] }>(
      doc.nodes,
    )
  ) {
    const entry = byFile[url];
    assert(entry, `deno doc answered for ${url}`);
    for (const sym of node.symbols) {
      count++;
      const has = sym.declarations.some((d) =>
        d.kind === "reference" && d.def?.target
          ? hasExampleAt(d.def.target.filename, d.def.target.line)
          : (d.jsDoc?.tags ?? []).some((t) => t.kind === "example")
      );
      const key = `${entry} ${sym.name}`;
      if (!has && !SYMBOLS_NOT_YET.has(key)) missing.push(key);
      if (has && SYMBOLS_NOT_YET.has(key)) missing.push(`${key} has one now: drop it from NOT_YET`);
    }
  }
  assert(count > 100, `only ${count} symbols found`);
  assert.deepEqual(missing, []);
});

Deno.test("api: deno doc --lint finds nothing to fix on the entry points", async () => {
  // Catches, among others, a public type that names a type the package does not export.
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--lint", ...entries],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
  assert(out.success, `deno doc --lint failed:\n${text}`);
});
