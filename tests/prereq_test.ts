/**
 * The slow group: `deno task test` (what CI runs) runs slow tests, `deno task test:quick` skips
 * them, and `slow()` refuses to skip where every test must run.
 */
import assert from "node:assert/strict";
import { ROOT } from "./prereq.ts";

async function slowUnder(env: Record<string, string>): Promise<string> {
  const code = `import { slow } from ${JSON.stringify(`${ROOT}/tests/prereq.ts`)};
try { console.log(slow()); } catch (e) { console.log("throws: " + (e as Error).message); }`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", code],
    env: { NIXCAS_SKIP_SLOW: "", NIXCAS_REQUIRE_ALL: "", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout).trim();
}

Deno.test("slow() skips only under NIXCAS_SKIP_SLOW=1, and never under NIXCAS_REQUIRE_ALL=1", async () => {
  assert.equal(await slowUnder({}), "false");
  assert.equal(await slowUnder({ NIXCAS_SKIP_SLOW: "1" }), "true");
  assert.match(
    await slowUnder({ NIXCAS_SKIP_SLOW: "1", NIXCAS_REQUIRE_ALL: "1" }),
    /^throws: .*every test must run/,
  );
});

Deno.test("deno task test runs slow tests, test:quick skips them, CI runs deno task test", async () => {
  const tasks = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`)).tasks;
  assert.doesNotMatch(tasks.test, /NIXCAS_SKIP_SLOW/);
  assert.equal(tasks["test:quick"], `NIXCAS_SKIP_SLOW=1 ${tasks.test}`);
  assert.match(await Deno.readTextFile(`${ROOT}/.ci/run`), /^"\$\{DENO\[@\]\}" task test /m);
});
