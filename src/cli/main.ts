/**
 * The `nixcas` command line: one program, one file per group of subcommands.
 *
 * @module
 */
import { type ProgramSpec, runProgram } from "./args.ts";
import { GLOBAL_OPTIONS } from "./common.ts";
import { copyCommand, exportCommand, signCommand } from "./copy.ts";
import { daemonCommand } from "./daemon.ts";
import { importCommand } from "./import.ts";
import { inspectCommands } from "./inspect.ts";
import { mountCommand } from "./mount.ts";
import { serveCommand } from "./serve.ts";

/** Version printed by `--version`. */
export const VERSION = "0.1.0";

/** The `nixcas` program: global options and every subcommand, as data for {@linkcode runProgram}. */
export const PROGRAM: ProgramSpec = {
  name: "nixcas",
  version: VERSION,
  description: "A content-addressed store for Nix store paths, wire-compatible with tvix-store. " +
    "By default every command uses the embedded store sqlite://$NIXCAS_DIR/store.db " +
    "(NIXCAS_DIR defaults to $XDG_DATA_HOME/nixcas or ~/.local/share/nixcas).",
  options: GLOBAL_OPTIONS,
  commands: [
    importCommand,
    ...inspectCommands,
    copyCommand,
    exportCommand,
    signCommand,
    mountCommand,
    daemonCommand,
    serveCommand,
  ],
};

/**
 * Runs the CLI with `args` (default: `Deno.args`): what `deno run -A mod.ts <args>` does.
 * Output goes to stdout and stderr; a failing command or a usage error (one line on stderr)
 * exits the process with code 1.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import { main } from "@nixcas/nixcas/cli";
 * import { StorePath } from "@nixcas/nixcas/store";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/hello.txt`, "Hello, world!\n");
 * const store = `sqlite://${dir}/store.db`;
 * const flags = [
 *   "--blob-service-addr", store,
 *   "--directory-service-addr", store,
 *   "--path-info-service-addr", store,
 * ];
 * await main(["import", "--quiet", ...flags, `${dir}/hello.txt`]);
 * // printed /nix/store/xrabnx1r49hn890prhx86h6iyn19p976-hello.txt, and stored it:
 * const path = StorePath.parseAbsolute("/nix/store/xrabnx1r49hn890prhx86h6iyn19p976-hello.txt");
 * const s = await openStore(store, {}, { readOnly: true });
 * assert.equal((await s.pathInfos.get(path.digest))?.narinfo?.narSize, 128n);
 * await s.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function main(args: string[] = Deno.args): Promise<void> {
  const code = await runProgram(PROGRAM, args);
  if (code !== 0) Deno.exit(code);
}
