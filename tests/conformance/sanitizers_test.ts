/**
 * The registry's sanitizers are really on: the blob suite on a backend whose cleanup leaks a
 * file or a timer fails, and passes once nothing leaks.
 */
import assert from "node:assert/strict";

async function runLeaky(leak: "file" | "timer" | "none") {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "test",
      "-A",
      "--no-check",
      "--filter",
      "has on an absent blob",
      new URL("./leaky_backend.ts", import.meta.url).pathname,
    ],
    env: { LEAK: leak, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { success: out.success, text };
}

Deno.test("conformance sanitizers catch a file a backend leaves open", async () => {
  const r = await runLeaky("file");
  assert.equal(r.success, false, r.text);
  assert.match(r.text, /Leaks detected:[^]*file/, r.text);
});

Deno.test("conformance sanitizers catch a timer a backend leaves running", async () => {
  const r = await runLeaky("timer");
  assert.equal(r.success, false, r.text);
  assert.match(r.text, /Leaks detected:[^]*timer/, r.text);
});

Deno.test("conformance sanitizers pass a backend that leaks nothing", async () => {
  const r = await runLeaky("none");
  assert.equal(r.success, true, r.text);
  assert.match(r.text, /1 passed/, r.text);
});
