/**
 * Test helpers for the daemon: daemons in their own process.
 *
 * @module
 */

/** A daemon running in its own process (tests/server/daemon_main.ts). */
export interface DaemonProcess {
  /** The address it printed. */
  address: string;
  /** The child process. */
  child: Deno.ChildProcess;
  /** Everything it wrote to stderr so far (for diagnosing a death). */
  stderr: () => string;
  /** True while it runs. */
  alive: () => boolean;
  /** Exit status once it exited. */
  status: Promise<Deno.CommandStatus>;
  /** Sends SIGTERM and waits for the exit. */
  stop: () => Promise<Deno.CommandStatus>;
}

const MAIN = new URL("./daemon_main.ts", import.meta.url).pathname;

/** Starts tests/server/daemon_main.ts listening on `listen`; resolves once it listens. */
export async function startDaemonProcess(
  listen: string,
  extraArgs: string[] = [],
): Promise<DaemonProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MAIN, listen, ...extraArgs],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let err = "";
  (async () => {
    const dec = new TextDecoder();
    for await (const c of child.stderr) err += dec.decode(c);
  })();
  let alive = true;
  const status = child.status.then((s) => {
    alive = false;
    return s;
  });
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  let address = "";
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, 30_000);
  while (!address) {
    const { value, done } = await lines.read();
    if (done) break;
    out += value;
    const m = /listening (\S+)/.exec(out);
    if (m) address = m[1];
  }
  clearTimeout(timer);
  // Keep draining stdout so the child never blocks on a full pipe.
  (async () => {
    try {
      while (!(await lines.read()).done) { /* drain */ }
    } catch { /* closed */ }
  })();
  if (!address) {
    await status;
    throw new Error(`daemon did not start: ${out}\n${err}`);
  }
  return {
    address,
    child,
    stderr: () => err,
    alive: () => alive,
    status,
    stop: () => stopChild(child, status, () => alive),
  };
}

/** Stops a child process: SIGTERM while it is alive, SIGKILL if it has not ended in 15 s. */
export async function stopChild(
  child: Deno.ChildProcess,
  status: Promise<Deno.CommandStatus>,
  alive: () => boolean,
): Promise<Deno.CommandStatus> {
  if (alive()) {
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
  }
  const t = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, 15_000);
  const s = await status;
  clearTimeout(t);
  return s;
}
