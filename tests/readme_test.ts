/** The README's library example runs as written (with `./mod.ts` pointing at this checkout). */
import assert from "node:assert/strict";
import { ROOT, run } from "./prereq.ts";

Deno.test("README library example runs", async () => {
  const readme = await Deno.readTextFile(`${ROOT}/README.md`);
  const section = readme.slice(readme.indexOf("## Library"));
  const code = section.slice(
    section.indexOf("```ts\n") + 6,
    section.indexOf("\n```", section.indexOf("```ts\n")),
  );
  assert.ok(code.includes("openStore"), "found the example");
  const tmp = await Deno.makeTempDir({ prefix: "nixcas-readme-" });
  try {
    await Deno.writeTextFile(
      `${tmp}/example.ts`,
      code.replaceAll('"./mod.ts"', JSON.stringify(`${ROOT}/mod.ts`)),
    );
    const r = await run(Deno.execPath(), [
      "run",
      "-A",
      "--quiet",
      "--config",
      `${ROOT}/deno.json`,
      `${tmp}/example.ts`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      new TextDecoder().decode(r.stdout),
      /^\/nix\/store\/[0-9a-z]{32}-hello\nHello, Nix!\n\n$/,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
