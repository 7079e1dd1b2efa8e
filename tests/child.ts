/**
 * Runs a test's measured work in a child process of its own: `deno test --parallel` runs every
 * test file in one process, so a test reading its own RSS would see the other files' memory too.
 *
 * @module
 */

/**
 * Runs `deno run -A SCRIPT ARGS` (stderr shown) and returns what it printed, parsed as JSON;
 * throws when it exits with a failure.
 */
export async function runJsonChild<T>(script: URL, args: string[]): Promise<T> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script.pathname, ...args],
    stdin: "null",
    stderr: "inherit",
  }).output();
  const name = script.pathname.split("/").at(-1);
  if (!out.success) throw new Error(`${name} ${args.join(" ")}: exit code ${out.code}`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}
