/**
 * FUSE sequential read through a daemon-backed mount: `nixcas daemon` (memory or SQLite
 * backend) on a unix socket, `nixcas mount` with grpc+unix:// services, `cat` of a 256 MiB
 * file. The memory daemon lists chunks (the client reads chunk by chunk, ahead of the reader);
 * the SQLite daemon does not yet (one Read stream per reader, verified whole, spooled).
 *
 *   deno run -A bench/fuse_daemon.ts [--quick] [--rows]
 *
 * @module
 */
import { type Row, timeCommand, writeRandomFile } from "./lib.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const quick = Deno.args.includes("--quick");
const MIB = quick ? 64 : 256;
const deno = Deno.execPath();
const tmpBase = await Deno.stat("/dev/shm").then(() => "/dev/shm").catch(() => undefined);
const work = await Deno.makeTempDir({ dir: tmpBase, prefix: "nixcas-fusedaemon-" });
const rows: Row[] = [];

/** Spawns a nixcas command and waits until its stderr or stdout shows `ready`. */
async function spawnUntil(args: string[], ready: RegExp, env: Record<string, string>) {
  const child = new Deno.Command(deno, {
    args: ["run", "-A", "--quiet", `${ROOT}/mod.ts`, ...args],
    env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let seen = "";
  const drain = async (s: ReadableStream<Uint8Array>) => {
    for await (const t of s.pipeThrough(new TextDecoderStream())) seen += t;
  };
  drain(child.stdout);
  drain(child.stderr);
  const until = Date.now() + 30_000;
  while (!ready.test(seen)) {
    if (Date.now() > until) {
      child.kill("SIGKILL");
      throw new Error(`${args[0]} did not start: ${seen}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return child;
}

try {
  await writeRandomFile(`${work}/big`, MIB, 5);
  const tmpfs = await timeCommand(["cat", `${work}/big`], { stdout: "null" });
  for (const backend of ["memory", "sqlite"]) {
    const sock = `${work}/${backend}.sock`;
    const store = backend === "memory" ? "memory://" : `sqlite://${work}/${backend}.db`;
    const env = { NIXCAS_DIR: `${work}/nixcas-${backend}` };
    const daemon = await spawnUntil(
      [
        "daemon",
        "--listen-address",
        `unix:${sock}`,
        "--blob-service-addr",
        store,
        "--directory-service-addr",
        store,
        "--path-info-service-addr",
        store,
      ],
      /listening|serving/i,
      env,
    );
    const url = `grpc+unix://${sock}`;
    const flags = [
      "--blob-service-addr",
      url,
      "--directory-service-addr",
      url,
      "--path-info-service-addr",
      url,
    ];
    let mount: Deno.ChildProcess | null = null;
    const mnt = `${work}/mnt-${backend}`;
    try {
      const imp = await timeCommand(
        [
          deno,
          "run",
          "-A",
          "--quiet",
          `${ROOT}/mod.ts`,
          "import",
          "--quiet",
          ...flags,
          `${work}/big`,
        ],
        { env },
      );
      const base = new TextDecoder().decode(imp.stdout).trim().slice("/nix/store/".length);
      await Deno.mkdir(mnt);
      mount = await spawnUntil(["mount", ...flags, mnt], /mounted the store/, env);
      const r = await timeCommand(["cat", `${mnt}/${base}`], { stdout: "null" });
      rows.push({
        what:
          `FUSE sequential read through a daemon-backed mount (${backend} daemon), ${MIB} MiB (MiB/s)`,
        ours: (MIB / r.secs).toFixed(0),
        reference: (MIB / tmpfs.secs).toFixed(0),
        ratio: (r.secs / tmpfs.secs).toFixed(2) + " (time)",
      });
    } finally {
      if (mount) {
        mount.kill("SIGTERM");
        await mount.status;
      }
      daemon.kill("SIGTERM");
      await daemon.status;
    }
  }
} finally {
  await Deno.remove(work, { recursive: true });
}

for (const r of rows) {
  console.log(`${r.what}: nixcas ${r.ours}, reference ${r.reference}, ratio ${r.ratio}`);
}
if (Deno.args.includes("--rows")) console.log(JSON.stringify(rows));
