/**
 * Benchmark helpers: timing commands, peak RSS of child processes, result table.
 *
 * @module
 */

/** One row of the results table. */
export interface Row {
  /** What was measured. */
  what: string;
  /** Our figure. */
  ours: string;
  /** The reference figure. */
  reference: string;
  /** ours / reference (time ratio: lower is better), or a note. */
  ratio: string;
}

/** Runs a command; returns seconds and peak RSS in MiB (from GNU time when available). */
export async function timeCommand(
  cmd: string[],
  opts: { env?: Record<string, string>; stdout?: "null" | "piped" } = {},
): Promise<{ secs: number; rssMiB: number; stdout: Uint8Array }> {
  const useTime = haveGnuTime();
  const args = useTime ? ["-f", "%M", ...cmd] : cmd.slice(1);
  const t0 = performance.now();
  const child = new Deno.Command(useTime ? "/usr/bin/time" : cmd[0], {
    args,
    env: opts.env,
    stdout: opts.stdout ?? "piped",
    stderr: "piped",
  }).spawn();
  const out = await track(child).output();
  const secs = (performance.now() - t0) / 1000;
  const stderr = new TextDecoder().decode(out.stderr).trim();
  if (!out.success) throw new Error(`${cmd.join(" ")} failed:\n${stderr}`);
  const rssKiB = useTime ? Number(stderr.split("\n").at(-1)) : NaN;
  const stdout = opts.stdout === "null" ? new Uint8Array() : out.stdout;
  return { secs, rssMiB: rssKiB / 1024, stdout };
}

const running = new Set<Deno.ChildProcess>();

/** Registers a child for {@link stopChildren} until it ends. */
export function track(child: Deno.ChildProcess): Deno.ChildProcess {
  running.add(child);
  child.status.finally(() => running.delete(child));
  return child;
}

/**
 * Sends SIGTERM to every running child and its descendants (the command under /usr/bin/time is
 * a grandchild, which GNU time would leave running) and waits for them (3 s at most): for a bench
 * that is being interrupted.
 */
export async function stopChildren(): Promise<void> {
  const descendants = (pid: number): number[] => {
    let kids: number[] = [];
    try {
      for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
        kids = kids.concat(
          Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/children`).trim().split(/\s+/)
            .filter(Boolean).map(Number),
        );
      }
    } catch { /* gone, or no /proc */ }
    return kids.flatMap((k) => [...descendants(k), k]);
  };
  const ending = [...running].map((child) => {
    for (const pid of [...descendants(child.pid), child.pid]) {
      try {
        Deno.kill(pid, "SIGTERM");
      } catch { /* already ended */ }
    }
    return child.status;
  });
  // Until they have ended, they may still write into what the caller is about to remove.
  await Promise.race([Promise.all(ending), new Promise((r) => setTimeout(r, 3000))]);
}

let gnuTime: boolean | undefined;
function haveGnuTime(): boolean {
  if (gnuTime === undefined) {
    try {
      gnuTime = new Deno.Command("/usr/bin/time", { args: ["-f", "%M", "true"], stderr: "null" })
        .outputSync()
        .success;
    } catch {
      gnuTime = false;
    }
  }
  return gnuTime;
}

/** Best (minimum) of `n` runs of `fn`. */
export async function best<T extends { secs: number }>(
  n: number,
  fn: () => Promise<T>,
): Promise<T> {
  let min: T | undefined;
  for (let i = 0; i < n; i++) {
    const r = await fn();
    if (!min || r.secs < min.secs) min = r;
  }
  return min!;
}

/**
 * Best (minimum) of `n` runs of each command, run in turns (one of each per round): on a shared,
 * noisy machine they all see the same disturbances.
 */
export async function bestInterleaved<T extends { secs: number }>(
  n: number,
  ...cmds: (() => Promise<T>)[]
): Promise<T[]> {
  const best: (T | undefined)[] = cmds.map(() => undefined);
  for (let i = 0; i < n; i++) {
    for (const [k, cmd] of cmds.entries()) {
      const r = await cmd();
      if (!best[k] || r.secs < best[k]!.secs) best[k] = r;
    }
  }
  return best as T[];
}

/** Prints rows as a Markdown table. */
export function printTable(rows: Row[]): void {
  const head = ["what", "nixcas", "reference", "ratio"];
  const cells = rows.map((r) => [r.what, r.ours, r.reference, r.ratio]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => "| " + c.map((x, i) => x.padEnd(widths[i])).join(" | ") + " |";
  console.log(line(head));
  console.log("| " + widths.map((w) => "-".repeat(w)).join(" | ") + " |");
  for (const c of cells) console.log(line(c));
}

/** Writes `mib` MiB of pseudo-random (incompressible, deterministic) data to `path`. */
export async function writeRandomFile(path: string, mib: number, seed = 1): Promise<void> {
  const f = await Deno.open(path, { write: true, create: true, truncate: true });
  const buf = new Uint8Array(1 << 20);
  let x = seed >>> 0 || 1;
  try {
    for (let i = 0; i < mib; i++) {
      const v = new Uint32Array(buf.buffer);
      for (let j = 0; j < v.length; j++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        v[j] = x >>> 0;
      }
      for (let o = 0; o < buf.length;) o += await f.write(buf.subarray(o));
    }
  } finally {
    f.close();
  }
}

/** Seconds formatted. */
export const s = (x: number) => `${x.toFixed(3)} s`;
/** A ratio formatted. */
export const ratio = (a: number, b: number) => (a / b).toFixed(2);
