/**
 * A small, dependency-free command-line parser: a program with global options and subcommands,
 * each declared as plain data ({@linkcode ProgramSpec}, {@linkcode CommandSpec},
 * {@linkcode OptionSpec}). It parses options with values (`--opt v`, `--opt=v`, `-o v`, `-ov`),
 * boolean flags (combinable: `-qh`), env var fallbacks, defaults, choices and parse functions,
 * positional arguments (`<required>`, `[optional]`, `<variadic...>`), `--`, `--help`, `help
 * [command]` and `--version`, and formats help text like commander did.
 *
 * Program options come before the command name; a command's options may be mixed with its
 * arguments. A repeated option keeps its last value.
 *
 * @module
 */
import { clip } from "../base/errors.ts";

/** An option: a flag, or a flag taking a value when `flags` names one (`<value>`). */
export interface OptionSpec {
  /** `"-q, --quiet"` or `"--concurrency <n>"`: an optional short flag, a long flag, a value. */
  flags: string;
  /** One line (or sentence) for the help text. */
  description: string;
  /** Used when neither the command line nor `env` gives a value; shown in the help text. */
  default?: string | number | boolean;
  /**
   * Environment variable read when the flag is absent (flag > env var > default). A set variable
   * counts, even when empty; a flag without a value is off for "", "0" and "false", else on.
   */
  env?: string;
  /** The allowed values (checked before `parse`). */
  choices?: readonly string[];
  /** Turns the text value into the option's value; a thrown error's message says why it is bad. */
  parse?: (value: string) => unknown;
}

/**
 * A subcommand. `O` is the type its `run` sees as `options`: the caller keeps it in step with
 * `options` (camelCased long names; absent flags without default are missing).
 */
export interface CommandSpec<O extends object = object> {
  /** What the user types. */
  name: string;
  /** What the command does, for its help text and the program's command list. */
  description: string;
  /** Positional arguments in order: `["<path...>", "what it is"]`, `["[dir]", "..."]`. */
  arguments?: readonly (readonly [string, string])[];
  /** The command's options (`-h, --help` is added). */
  options?: readonly OptionSpec[];
  /** Runs the command. */
  run(invocation: Invocation<O>): Promise<void>;
}

/** A program: global options and subcommands. */
export interface ProgramSpec {
  /** The program name used in usage lines. */
  name: string;
  /** Printed by `--version` / `-V`. */
  version: string;
  /** What the program is. */
  description: string;
  /** Global options, accepted before the command name (`-h, --help`, `-V, --version` added). */
  options?: readonly OptionSpec[];
  /** The subcommands, in help order. */
  commands: readonly CommandSpec[];
}

/** What a command runs with: values keyed by camelCased names (`--blob-service-addr` → `blobServiceAddr`). */
export interface Invocation<O extends object = Record<string, unknown>> {
  /** Positional arguments; a variadic one is an array, an absent optional one is missing. */
  args: Record<string, string | string[]>;
  /** The command's options, with env vars and defaults applied. */
  options: O;
  /** The program's global options, with env vars and defaults applied. */
  globals: Record<string, unknown>;
}

/** The outcome of {@linkcode parseArgs}. */
export type ParseResult =
  | { kind: "run"; command: CommandSpec; invocation: Invocation }
  /** Help text to print; `exitCode` 1 when no command was given. */
  | { kind: "help"; text: string; exitCode: number }
  | { kind: "version"; text: string };

/** A bad command line: `message` names the bad input; `command` is the command it was for. */
export class UsageError extends Error {
  /** The subcommand whose help explains the usage, or undefined for the program. */
  readonly command?: string;
  /** Creates the error. */
  constructor(message: string, command?: string) {
    super(message);
    this.name = "UsageError";
    this.command = command;
  }
}

interface Opt {
  spec: OptionSpec;
  short?: string;
  long: string;
  key: string;
  value?: string;
}

interface Arg {
  name: string;
  key: string;
  required: boolean;
  variadic: boolean;
}

const HELP: OptionSpec = { flags: "-h, --help", description: "display help for command" };
const VERSION: OptionSpec = { flags: "-V, --version", description: "output the version number" };
const WIDTH = 80;

const camel = (s: string) => s.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());

function opt(spec: OptionSpec): Opt {
  const m = /^(?:-([A-Za-z0-9]), )?--([a-z0-9][a-z0-9-]*)(?: <([^>]+)>)?$/.exec(spec.flags);
  if (!m) throw new TypeError(`bad option flags: ${spec.flags}`);
  return { spec, short: m[1], long: m[2], key: camel(m[2]), value: m[3] };
}

function arg([term]: readonly [string, string]): Arg {
  const m = /^(<|\[)([a-z0-9][a-z0-9-]*)(\.\.\.)?(>|\])$/i.exec(term);
  if (!m || (m[1] === "<") !== (m[4] === ">")) throw new TypeError(`bad argument: ${term}`);
  return { name: m[2], key: camel(m[2]), required: m[1] === "<", variadic: !!m[3] };
}

/** Edit distance with transpositions, for "did you mean" (as commander's suggestSimilar). */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i]);
  for (let j = 0; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(
        d[i - 1][j] + 1,
        d[i][j - 1] + 1,
        d[i - 1][j - 1] + +(a[i - 1] !== b[j - 1]),
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

function suggest(word: string, candidates: string[]): string {
  // Nothing is close to a very long word (and the distance table would be large).
  if (word.length > 100) return "";
  let best: string | undefined, bestD = 3;
  for (const c of candidates) {
    const d = distance(word, c), len = Math.max(word.length, c.length);
    if (d < bestD && (len - d) / len > 0.4) [best, bestD] = [c, d];
  }
  return best ? ` (did you mean '${best}'?)` : "";
}

/** Parses and checks one value given for `o` (on the command line, or from `env`). */
function value(o: Opt, text: string, cmd: string | undefined, fromEnv = false): unknown {
  const what = fromEnv
    ? `value '${clip(text)}' from env '${o.spec.env}'`
    : `argument '${clip(text)}'`;
  const bad = (why: string) =>
    new UsageError(`option '${o.spec.flags}' ${what} is invalid: ${why}`, cmd);
  const { choices, parse } = o.spec;
  if (choices && !choices.includes(text)) throw bad(`allowed choices are ${choices.join(", ")}`);
  if (!parse) return text;
  try {
    return parse(text);
  } catch (e) {
    throw bad(e instanceof Error ? e.message : String(e));
  }
}

/**
 * Reads options from `argv` into `out`: all of them up to `--` when `positional` is given (which
 * collects everything else), else up to the first non-option. Returns the index of the first
 * unread token. `misplaced` are the program's options, named in the error when used after the
 * command.
 */
function readOptions(
  argv: readonly string[],
  opts: Opt[],
  out: Record<string, unknown>,
  positional: string[] | undefined,
  cmd: string | undefined,
  misplaced: Opt[] = [],
): number {
  const unknown = (flag: string) => {
    const global = misplaced.find((o) => flag === `--${o.long}` || flag === `-${o.short}`);
    if (global) {
      return new UsageError(
        `option '${flag}' is a global option: put it before the command ('${global.spec.flags}')`,
        cmd,
      );
    }
    const longs = opts.map((o) => `--${o.long}`);
    return new UsageError(
      `unknown option '${clip(flag)}'${flag.startsWith("--") ? suggest(flag, longs) : ""}`,
      cmd,
    );
  };
  const missing = (o: Opt) => new UsageError(`option '${o.spec.flags}' argument missing`, cmd);
  let i = 0;
  while (i < argv.length) {
    const tok = argv[i];
    if (tok === "--") {
      if (positional) positional.push(...argv.slice(i + 1));
      return positional ? argv.length : i + 1;
    }
    if (!tok.startsWith("-") || tok === "-") {
      if (!positional) return i;
      positional.push(tok);
      i++;
      continue;
    }
    i++;
    if (tok.startsWith("--")) {
      const eq = tok.indexOf("=");
      const flag = eq < 0 ? tok : tok.slice(0, eq);
      const o = opts.find((o) => `--${o.long}` === flag);
      if (!o) throw unknown(flag);
      if (!o.value) {
        if (eq >= 0) throw new UsageError(`option '${o.spec.flags}' takes no value`, cmd);
        out[o.key] = true;
      } else if (eq >= 0) out[o.key] = value(o, tok.slice(eq + 1), cmd);
      else if (i < argv.length) out[o.key] = value(o, argv[i++], cmd);
      else throw missing(o);
      continue;
    }
    // Short flags: `-q`, combined `-qh`, or one taking a value: `-l addr`, `-laddr`.
    for (let k = 1; k < tok.length; k++) {
      const o = opts.find((o) => o.short === tok[k]);
      if (!o) throw unknown(`-${tok[k]}`);
      if (!o.value) {
        out[o.key] = true;
        continue;
      }
      if (k + 1 < tok.length) out[o.key] = value(o, tok.slice(k + 1), cmd);
      else if (i < argv.length) out[o.key] = value(o, argv[i++], cmd);
      else throw missing(o);
      break;
    }
  }
  return i;
}

/** Fills in options not given on the command line: env var, then default. */
function fallbacks(
  opts: Opt[],
  out: Record<string, unknown>,
  env: (name: string) => string | undefined,
  cmd: string | undefined,
): void {
  for (const o of opts) {
    if (o.key in out) continue;
    const e = o.spec.env === undefined ? undefined : env(o.spec.env);
    if (e !== undefined) {
      out[o.key] = o.value ? value(o, e, cmd, true) : !["", "0", "false"].includes(e);
    } else if (o.spec.default !== undefined) out[o.key] = o.spec.default;
  }
}

/** The program's options with `--version` and `--help`, in help order. */
const programOpts = (p: ProgramSpec) => [VERSION, ...(p.options ?? []), HELP].map(opt);
/** A command's options with `--help`, in help order. */
const commandOpts = (c: CommandSpec) => [...(c.options ?? []), HELP].map(opt);

/**
 * Parses `argv` (without the program name) against `program`. Reads env var fallbacks through
 * `env`. Throws {@linkcode UsageError} for a bad command line.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseArgs, type ProgramSpec } from "./args.ts";
 * const program: ProgramSpec = {
 *   name: "greet",
 *   version: "1.0.0",
 *   description: "Greets people.",
 *   options: [{ flags: "--loud", description: "shout" }],
 *   commands: [{
 *     name: "hello",
 *     description: "Say hello.",
 *     arguments: [["<name...>", "who to greet"]],
 *     options: [{
 *       flags: "-n, --times <n>",
 *       description: "how often",
 *       default: 1,
 *       env: "GREET_TIMES",
 *       parse: (v) => parseInt(v, 10),
 *     }],
 *     run: () => Promise.resolve(),
 *   }],
 * };
 * const r = parseArgs(program, ["--loud", "hello", "ann", "-n", "3", "bob"], () => undefined);
 * assert.equal(r.kind, "run");
 * if (r.kind === "run") {
 *   assert.deepEqual(r.invocation.args, { name: ["ann", "bob"] });
 *   assert.deepEqual(r.invocation.options, { times: 3 });
 *   assert.deepEqual(r.invocation.globals, { loud: true });
 * }
 * ```
 */
export function parseArgs(
  program: ProgramSpec,
  argv: readonly string[],
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): ParseResult {
  const popts = programOpts(program);
  const globals: Record<string, unknown> = {};
  const helpAsked = (tokens: readonly string[]) => {
    const end = tokens.indexOf("--");
    return (end < 0 ? tokens : tokens.slice(0, end)).some((t) => t === "-h" || t === "--help");
  };
  let i: number;
  try {
    i = readOptions(argv, popts, globals, undefined, undefined);
  } catch (e) {
    const end = argv.findIndex((t) => !t.startsWith("-"));
    if (helpAsked(end < 0 ? argv : argv.slice(0, end))) return help(program);
    throw e;
  }
  if (globals.help) return help(program);
  if (globals.version) return { kind: "version", text: program.version + "\n" };
  const find = (name: string) => {
    const c = program.commands.find((c) => c.name === name);
    if (c) return c;
    const names = [...program.commands.map((c) => c.name), "help"];
    throw new UsageError(`unknown command '${clip(name)}'${suggest(name, names)}`);
  };
  if (i >= argv.length) return { kind: "help", text: formatHelp(program), exitCode: 1 };
  if (argv[i] === "help") return helpCommand(program, argv.slice(i + 1), find);
  const command = find(argv[i]);
  const copts = commandOpts(command);
  const options: Record<string, unknown> = {};
  const positional: string[] = [];
  const rest = argv.slice(i + 1);
  try {
    readOptions(rest, copts, options, positional, command.name, popts);
  } catch (e) {
    if (helpAsked(rest)) return help(program, command.name);
    throw e;
  }
  if (options.help) return help(program, command.name);
  fallbacks(popts, globals, env, undefined);
  fallbacks(copts, options, env, command.name);
  delete globals.help;
  delete globals.version;
  delete options.help;
  return {
    kind: "run",
    command,
    invocation: { args: args(command, positional), options, globals },
  };
}

/** Assigns positional values to the command's declared arguments. */
function args(command: CommandSpec, values: string[]): Record<string, string | string[]> {
  const decl = (command.arguments ?? []).map(arg);
  const out: Record<string, string | string[]> = {};
  let i = 0;
  for (const a of decl) {
    if (a.variadic) {
      if (a.required && i >= values.length) {
        throw new UsageError(`missing required argument '${a.name}'`, command.name);
      }
      out[a.key] = values.slice(i);
      i = values.length;
    } else if (i < values.length) out[a.key] = values[i++];
    else if (a.required) {
      throw new UsageError(`missing required argument '${a.name}'`, command.name);
    }
  }
  if (i < values.length) {
    const n = decl.length;
    throw new UsageError(
      `too many arguments for '${command.name}': expected ${n} argument${n === 1 ? "" : "s"} ` +
        `but got ${values.length}: ${clip(values.map((v) => clip(v)).join(", "), 1000)}`,
      command.name,
    );
  }
  return out;
}

/**
 * `help [command]`. Its own `-h`/`--help`, and `help help`, ask what `help` does: the program's
 * help is the answer.
 */
function helpCommand(
  program: ProgramSpec,
  rest: readonly string[],
  find: (name: string) => CommandSpec,
): ParseResult {
  const names: string[] = [];
  for (const tok of rest) {
    if (tok === "-h" || tok === "--help") continue;
    if (tok.startsWith("-") && tok !== "-") {
      throw new UsageError(`unknown option '${clip(tok)}'`, "help");
    }
    names.push(tok);
  }
  if (names.length > 1) {
    throw new UsageError(
      `too many arguments for 'help': expected 1 argument but got ${names.length}: ` +
        clip(names.map((v) => clip(v)).join(", "), 1000),
      "help",
    );
  }
  if (names.length === 0 || names[0] === "help") return help(program);
  return help(program, find(names[0]).name);
}

function help(program: ProgramSpec, command?: string): ParseResult {
  return { kind: "help", text: formatHelp(program, command), exitCode: 0 };
}

/** Greedy word wrap to `width` columns (commander's boxWrap). */
function wrap(text: string, width: number): string {
  return text.split("\n").map((line) => {
    const words = line.match(/\s*\S+/g);
    if (!words) return "";
    const lines: string[] = [];
    let cur = words[0];
    for (const w of words.slice(1)) {
      if (cur.length + w.length <= width) cur += w;
      else {
        lines.push(cur);
        cur = w.trimStart();
      }
    }
    return [...lines, cur].join("\n");
  }).join("\n");
}

function optionDescription({ spec: o, value }: Opt): string {
  const extra = [];
  if (o.choices) extra.push(`choices: ${o.choices.map((c) => JSON.stringify(c)).join(", ")}`);
  if (o.default !== undefined && value) extra.push(`default: ${JSON.stringify(o.default)}`);
  if (o.env) extra.push(`env: ${o.env}`);
  return extra.length ? `${o.description} (${extra.join(", ")})` : o.description;
}

/**
 * The help text of `program`, or of its subcommand named `command`: usage, description,
 * arguments, options (with choices, default and env var), and the program's commands.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatHelp } from "./args.ts";
 * const text = formatHelp({
 *   name: "greet",
 *   version: "1.0.0",
 *   description: "Greets people.",
 *   options: [{ flags: "--style <s>", description: "how", choices: ["plain", "fancy"] }],
 *   commands: [{ name: "hello", description: "Say hello.", run: () => Promise.resolve() }],
 * });
 * assert.match(text, /^Usage: greet \[options\] \[command\]\n/);
 * assert.match(text, /--style <s> +how \(choices: "plain", "fancy"\)\n/);
 * assert.match(text, /hello \[options\] +Say hello\.\n/);
 * ```
 */
export function formatHelp(program: ProgramSpec, command?: string): string {
  const c = command === undefined ? undefined : program.commands.find((c) => c.name === command);
  if (command !== undefined && !c) throw new TypeError(`no command ${command}`);
  const sections: [string, [string, string][]][] = [];
  const argTerms = (c: CommandSpec) => (c.arguments ?? []).map(([t]) => ` ${t}`).join("");
  if (c?.arguments?.length) {
    sections.push(["Arguments", c.arguments.map((a) => [arg(a).name, a[1]])]);
  }
  const opts = c ? commandOpts(c) : programOpts(program);
  sections.push(["Options", opts.map((o) => [o.spec.flags, optionDescription(o)])]);
  if (!c) {
    sections.push(["Commands", [
      ...program.commands.map((c): [string, string] => [
        `${c.name} [options]${argTerms(c)}`,
        c.description,
      ]),
      ["help [command]", "display help for command"],
    ]]);
  }
  const termWidth = Math.max(...sections.flatMap(([, items]) => items.map(([t]) => t.length)));
  const item = ([term, desc]: [string, string]) =>
    `  ${term.padEnd(termWidth)}  ${
      wrap(desc, WIDTH - termWidth - 4).replaceAll("\n", "\n" + " ".repeat(termWidth + 4))
    }`;
  return [
    `Usage: ${program.name} ${c ? `${c.name} [options]${argTerms(c)}` : "[options] [command]"}`,
    "",
    wrap(c ? c.description : program.description, WIDTH),
    ...sections.flatMap(([title, items]) => ["", `${title}:`, ...items.map(item)]),
    "",
  ].join("\n");
}

const enc = new TextEncoder();

function write(out: { writeSync(p: Uint8Array): number }, text: string) {
  const bytes = enc.encode(text);
  for (let o = 0; o < bytes.length;) o += out.writeSync(bytes.subarray(o));
}

/**
 * Parses `argv` and runs the chosen command. Help and version go to stdout. A usage error is
 * one line on stderr naming the bad input, plus where to find the usage; returns the exit code
 * (0, or 1 for a usage error or missing command) instead of exiting.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runProgram } from "./args.ts";
 * const seen: unknown[] = [];
 * const code = await runProgram({
 *   name: "greet",
 *   version: "1.0.0",
 *   description: "Greets people.",
 *   commands: [{
 *     name: "hello",
 *     description: "Say hello.",
 *     arguments: [["<name>", "who"]],
 *     run: (inv) => Promise.resolve(void seen.push(inv.args.name)),
 *   }],
 * }, ["hello", "ann"]);
 * assert.equal(code, 0);
 * assert.deepEqual(seen, ["ann"]);
 * ```
 */
export async function runProgram(program: ProgramSpec, argv: readonly string[]): Promise<number> {
  let r: ParseResult;
  try {
    r = parseArgs(program, argv);
    // A command may find its arguments wrong too (a rule the parser cannot express).
    if (r.kind === "run") await r.command.run(r.invocation);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    const cmd = e.command === undefined ? "" : ` ${e.command}`;
    write(Deno.stderr, `error: ${e.message}\n(run '${program.name}${cmd} --help' for usage)\n`);
    return 1;
  }
  if (r.kind === "run") return 0;
  if (r.kind === "version") write(Deno.stdout, r.text);
  else {
    write(r.exitCode ? Deno.stderr : Deno.stdout, r.text);
    return r.exitCode;
  }
  return 0;
}
