/**
 * The `nixcas` command line: one program, one file per group of subcommands.
 *
 * @module
 */
import { Command } from "commander";
import { addGlobalOptions } from "./common.ts";
import { register as registerDaemon } from "./daemon.ts";
import { register as registerImport } from "./import.ts";
import { register as registerInspect } from "./inspect.ts";
import { register as registerMount } from "./mount.ts";

/** Version printed by `--version`. */
export const VERSION = "0.1.0";

/** Builds the program with every subcommand registered. */
export function buildProgram(): Command {
  const program = new Command("nixcas")
    .description(
      "A content-addressed store for Nix store paths, wire-compatible with tvix-store. " +
        "By default every command uses the embedded store sqlite://$NIXCAS_DIR/store.db " +
        "(NIXCAS_DIR defaults to $XDG_DATA_HOME/nixcas or ~/.local/share/nixcas).",
    )
    .version(VERSION)
    .showHelpAfterError()
    .enablePositionalOptions();
  addGlobalOptions(program);
  registerImport(program);
  registerInspect(program);
  registerMount(program);
  registerDaemon(program);
  return program;
}

/**
 * Runs the CLI with `args` (default: `Deno.args`): what `deno run -A mod.ts <args>` does.
 * Output goes to stdout and stderr; a failing command exits the process with code 1.
 *
 * @example
 * ```ts
 * import { main } from "../../mod.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/hello.txt`, "Hello, world!\n");
 * const store = `sqlite://${dir}/store.db`;
 * const flags = [
 *   "--blob-service-addr", store,
 *   "--directory-service-addr", store,
 *   "--path-info-service-addr", store,
 * ];
 * await main(["import", "--quiet", ...flags, `${dir}/hello.txt`]);
 * // prints /nix/store/xrabnx1r49hn890prhx86h6iyn19p976-hello.txt
 * await main(["cat", ...flags, "/nix/store/xrabnx1r49hn890prhx86h6iyn19p976-hello.txt"]);
 * // prints Hello, world!
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function main(args: string[] = Deno.args): Promise<void> {
  await buildProgram().parseAsync(args, { from: "user" });
}
