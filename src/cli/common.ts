/**
 * What every subcommand shares: the service address flags, opening the services, logging, and
 * turning errors into one-line messages and exit codes.
 *
 * @module
 */
import { type Invocation, type OptionSpec, UsageError } from "./args.ts";
import { openStore, type Store } from "../backends/open.ts";
import type { OpenOptions } from "../backends/sqlite/db.ts";
import { createLogger, type Level, LEVELS, type Logger } from "./log.ts";

/** The three address flags as parsed (see {@linkcode SERVICE_ADDR_OPTIONS}). */
export interface ServiceAddrOptions {
  /** `--blob-service-addr` / `BLOB_SERVICE_ADDR`. */
  blobServiceAddr?: string;
  /** `--directory-service-addr` / `DIRECTORY_SERVICE_ADDR`. */
  directoryServiceAddr?: string;
  /** `--path-info-service-addr` / `PATH_INFO_SERVICE_ADDR`. */
  pathInfoServiceAddr?: string;
}

/** The three services a command works on. */
export type Services = Store;

const DEFAULT_HELP = "the embedded store, sqlite://$NIXCAS_DIR/store.db";

/** `--blob-service-addr`, `--directory-service-addr`, `--path-info-service-addr` (with env vars). */
export const SERVICE_ADDR_OPTIONS: readonly OptionSpec[] = [
  {
    flags: "--blob-service-addr <url>",
    description: `blob service address (default: ${DEFAULT_HELP})`,
    env: "BLOB_SERVICE_ADDR",
  },
  {
    flags: "--directory-service-addr <url>",
    description: `directory service address (default: ${DEFAULT_HELP})`,
    env: "DIRECTORY_SERVICE_ADDR",
  },
  {
    flags: "--path-info-service-addr <url>",
    description: `path info service address (default: ${DEFAULT_HELP})`,
    env: "PATH_INFO_SERVICE_ADDR",
  },
];

/**
 * Opens the three services named by the flags, defaulting to the embedded store. Commands that
 * only read pass `{ readOnly: true }`: they must not create a store, and must work on one they
 * cannot write.
 */
export function openServices(
  opts: ServiceAddrOptions,
  options: OpenOptions = {},
): Promise<Services> {
  return openStore(undefined, {
    blob: opts.blobServiceAddr,
    directory: opts.directoryServiceAddr,
    pathInfo: opts.pathInfoServiceAddr,
  }, options);
}

/** Global options (on the program). */
export interface GlobalOptions {
  /** `--log-level`. */
  logLevel: Level;
  /** `--json`: JSON logs on stderr. */
  json?: boolean;
}

/** The logger for a command, from the program's global options. */
export function loggerFor(inv: Pick<Invocation, "globals">): Logger {
  const g = inv.globals as Partial<GlobalOptions>;
  return createLogger(g.logLevel ?? "info", g.json ?? false);
}

/** `--log-level` (env `NIXCAS_LOG`) and `--json`: the program's global options. */
export const GLOBAL_OPTIONS: readonly OptionSpec[] = [
  {
    flags: "--log-level <level>",
    description: "how much to log on stderr",
    choices: LEVELS,
    default: "info",
    env: "NIXCAS_LOG",
  },
  { flags: "--json", description: "log JSON objects on stderr instead of text lines" },
];

/** Parses a whole number of at least `min`, for option values such as `--concurrency <n>`. */
export function parseIntAtLeast(min: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min) {
      throw new Error(`not a whole number${min === 0 ? "" : ` of at least ${min}`}`);
    }
    return n;
  };
}

/** An error that carries its own exit code and has already said everything needed. */
export class CliError extends Error {
  /** Exit code for the process. */
  readonly exitCode: number;
  /** Creates the error. */
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = "CliError";
    this.exitCode = exitCode;
  }
}

/**
 * Wraps a subcommand action: runs it, and turns a failure into one line on stderr (a stack
 * trace only with `--log-level debug`) and exit code 1 (or the {@linkcode CliError}'s).
 */
export function action<O extends object>(
  fn: (inv: Invocation<O>) => Promise<void>,
): (inv: Invocation<O>) => Promise<void> {
  return async (inv) => {
    try {
      await fn(inv);
    } catch (e) {
      if (e instanceof UsageError) throw e; // runProgram prints it with the usage hint
      const log = loggerFor(inv);
      if (log.enabled("debug") && e instanceof Error) log.error(e.stack ?? e.message);
      else log.error(e instanceof Error ? e.message : String(e));
      Deno.exit(e instanceof CliError ? e.exitCode : 1);
    }
  };
}
