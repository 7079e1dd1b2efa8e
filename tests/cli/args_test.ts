/**
 * The command-line parser (`src/cli/args.ts`): every kind of option and argument, env var
 * fallbacks, errors and help text, on a small example program and on `nixcas` itself; then a few
 * runs of `deno run mod.ts` for exit codes and what reaches stdout and stderr.
 */
import assert from "node:assert/strict";
import {
  formatHelp,
  type Invocation,
  parseArgs,
  type ProgramSpec,
  UsageError,
} from "../../src/cli/args.ts";
import { PROGRAM, VERSION } from "../../src/cli/main.ts";
import { DEFAULT_LISTEN_ADDRESS } from "../../src/backends/grpc/address.ts";
import { ROOT } from "../prereq.ts";

const td = new TextDecoder();

/** A program using every feature of the parser. */
const GREET: ProgramSpec = {
  name: "greet",
  version: "1.2.3",
  description: "Greets people.",
  options: [
    { flags: "--mood <m>", description: "how", choices: ["calm", "loud"], default: "calm" },
    { flags: "--json", description: "JSON output" },
  ],
  commands: [
    {
      name: "hello",
      description: "Say hello to everyone named.",
      arguments: [["<greeting>", "what to say"], ["<names...>", "who to greet"]],
      options: [
        { flags: "-q, --quiet", description: "whisper" },
        { flags: "-x, --excited", description: "add an exclamation mark" },
        {
          flags: "-n, --times <n>",
          description: "how often",
          default: 1,
          env: "GREET_TIMES",
          parse: (v) => {
            if (!/^\d+$/.test(v)) throw new Error("not a whole number");
            return Number(v);
          },
        },
        { flags: "--punct <p>", description: "punctuation", env: "GREET_PUNCT" },
        { flags: "--polite", description: "say please", env: "GREET_POLITE" },
      ],
      run: () => Promise.resolve(),
    },
    {
      name: "wave",
      description: "Wave, optionally at someone.",
      arguments: [["[at]", "who to wave at"]],
      run: () => Promise.resolve(),
    },
  ],
};

/** Parses `argv` against GREET (or `program`) with `env` as the environment; expects a run. */
function run(argv: string[], env: Record<string, string> = {}, program = GREET): Invocation {
  const r = parseArgs(program, argv, (k) => env[k]);
  assert.equal(r.kind, "run", `expected a command to run, got ${r.kind}`);
  return (r as { invocation: Invocation }).invocation;
}

/** The UsageError `argv` causes. */
function usageError(argv: string[], env: Record<string, string> = {}, program = GREET) {
  try {
    parseArgs(program, argv, (k) => env[k]);
  } catch (e) {
    assert.ok(e instanceof UsageError, `not a UsageError: ${e}`);
    return e;
  }
  assert.fail(`no error for ${argv.join(" ")}`);
}

Deno.test("args: flags, values in every spelling, variadic arguments, camelCase keys", () => {
  const inv = run(["--json", "hello", "-q", "hi", "ann", "--times", "2", "bob", "--punct=!"]);
  assert.deepEqual(inv.globals, { json: true, mood: "calm" });
  assert.deepEqual(inv.options, { quiet: true, times: 2, punct: "!" });
  assert.deepEqual(inv.args, { greeting: "hi", names: ["ann", "bob"] });
  // -n 3, -n3, --times=3 and --times 3 are the same; combined short flags; the last repeat wins.
  for (const spelling of [["-n", "3"], ["-n3"], ["--times=3"], ["--times", "1", "--times", "3"]]) {
    assert.equal(run(["hello", ...spelling, "hi", "ann"]).options.times, 3, spelling.join(" "));
  }
  assert.deepEqual(run(["hello", "-qxn4", "hi", "ann"]).options, {
    quiet: true,
    excited: true,
    times: 4,
  });
  // A value may start with a dash; `=` keeps the rest of the token, even another `=`.
  assert.equal(run(["hello", "--punct", "-", "hi", "ann"]).options.punct, "-");
  assert.equal(run(["hello", "--punct==!", "hi", "ann"]).options.punct, "=!");
});

Deno.test("args: option > env var > default; env values are parsed and checked too", () => {
  assert.equal(run(["hello", "hi", "ann"]).options.times, 1);
  assert.equal(run(["hello", "hi", "ann"], { GREET_TIMES: "5" }).options.times, 5);
  assert.equal(run(["hello", "-n", "7", "hi", "ann"], { GREET_TIMES: "5" }).options.times, 7);
  assert.equal(run(["hello", "hi", "ann"], { GREET_PUNCT: "?" }).options.punct, "?");
  assert.ok(!("punct" in run(["hello", "hi", "ann"]).options), "no default: absent");
  assert.equal(run(["hello", "hi", "ann"], { GREET_POLITE: "1" }).options.polite, true);
  assert.equal(run(["hello", "hi", "ann"], { GREET_POLITE: "0" }).options.polite, false);
  const e = usageError(["hello", "hi", "ann"], { GREET_TIMES: "lots" });
  assert.equal(
    e.message,
    "option '-n, --times <n>' value 'lots' from env 'GREET_TIMES' is invalid: not a whole number",
  );
  assert.equal(e.command, "hello");
});

Deno.test("args: bad values name the option, the value and what is allowed", () => {
  assert.equal(
    usageError(["--mood", "grumpy", "wave"]).message,
    "option '--mood <m>' argument 'grumpy' is invalid: allowed choices are calm, loud",
  );
  assert.equal(
    usageError(["hello", "-n", "x", "hi", "ann"]).message,
    "option '-n, --times <n>' argument 'x' is invalid: not a whole number",
  );
  assert.equal(
    usageError(["hello", "hi", "ann", "--times"]).message,
    "option '-n, --times <n>' argument missing",
  );
  assert.equal(
    usageError(["hello", "--quiet=yes", "hi", "ann"]).message,
    "option '-q, --quiet' takes no value",
  );
});

Deno.test("args: arguments: required, optional, variadic, too many, and `--`", () => {
  assert.deepEqual(run(["wave"]).args, {});
  assert.deepEqual(run(["wave", "ann"]).args, { at: "ann" });
  assert.equal(usageError(["hello"]).message, "missing required argument 'greeting'");
  assert.equal(usageError(["hello", "hi"]).message, "missing required argument 'names'");
  const e = usageError(["wave", "ann", "bob"]);
  assert.equal(e.message, "too many arguments for 'wave': expected 1 argument but got 2: ann, bob");
  assert.equal(e.command, "wave");
  // After `--`, everything is an argument, even `--help` and `-q`.
  const inv = run(["hello", "-q", "--", "-hi-", "--help", "-q"]);
  assert.deepEqual(inv.args, { greeting: "-hi-", names: ["--help", "-q"] });
  assert.deepEqual(inv.options, { quiet: true, times: 1 });
  // A lone `-` is an argument (stdin, by convention).
  assert.deepEqual(run(["wave", "-"]).args, { at: "-" });
});

Deno.test("args: unknown options and commands, with a suggestion when one is close", () => {
  assert.equal(
    usageError(["hello", "--quite", "hi", "ann"]).message,
    "unknown option '--quite' (did you mean '--quiet'?)",
  );
  assert.equal(usageError(["hello", "-z", "hi", "ann"]).message, "unknown option '-z'");
  assert.equal(usageError(["--bogus", "wave"]).message, "unknown option '--bogus'");
  assert.equal(usageError(["--bogus", "wave"]).command, undefined);
  assert.equal(usageError(["wvae"]).message, "unknown command 'wvae' (did you mean 'wave'?)");
  assert.equal(usageError(["dance"]).message, "unknown command 'dance'");
  assert.equal(usageError(["help", "dance"]).message, "unknown command 'dance'");
  // Global options go before the command; after it they are named as such.
  assert.equal(
    usageError(["wave", "--mood", "loud"]).message,
    "option '--mood' is a global option: put it before the command ('--mood <m>')",
  );
});

Deno.test("args: --help, -h and `help [command]` win over everything else; --version", () => {
  const programHelp = formatHelp(GREET);
  const helloHelp = formatHelp(GREET, "hello");
  for (const argv of [["--help"], ["-h"], ["help"], ["--json", "--help", "wave"]]) {
    assert.deepEqual(parseArgs(GREET, argv), { kind: "help", text: programHelp, exitCode: 0 });
  }
  for (
    const argv of [["hello", "--help"], ["hello", "-qh"], ["help", "hello"], [
      "hello",
      "--bogus",
      "-h",
    ]]
  ) {
    assert.deepEqual(parseArgs(GREET, argv), { kind: "help", text: helloHelp, exitCode: 0 });
  }
  // `help` has help of its own: the program's.
  for (
    const argv of [["help", "--help"], ["help", "-h"], ["help", "help"], ["--json", "help", "-h"]]
  ) {
    assert.deepEqual(parseArgs(GREET, argv), { kind: "help", text: programHelp, exitCode: 0 });
  }
  for (const argv of [["help", "hello", "--help"], ["help", "-h", "hello"]]) {
    assert.deepEqual(parseArgs(GREET, argv), { kind: "help", text: helloHelp, exitCode: 0 });
  }
  assert.throws(() => parseArgs(GREET, ["help", "--bogus"]), /unknown option '--bogus'/);
  assert.throws(() => parseArgs(GREET, ["help", "hello", "wave"]), /too many arguments for 'help'/);
  assert.throws(() => parseArgs(GREET, ["help", "hullo"]), /unknown command 'hullo'/);
  // No command: the program's help, as an error.
  assert.deepEqual(parseArgs(GREET, ["--json"]), { kind: "help", text: programHelp, exitCode: 1 });
  for (const argv of [["--version"], ["-V"], ["-V", "hello"]]) {
    assert.deepEqual(parseArgs(GREET, argv), { kind: "version", text: "1.2.3\n" });
  }
});

Deno.test("args: help text lists arguments, every flag with its choices, default and env var", () => {
  assert.equal(
    formatHelp(GREET, "hello"),
    `Usage: greet hello [options] <greeting> <names...>

Say hello to everyone named.

Arguments:
  greeting         what to say
  names            who to greet

Options:
  -q, --quiet      whisper
  -x, --excited    add an exclamation mark
  -n, --times <n>  how often (default: 1, env: GREET_TIMES)
  --punct <p>      punctuation (env: GREET_PUNCT)
  --polite         say please (env: GREET_POLITE)
  -h, --help       display help for command
`,
  );
  // One column width for all sections; long descriptions wrap under their column.
  assert.equal(
    formatHelp(GREET),
    `Usage: greet [options] [command]

Greets people.

Options:
  -V, --version                          output the version number
  --mood <m>                             how (choices: "calm", "loud", default:
                                         "calm")
  --json                                 JSON output
  -h, --help                             display help for command

Commands:
  hello [options] <greeting> <names...>  Say hello to everyone named.
  wave [options] [at]                    Wave, optionally at someone.
  help [command]                         display help for command
`,
  );
});

Deno.test("args: nixcas: global options, command options, env vars and defaults", () => {
  const inv = run(
    ["--log-level", "debug", "--json", "import", "-q", "--concurrency=3", "a", "b"],
    { BLOB_SERVICE_ADDR: "memory://" },
    PROGRAM,
  );
  assert.deepEqual(inv.globals, { logLevel: "debug", json: true });
  assert.deepEqual(inv.options, { quiet: true, concurrency: 3, blobServiceAddr: "memory://" });
  assert.deepEqual(inv.args, { path: ["a", "b"] });
  assert.equal(run(["list"], { NIXCAS_LOG: "trace" }, PROGRAM).globals.logLevel, "trace");
  assert.equal(run(["list"], {}, PROGRAM).globals.logLevel, "info");
  assert.match(
    usageError(["list"], { NIXCAS_LOG: "loud" }, PROGRAM).message,
    /'--log-level <level>' value 'loud' from env 'NIXCAS_LOG' is invalid: allowed choices are error, warn, info, debug, trace$/,
  );
  assert.deepEqual(run(["daemon", "--grace", "2.5"], {}, PROGRAM).options, {
    listenAddress: DEFAULT_LISTEN_ADDRESS,
    grace: 2.5,
    maxDirectoriesPerPut: 200_000,
    maxDirectoryBytesPerPut: 256 << 20,
    idleTimeout: 300,
    socketMode: "0660", // defaults are kept as written; the command parses it
  });
  // path-info has its own --json, distinct from the global one.
  const pi = run(["path-info", "--json", "x"], {}, PROGRAM);
  assert.deepEqual([pi.options, pi.globals], [{ json: true }, { logLevel: "info" }]);
  for (const bad of ["0", "-1", "1.5", "abc", ""]) {
    assert.match(
      usageError(["import", "--concurrency", bad, "a"], {}, PROGRAM).message,
      /^option '--concurrency <n>' argument '.*' is invalid: not a whole number of at least 1$/,
    );
  }
});

Deno.test("args: nixcas help shows every command, flag, env var and default", () => {
  const top = formatHelp(PROGRAM);
  for (const c of PROGRAM.commands) {
    assert.match(top, new RegExp(`^  ${c.name} \\[options\\]`, "m"));
  }
  // The text wraps where the widest command name leaves room: compare it with spaces joined.
  assert.match(
    top.replace(/\s+/g, " "),
    /--log-level <level> how much to log on stderr \(choices: "error", "warn", "info", "debug", "trace", default: "info", env: NIXCAS_LOG\) /,
  );
  const imp = formatHelp(PROGRAM, "import");
  assert.match(
    imp,
    /^Usage: nixcas import \[options\] \[path\.\.\.\]\n\nImport files or directories/,
  );
  assert.match(imp, /\n {2}--export <file> +read a `nix-store --export` stream from <file>\n/);
  assert.match(imp, /\n {2}path +files, directories or symlinks to import\n/);
  assert.match(imp, /\n {2}-q, --quiet +no progress display on stderr \(shown only when\n/);
  assert.match(
    imp,
    /\n {2}--concurrency <n> +files uploaded at once per path\. [^-]+\(default: 8\)\n/,
  );
  assert.match(imp, /\(env:\n +BLOB_SERVICE_ADDR\)/);
  const daemon = formatHelp(PROGRAM, "daemon");
  assert.match(daemon, /-l, --listen-address <addr>/);
  assert.ok(daemon.includes(`(default: ${JSON.stringify(DEFAULT_LISTEN_ADDRESS)})`));
  assert.match(
    daemon,
    /--grace <seconds> +how long calls in progress may take at\n +shutdown \(default: 10\)/,
  );
  // Every line fits in 80 columns.
  for (const c of [undefined, ...PROGRAM.commands.map((c) => c.name)]) {
    for (const line of formatHelp(PROGRAM, c).split("\n")) assert.ok(line.length <= 80, line);
  }
});

// End to end: exit codes and where the text goes. NIXCAS_DIR points nowhere: none of these may
// open a store.
const env = { NIXCAS_DIR: "/nonexistent/nixcas-args-test" };

/** Runs `nixcas ARGS`, killed after 30 s (a regression must not leave e.g. a daemon running). */
async function nixcas(args: string[], opts: { env: Record<string, string> }) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", `${ROOT}/mod.ts`, ...args],
    env: opts.env,
    stdin: "null",
    signal: AbortSignal.timeout(30_000),
  }).output();
  return { code: out.code, stdout: out.stdout, stderr: td.decode(out.stderr) };
}

Deno.test("nixcas --version, --help and each command's --help: stdout, exit code 0", async () => {
  const version = await nixcas(["--version"], { env });
  assert.deepEqual([version.code, td.decode(version.stdout), version.stderr], [
    0,
    `${VERSION}\n`,
    "",
  ]);
  const names = PROGRAM.commands.map((c) => c.name);
  const runs = await Promise.all(
    [["--help"], ...names.map((n) => [n, "--help"])].map((a) => nixcas(a, { env })),
  );
  runs.forEach((r, i) => {
    const name = i === 0 ? undefined : names[i - 1];
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.equal(td.decode(r.stdout), formatHelp(PROGRAM, name));
  });
  // `nixcas help --help` is the program's help too, and `help CMD --help` the command's.
  const helps = await Promise.all(
    [["help", "--help"], ["help", "mount", "--help"]].map((a) => nixcas(a, { env })),
  );
  helps.forEach((r, i) => {
    const name = i === 0 ? undefined : "mount";
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.equal(td.decode(r.stdout), formatHelp(PROGRAM, name));
  });
});

Deno.test("nixcas usage errors: one line on stderr plus a hint, exit code 1, no stack", async () => {
  const cases: [string[], string, Record<string, string>?][] = [
    [
      ["import"],
      "error: missing required argument 'path'\n(run 'nixcas import --help' for usage)\n",
    ],
    [
      ["improt"],
      "error: unknown command 'improt' (did you mean 'import'?)\n(run 'nixcas --help' for usage)\n",
    ],
    [
      ["nar", "--bogus", "x"],
      "error: unknown option '--bogus'\n(run 'nixcas nar --help' for usage)\n",
    ],
    [
      ["import", "--concurrency", "many", "x"],
      "error: option '--concurrency <n>' argument 'many' is invalid: not a whole number of at least 1\n(run 'nixcas import --help' for usage)\n",
    ],
    [
      ["--log-level", "loud", "list"],
      "error: option '--log-level <level>' argument 'loud' is invalid: allowed choices are error, warn, info, debug, trace\n(run 'nixcas --help' for usage)\n",
    ],
    [
      ["list"],
      "error: option '--log-level <level>' value 'x' from env 'NIXCAS_LOG' is invalid: allowed choices are error, warn, info, debug, trace\n(run 'nixcas --help' for usage)\n",
      { NIXCAS_LOG: "x" },
    ],
    [
      ["cat", "a", "b"],
      "error: too many arguments for 'cat': expected 1 argument but got 2: a, b\n(run 'nixcas cat --help' for usage)\n",
    ],
    [
      ["daemon", "-l"],
      "error: option '-l, --listen-address <addr>' argument missing\n(run 'nixcas daemon --help' for usage)\n",
    ],
  ];
  const runs = await Promise.all(
    cases.map(([argv, , extra]) => nixcas(argv, { env: { ...env, ...extra } })),
  );
  runs.forEach((r, i) => {
    assert.deepEqual(
      [r.code, r.stderr, r.stdout.length],
      [1, cases[i][1], 0],
      cases[i][0].join(" "),
    );
  });
  const none = await nixcas([], { env });
  assert.equal(none.code, 1);
  assert.equal(none.stderr, formatHelp(PROGRAM));
});
