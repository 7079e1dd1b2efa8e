/**
 * Test helpers: `nixcas daemon` (the CLI, memory backends) in its own process, optionally with a
 * file descriptor limit, and raw connections to it.
 *
 * @module
 */
import { createClient } from "@connectrpc/connect";
import { ROOT, serviceFlags } from "../prereq.ts";
import { stopChild } from "./helpers.ts";
import { createTransport, type RemoteTransport } from "../../src/backends/grpc/transport.ts";
import { BlobService } from "../../src/gen/tvix/castore/protos/rpc_blobstore_pb.ts";

/** A running `nixcas daemon`. */
export interface CliDaemon {
  /** `host:port` or `unix:/path`, as it printed. */
  address: string;
  /** The `grpc+…` URL of that address (`https` when `tls`). */
  url: string;
  /** Its process id (prlimit execs it: the same process). */
  pid: number;
  /** Everything it wrote to stderr so far. */
  stderr(): string;
  /** True while it runs. */
  alive(): boolean;
  /** SIGTERM, then SIGKILL after 15 s; resolves with the exit status. */
  stop(): Promise<Deno.CommandStatus>;
}

/**
 * Starts `nixcas daemon -l LISTEN ARGS` over memory backends; `nofile` runs it under
 * `prlimit --nofile=N:N`. Resolves once it listens.
 */
export async function startCliDaemon(
  listen: string,
  args: string[] = [],
  opts: { nofile?: number; tls?: boolean; env?: Record<string, string> } = {},
): Promise<CliDaemon> {
  const deno = [
    Deno.execPath(),
    "run",
    "-A",
    "--quiet",
    `${ROOT}/mod.ts`,
    "daemon",
    "-l",
    listen,
    ...serviceFlags("memory://"),
    ...args,
  ];
  const argv = opts.nofile ? ["prlimit", `--nofile=${opts.nofile}:${opts.nofile}`, ...deno] : deno;
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    env: opts.env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let alive = true;
  const status = child.status.then((s) => {
    alive = false;
    return s;
  });
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  const killer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  let address = "";
  while (!address) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += value;
    address = /listening (\S+)/.exec(seen)?.[1] ?? "";
  }
  clearTimeout(killer);
  (async () => {
    for (let r = await reader.read(); !r.done; r = await reader.read()) seen += r.value;
  })();
  if (!address) {
    await status;
    throw new Error(`daemon did not start: ${seen}`);
  }
  const url = address.startsWith("unix:")
    ? `grpc+unix://${address.slice(5)}`
    : `grpc+${opts.tls ? "https" : "http"}://${address}`;
  return {
    address,
    url,
    pid: child.pid,
    stderr: () => seen,
    alive: () => alive,
    stop: () => stopChild(child, status, () => alive),
  };
}

/** Opens a raw connection to `host:port` or `unix:/path`. */
export function rawConnect(address: string): Promise<Deno.Conn> {
  if (address.startsWith("unix:")) {
    return Deno.connect({ transport: "unix", path: address.slice(5) });
  }
  const colon = address.lastIndexOf(":");
  return Deno.connect({
    hostname: address.slice(0, colon).replace(/^\[|\]$/g, ""),
    port: Number(address.slice(colon + 1)),
  });
}

/** Resolves true when the peer closes `conn` (a read ends or fails), false after `ms`. */
export async function closedWithin(conn: Deno.Conn, ms: number): Promise<boolean> {
  const buf = new Uint8Array(4096);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
  const closed = (async () => {
    try {
      while ((await conn.read(buf)) !== null) { /* settings and the like */ }
    } catch { /* reset */ }
    return true as const;
  })();
  const r = await Promise.race([closed, timeout]);
  clearTimeout(timer);
  return r;
}

/**
 * Puts a small blob and stats it through our client with a deadline of `timeoutMs` per call;
 * returns the digest. The transport is closed afterwards.
 */
export async function putAndStat(
  url: string,
  data: Uint8Array,
  timeoutMs = 5000,
  transport?: RemoteTransport,
): Promise<Uint8Array> {
  const t = transport ?? createTransport(url);
  try {
    const c = createClient(BlobService, t.transport);
    const r = await c.put(
      (async function* () {
        yield { data };
      })(),
      { timeoutMs },
    );
    await c.stat({ digest: r.digest }, { timeoutMs });
    return r.digest;
  } finally {
    if (!transport) t.close();
  }
}
