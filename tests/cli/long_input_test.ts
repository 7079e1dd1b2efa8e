/**
 * An error quoting what the user typed stays short when that was huge: a 100 KB argument is
 * quoted by its first few hundred characters and its length, wherever it is rejected (the parser, store
 * paths, service and listen addresses, mountpoints, import paths).
 */
import assert from "node:assert/strict";
import { clip } from "../../src/base/errors.ts";
import { nixcas } from "../prereq.ts";

const L = "a".repeat(100_000);

Deno.test("clip: short text as is, long text cut with its length", () => {
  assert.equal(clip("short"), "short");
  assert.equal(clip("x".repeat(200)), "x".repeat(200));
  assert.equal(clip("x".repeat(201)), `${"x".repeat(200)}… [200 of 201 characters]`);
  assert.equal(clip("abcdef", 3), "abc… [3 of 6 characters]");
  // Never half a surrogate pair.
  assert.equal(clip("ab😀cd", 3), "ab… [2 of 6 characters]");
});

Deno.test("a 100 KB argument is quoted short in every error", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "nixcas-long-" });
  const env = { NIXCAS_DIR: `${tmp}/store` };
  const cases: [string[], Record<string, string>?][] = [
    [[`x${L}`]], // unknown command
    [["help", `x${L}`]],
    [["import", `--${L}`, "x"]], // unknown option
    [["import", "--concurrency", L, "x"]], // bad option value
    [["--log-level", L, "list"]],
    [["list"], { NIXCAS_LOG: L }], // bad value from an env var
    [["cat", "a", `b${L}`]], // too many arguments
    [["cat", L]], // store paths
    [["nar", `/nix/store/${L}`]],
    [["ls", `/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-${L}`]],
    [["list", "--path-info-service-addr", `memory://${L}`]], // service addresses
    [["list", "--path-info-service-addr", `sqlite://${L}`]],
    [["list", "--path-info-service-addr", `grpc+http://h/${L}`]],
    [["daemon", "-l", L]], // listen addresses
    [["daemon", "-l", `unix:${L}`]],
    [["mount", `${tmp}/${L}`]], // mountpoints
    [["mount", L]],
    [["import", `${tmp}/${L}`]], // paths to import
  ];
  try {
    const bad: string[] = [];
    // A few at a time: each is a Deno process.
    for (let i = 0; i < cases.length; i += 4) {
      const batch = cases.slice(i, i + 4);
      const runs = await Promise.all(
        batch.map(([argv, extra]) => nixcas(argv, { env: { ...env, ...extra } })),
      );
      runs.forEach((r, k) => {
        const what = batch[k][0].map((a) => a.slice(0, 30)).join(" ");
        if (
          r.code === 0 || r.stderr.length >= 1000 ||
          !/a{20}… \[\d{3} of 100\d{3} characters\]/.test(r.stderr)
        ) {
          bad.push(
            `${what}: exit ${r.code}, ${r.stderr.length} characters: ${r.stderr.slice(0, 200)}`,
          );
        }
      });
    }
    assert.deepEqual(bad, []);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
