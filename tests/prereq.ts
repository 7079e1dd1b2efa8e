/**
 * Test prerequisites: a test whose system tool is missing is skipped with a message, except
 * under `NIXCAS_REQUIRE_ALL=1` (set by CI), where a missing prerequisite fails the run.
 *
 * @module
 */

const cache = new Map<string, boolean>();

function onPath(cmd: string): boolean {
  let hit = cache.get(cmd);
  if (hit === undefined) {
    const out = new Deno.Command("sh", {
      args: ["-c", `command -v ${cmd}`],
      stdout: "null",
      stderr: "null",
    })
      .outputSync();
    hit = out.success;
    cache.set(cmd, hit);
  }
  return hit;
}

/**
 * True when every command in `cmds` is on PATH (and `paths` exist). Otherwise prints why the
 * caller's tests are skipped and returns false, or throws under `NIXCAS_REQUIRE_ALL=1`.
 */
export function have(what: string, cmds: string[], paths: string[] = []): boolean {
  const missing = [
    ...cmds.filter((c) => !onPath(c)),
    ...paths.filter((p) => {
      try {
        Deno.statSync(p);
        return false;
      } catch {
        return true;
      }
    }),
  ];
  if (missing.length === 0) return true;
  const msg = `${what}: missing ${missing.join(", ")}`;
  if (Deno.env.get("NIXCAS_REQUIRE_ALL") === "1") {
    throw new Error(`${msg} (NIXCAS_REQUIRE_ALL=1: every prerequisite must be installed)`);
  }
  console.warn(`skipping ${msg}`);
  return false;
}

/** The repository root (absolute path). */
export const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** Runs a command and returns stdout, stderr and the exit code. */
export async function run(
  cmd: string,
  args: string[],
  opts: { env?: Record<string, string>; stdin?: Uint8Array; cwd?: string } = {},
): Promise<{ code: number; stdout: Uint8Array; stderr: string }> {
  const p = new Deno.Command(cmd, {
    args,
    env: opts.env,
    cwd: opts.cwd,
    stdin: opts.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin) {
    const w = p.stdin.getWriter();
    await w.write(opts.stdin);
    await w.close();
  }
  const out = await p.output();
  return { code: out.code, stdout: out.stdout, stderr: new TextDecoder().decode(out.stderr) };
}

/** The flags that point all three services of a nixcas command at one address. */
export function serviceFlags(addr: string): string[] {
  return [
    "--blob-service-addr",
    addr,
    "--directory-service-addr",
    addr,
    "--path-info-service-addr",
    addr,
  ];
}

/** Runs the nixcas CLI from this checkout. */
export function nixcas(
  args: string[],
  opts: { env?: Record<string, string>; stdin?: Uint8Array; cwd?: string } = {},
) {
  return run(Deno.execPath(), ["run", "-A", "--quiet", `${ROOT}/mod.ts`, ...args], opts);
}

/** A nixcas CLI process running in the background (a daemon or a mount). */
export interface Background {
  /** The process. */
  child: Deno.ChildProcess;
  /** Everything it wrote to stderr so far. */
  stderr(): string;
  /** Resolves when stderr has ended (the process exited). */
  drained: Promise<void>;
}

/**
 * Starts `nixcas ARGS` and resolves once `ready` appears on its stderr (e.g. "listening",
 * "mounted the store"); stderr keeps being read so the process never blocks on it. Throws with
 * what it printed when it exits first. The caller stops it. `entry` is the CLI's script (default:
 * this checkout's mod.ts).
 */
export async function startNixcas(
  args: string[],
  ready: string,
  env: Record<string, string> = {},
  entry = `${ROOT}/mod.ts`,
): Promise<Background> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", entry, ...args],
    env,
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes(ready)) {
    const { value, done } = await reader.read();
    if (done) {
      await child.status;
      throw new Error(`nixcas ${args[0]} exited before "${ready}": ${seen}`);
    }
    seen += value;
  }
  const drained = (async () => {
    for (let r = await reader.read(); !r.done; r = await reader.read()) seen += r.value;
  })();
  return { child, stderr: () => seen, drained };
}

let slowSkipNoted = false;

/**
 * For `ignore:` of a test that takes over ~10 s: true (skip it) under `NIXCAS_SKIP_SLOW=1`, which
 * `deno task test:quick` sets; `deno task test` (and CI) runs them. Prints once that slow tests
 * are skipped. Throws under `NIXCAS_REQUIRE_ALL=1` too, where every test must run.
 */
export function slow(): boolean {
  if (Deno.env.get("NIXCAS_SKIP_SLOW") !== "1") return false;
  if (Deno.env.get("NIXCAS_REQUIRE_ALL") === "1") {
    throw new Error("NIXCAS_SKIP_SLOW=1 and NIXCAS_REQUIRE_ALL=1: every test must run");
  }
  if (!slowSkipNoted) {
    slowSkipNoted = true;
    console.warn("skipping slow tests (NIXCAS_SKIP_SLOW=1)");
  }
  return true;
}
