/**
 * `nixcas import PATH...`: imports paths into the store and prints their store paths.
 *
 * @module
 */
import type { CommandSpec } from "./args.ts";
import { importStorePath } from "../store/import.ts";
import { preloadLibcrypto } from "../hash/sha256.ts";
import {
  action,
  CliError,
  loggerFor,
  openServices,
  parseIntAtLeast,
  SERVICE_ADDR_OPTIONS,
  type ServiceAddrOptions,
} from "./common.ts";
import { printLine } from "./io.ts";
import { Progress } from "./progress.ts";

/** Options of `import`. */
export interface ImportOptions extends ServiceAddrOptions {
  /** `-q, --quiet`: no progress display. */
  quiet?: boolean;
  /** `--concurrency <n>`: files uploaded at once. */
  concurrency: number;
}

/** `import`. */
export const importCommand: CommandSpec<ImportOptions> = {
  name: "import",
  description:
    "Import files or directories into the store and print one store path per line, in argument " +
    "order: the path `nix-store --add` would print. Symlinks are stored, never followed.",
  arguments: [["<path...>", "files, directories or symlinks to import"]],
  options: [
    { flags: "-q, --quiet", description: "no progress display on stderr" },
    {
      flags: "--concurrency <n>",
      description: "files uploaded at once",
      parse: parseIntAtLeast(1),
      default: 8,
    },
    ...SERVICE_ADDR_OPTIONS,
  ],
  run: action(async (inv) => {
    const paths = inv.args.path as string[];
    const opts = inv.options;
    const log = loggerFor(inv);
    preloadLibcrypto(); // on another thread, while the store opens
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
  }),
};
