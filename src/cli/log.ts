/**
 * Logging for the CLI and daemon: plain lines or JSON objects on stderr, filtered by level.
 *
 * @module
 */
import { clip } from "../base/errors.ts";

/** Log levels, most to least severe. */
export const LEVELS = ["error", "warn", "info", "debug", "trace"] as const;
/** One of {@linkcode LEVELS}. */
export type Level = typeof LEVELS[number];

/** A logger writing to stderr. */
export interface Logger {
  /** Logs at `level` with optional structured fields. */
  log(level: Level, msg: string, fields?: Record<string, unknown>): void;
  /** Shorthands. */
  error(msg: string, fields?: Record<string, unknown>): void;
  /** Shorthands. */
  warn(msg: string, fields?: Record<string, unknown>): void;
  /** Shorthands. */
  info(msg: string, fields?: Record<string, unknown>): void;
  /** Shorthands. */
  debug(msg: string, fields?: Record<string, unknown>): void;
  /** True when messages at `level` are written. */
  enabled(level: Level): boolean;
}

const enc = new TextEncoder();

/** Creates a logger that writes messages at `level` or more severe, as JSON when `json`. */
export function createLogger(level: Level = "info", json = false): Logger {
  const max = LEVELS.indexOf(level);
  const enabled = (l: Level) => LEVELS.indexOf(l) <= max;
  const log = (l: Level, msg: string, fields?: Record<string, unknown>) => {
    if (!enabled(l)) return;
    msg = clipLongWords(msg);
    const line = json
      ? JSON.stringify({ time: new Date().toISOString(), level: l, msg, ...fields })
      : `${l === "info" ? "" : `${l}: `}${msg}${
        fields && Object.keys(fields).length
          ? " " + Object.entries(fields).map(([k, v]) => `${k}=${fmt(v)}`).join(" ")
          : ""
      }`;
    Deno.stderr.writeSync(enc.encode(line + "\n"));
  };
  return {
    log,
    error: (m, f) => log("error", m, f),
    warn: (m, f) => log("warn", m, f),
    info: (m, f) => log("info", m, f),
    debug: (m, f) => log("debug", m, f),
    enabled,
  };
}

/**
 * Shortens the words of a message that are longer than any store path or usual file path: a
 * huge argument quoted by code that does not {@linkcode clip} it, or by Deno's own error
 * messages, must not flood stderr.
 */
function clipLongWords(message: string): string {
  return message.replace(/\S{1000,}/g, (w) => clip(w));
}

function fmt(v: unknown): string {
  return typeof v === "string" && !/\s/.test(v) ? v : JSON.stringify(v);
}
