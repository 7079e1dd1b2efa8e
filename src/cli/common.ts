/**
 * What every subcommand shares: the service address flags, opening the services, logging, and
 * turning errors into one-line messages and exit codes.
 *
 * @module
 */
import { type Command, Option } from "commander";
import { openStore, type Store } from "../addr.ts";
import { createLogger, type Level, LEVELS, type Logger } from "./log.ts";

/** The three address flags as commander parses them. */
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

/** Adds `--blob-service-addr`, `--directory-service-addr`, `--path-info-service-addr` (with env vars). */
export function addServiceAddrOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option("--blob-service-addr <url>", `blob service address (default: ${DEFAULT_HELP})`)
        .env("BLOB_SERVICE_ADDR"),
    )
    .addOption(
      new Option(
        "--directory-service-addr <url>",
        `directory service address (default: ${DEFAULT_HELP})`,
      )
        .env("DIRECTORY_SERVICE_ADDR"),
    )
    .addOption(
      new Option(
        "--path-info-service-addr <url>",
        `path info service address (default: ${DEFAULT_HELP})`,
      )
        .env("PATH_INFO_SERVICE_ADDR"),
    );
}

/** Opens the three services named by the flags, defaulting to the embedded store. */
export function openServices(opts: ServiceAddrOptions): Promise<Services> {
  return openStore(undefined, {
    blob: opts.blobServiceAddr,
    directory: opts.directoryServiceAddr,
    pathInfo: opts.pathInfoServiceAddr,
  });
}

/** Global options (on the program). */
export interface GlobalOptions {
  /** `--log-level`. */
  logLevel: Level;
  /** `--json`: JSON logs on stderr. */
  json?: boolean;
}

/** The logger for a command, from the program's global options. */
export function loggerFor(cmd: Command): Logger {
  const g = cmd.optsWithGlobals() as GlobalOptions;
  return createLogger(g.logLevel ?? "info", g.json ?? false);
}

/** Adds `--log-level` and `--json` to the program. */
export function addGlobalOptions(program: Command): Command {
  return program
    .addOption(
      new Option("--log-level <level>", "how much to log on stderr").choices([...LEVELS]).default(
        "info",
      )
        .env("NIXCAS_LOG"),
    )
    .option("--json", "log JSON objects on stderr instead of text lines");
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
 * trace only with `--log-level debug`) and exit code 1.
 */
export function action<A extends unknown[]>(
  fn: (this: Command, ...args: A) => Promise<void>,
): (...args: A) => Promise<void> {
  return async function (this: Command, ...args: A) {
    // commander passes the Command as the last argument.
    const cmd = args[args.length - 1] as Command;
    try {
      await fn.apply(cmd, args);
    } catch (e) {
      const log = loggerFor(cmd);
      if (log.enabled("debug") && e instanceof Error) log.error(e.stack ?? e.message);
      else log.error(e instanceof Error ? e.message : String(e));
      Deno.exit(e instanceof CliError ? e.exitCode : 1);
    }
  };
}
