/**
 * `nixcas import PATH...`: imports paths into the store and prints their store paths.
 *
 * @module
 */
import type { Command } from "commander";
import { importStorePath } from "../store/import.ts";
import {
  action,
  addServiceAddrOptions,
  CliError,
  loggerFor,
  openServices,
  type ServiceAddrOptions,
} from "./common.ts";
import { printLine } from "./io.ts";
import { Progress } from "./progress.ts";

/** Registers `import`. */
export function register(program: Command): void {
  addServiceAddrOptions(
    program.command("import")
      .description(
        "Import files or directories into the store and print one store path per line, in argument " +
          "order: the path `nix-store --add` would print. Symlinks are stored, never followed.",
      )
      .argument("<path...>", "files, directories or symlinks to import")
      .option("-q, --quiet", "no progress display on stderr")
      .option("--concurrency <n>", "files uploaded at once", (v) => parseInt(v, 10), 8),
  ).action(action(async function (this: Command, paths: string[]) {
    const opts = this.opts<ServiceAddrOptions & { quiet?: boolean; concurrency: number }>();
    const log = loggerFor(this);
    const services = await openServices(opts);
    const progress = new Progress(!opts.quiet && Deno.stderr.isTerminal());
    let failed = 0;
    try {
      // All paths import at once; results print in argument order as each one's turn comes.
      const results = paths.map((p) =>
        importStorePath(p, services, {
          concurrency: opts.concurrency,
          onProgress: progress.track(p),
        })
      );
      for (let i = 0; i < paths.length; i++) {
        try {
          const { storePath } = await results[i];
          progress.clear();
          await printLine(storePath.absolute);
        } catch (e) {
          failed++;
          progress.clear();
          if (log.enabled("debug")) log.error((e as Error).stack ?? String(e));
          else log.error(`importing ${paths[i]}: ${(e as Error).message}`);
        }
      }
    } finally {
      progress.stop();
      await services.close();
    }
    if (failed) throw new CliError(`${failed} of ${paths.length} paths failed to import`);
  }));
}
