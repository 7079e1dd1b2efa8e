/**
 * `nixcas import PATH...`: imports paths into the store and prints their store paths;
 * `nixcas import --export FILE|-` reads a `nix-store --export` stream instead.
 *
 * @module
 */
import { type CommandSpec, UsageError } from "./args.ts";
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
  /** `--concurrency <n>`: files uploaded at once (and the small-file memory bound). */
  concurrency: number;
  /** `--export <file>`: a `nix-store --export` stream to read (`-`: stdin), instead of paths. */
  export?: string;
}

/** Paths imported at once; their results still print in argument order. */
const PATHS_AT_ONCE = 4;

type Outcome = { ok: true; storePath: string } | { ok: false; error: unknown };

/** An error's message on one line. */
function oneLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).replace(/\s*\n\s*/g, " ");
}

/** `import`. */
export const importCommand: CommandSpec<ImportOptions> = {
  name: "import",
  description:
    "Import files or directories into the store and print one store path per line, in argument " +
    "order: the path `nix-store --add` would print. Symlinks are stored, never followed. A path " +
    "that fails is reported on stderr (one line naming it) and the others still import; the " +
    "exit code is 1 if any failed. Each file is read once; up to 4 paths import at once. " +
    "With --export, reads what `nix-store --export` writes instead (no PATH arguments) and " +
    "prints each store path it registers; its references must come earlier in the stream or " +
    "be in the store. The first fault stops it (exit code 1): the paths printed before it are " +
    "registered, nothing of the faulty one is.",
  arguments: [["[path...]", "files, directories or symlinks to import"]],
  options: [
    {
      flags: "--export <file>",
      description: "read a `nix-store --export` stream from <file> (`-`: stdin), e.g. " +
        "`nix-store --export $(nix-store -qR P) | nixcas import --export -`",
    },
    {
      flags: "-q, --quiet",
      description: "no progress display on stderr (shown only when stderr is a terminal: " +
        "files, bytes and the current rate, with totals once the walk has finished)",
    },
    {
      flags: "--concurrency <n>",
      description: "files uploaded at once per path. Memory follows it, not the tree's " +
        "size: per path, up to 3 MiB for each big file being uploaded and n x 2 MiB (n x 256 " +
        "files) of small files read but not yet stored",
      parse: parseIntAtLeast(1),
      default: 8,
    },
    ...SERVICE_ADDR_OPTIONS,
  ],
  run: action(async (inv) => {
    const paths = (inv.args.path ?? []) as string[];
    const opts = inv.options;
    if (opts.export !== undefined) {
      if (paths.length) throw new UsageError("--export takes no PATH arguments", "import");
      return await importExport(opts);
    }
    if (!paths.length) throw new UsageError("missing required argument 'path'", "import");
    const log = loggerFor(inv);
    preloadLibcrypto(); // on another thread, while the store opens
    const services = await openServices(opts);
    const progress = new Progress(!opts.quiet && Deno.stderr.isTerminal());
    let failed = 0;
    try {
      // A few paths import at once (each one already reads `concurrency` files at once, so
      // memory is bounded by a few imports, not by the number of arguments). Each outcome is
      // settled as soon as it is known, so no failure is left unobserved while an earlier
      // path is still importing, and results print in argument order.
      const outcomes: Promise<Outcome>[] = [];
      const start = (i: number) => {
        if (i >= paths.length) return;
        outcomes[i] = importStorePath(paths[i], services, {
          concurrency: opts.concurrency,
          onProgress: progress.track(String(i)),
        }).then(
          ({ storePath }) => ({ ok: true, storePath: storePath.absolute }),
          (error) => ({ ok: false, error }),
        );
      };
      for (let i = 0; i < PATHS_AT_ONCE; i++) start(i);
      for (let i = 0; i < paths.length; i++) {
        const outcome = await outcomes[i];
        start(i + PATHS_AT_ONCE);
        progress.clear();
        if (outcome.ok) await printLine(outcome.storePath);
        else {
          failed++;
          const e = outcome.error;
          if (log.enabled("debug") && e instanceof Error) log.error(e.stack ?? e.message);
          else log.error(`importing ${paths[i]}: ${oneLine(e)}`);
        }
      }
    } finally {
      progress.stop();
      await services.close();
    }
    if (failed) throw new CliError(`${failed} of ${paths.length} paths failed to import`);
  }),
};

/** `import --export FILE|-`: one stream, read in order; each path printed once registered. */
async function importExport(opts: ImportOptions): Promise<void> {
  const file = opts.export!;
  let input: Deno.FsFile | null = null;
  if (file !== "-") {
    try {
      input = await Deno.open(file);
    } catch (e) {
      throw new CliError(`cannot open ${file}: ${oneLine(e)}`);
    }
  }
  try {
    const services = await openServices(opts);
    try {
      const { readExport } = await import("../store/import_export.ts");
      await readExport(input ?? Deno.stdin, services, {
        onPath: (p) => printLine(p.absolute),
      });
    } finally {
      await services.close();
    }
  } finally {
    input?.close();
  }
}
