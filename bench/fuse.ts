/**
 * FUSE benchmark: sequential read of a 256 MiB file through `nixcas mount` (right after a CLI
 * import, and again after a remount) vs `cat` of the same file on tmpfs, and stat of 10,000 files
 * through the mount vs the source directory. "cold" is the first access after mounting (nothing
 * cached by the kernel for the mount), "warm" the second. Then an in-process mount over memory
 * services, which measures the FUSE transport without the SQLite backend.
 *
 *   deno run -A bench/fuse.ts [--quick] [--rows]
 *
 * @module
 */
import { type Row, timeCommand, writeRandomFile } from "./lib.ts";
import { startNixcas } from "../tests/prereq.ts";
import { openStore } from "../src/backends/open.ts";
import { mountStore } from "../src/fuse/mod.ts";
import { importStorePath } from "../src/store/import.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const quick = Deno.args.includes("--quick");
const MIB = quick ? 64 : 256;
const FILES = quick ? 2_000 : 10_000;
const deno = Deno.execPath();
const tmpBase = await Deno.stat("/dev/shm").then(() => "/dev/shm").catch(() => undefined);
const work = await Deno.makeTempDir({ dir: tmpBase, prefix: "nixcas-fusebench-" });
const env = { NIXCAS_DIR: `${work}/store` };
const rows: Row[] = [];

async function nixcasImport(path: string): Promise<string> {
  const r = await timeCommand([
    deno,
    "run",
    "-A",
    "--quiet",
    `${ROOT}/mod.ts`,
    "import",
    "--quiet",
    path,
  ], {
    env,
  });
  return new TextDecoder().decode(r.stdout).trim().slice("/nix/store/".length);
}

let mount: Deno.ChildProcess | null = null;
const mnt = `${work}/mnt`;

/** `nixcas mount` of the store at `mnt`; resolves once mounted. */
async function startMount(): Promise<Deno.ChildProcess> {
  return (await startNixcas(["mount", mnt], "mounted the store", env)).child;
}

/** Stops the mount started last (SIGTERM: it unmounts and exits). */
async function stopMount(): Promise<void> {
  if (!mount) return;
  const m = mount;
  mount = null;
  m.kill("SIGTERM");
  await m.status;
}
try {
  await writeRandomFile(`${work}/big`, MIB, 3);
  await Deno.mkdir(`${work}/tree`);
  for (let d = 0; d < FILES / 100; d++) {
    await Deno.mkdir(`${work}/tree/d${d}`);
    for (let f = 0; f < 100; f++) {
      await Deno.writeTextFile(`${work}/tree/d${d}/f${f}`, `${d} ${f}\n`);
    }
  }
  const find = (dir: string) => timeCommand(["find", dir, "-printf", "%s\\n"], { stdout: "null" });
  const tmpfs = await timeCommand(["cat", `${work}/big`], { stdout: "null" });
  const src = await find(`${work}/tree`);
  // The CLI's own store first: the in-process memory store below holds the file and its pages
  // in this process, and the reads of a mount started after that ran at a quarter of the speed
  // (this VM backs memory it has not used before lazily).
  const bigBase = await nixcasImport(`${work}/big`);
  const treeBase = await nixcasImport(`${work}/tree`);
  await Deno.mkdir(mnt);
  mount = await startMount();
  const viaMount = await timeCommand(["cat", `${mnt}/${bigBase}`], { stdout: "null" });
  const viaTmpfs = await timeCommand(["cat", `${work}/big`], { stdout: "null" });
  rows.push({
    what: `FUSE sequential read ${MIB} MiB vs cat on tmpfs (MiB/s)`,
    ours: (MIB / viaMount.secs).toFixed(0),
    reference: (MIB / viaTmpfs.secs).toFixed(0),
    ratio: (viaMount.secs / viaTmpfs.secs).toFixed(2) + " (time)",
  });
  const statMount = await find(`${mnt}/${treeBase}`);
  const statMountWarm = await find(`${mnt}/${treeBase}`);
  const statSrc = await find(`${work}/tree`);
  rows.push({
    what: `FUSE stat of ${FILES} files vs the source directory, cold`,
    ours: `${statMount.secs.toFixed(3)} s`,
    reference: `${statSrc.secs.toFixed(3)} s`,
    ratio: (statMount.secs / statSrc.secs).toFixed(2),
  });
  rows.push({
    what: `FUSE stat of ${FILES} files vs the source directory, warm`,
    ours: `${statMountWarm.secs.toFixed(3)} s`,
    reference: `${statSrc.secs.toFixed(3)} s`,
    ratio: (statMountWarm.secs / statSrc.secs).toFixed(2),
  });
  // A new mount (nothing in the kernel's cache) reading the blob again.
  await stopMount();
  mount = await startMount();
  const again = await timeCommand(["cat", `${mnt}/${bigBase}`], { stdout: "null" });
  const againTmpfs = await timeCommand(["cat", `${work}/big`], { stdout: "null" });
  rows.push({
    what: `FUSE sequential read ${MIB} MiB after a remount vs cat on tmpfs (MiB/s)`,
    ours: (MIB / again.secs).toFixed(0),
    reference: (MIB / againTmpfs.secs).toFixed(0),
    ratio: (again.secs / againTmpfs.secs).toFixed(2) + " (time)",
  });
  await stopMount();

  // The transport alone: memory services served in this process (the readers are cat and
  // find in other processes, so the serving thread never waits on itself).
  const mem = await openStore("memory://");
  const memMnt = `${work}/memmnt`;
  await Deno.mkdir(memMnt);
  try {
    const big = (await importStorePath(`${work}/big`, mem)).storePath.toString();
    const tree = (await importStorePath(`${work}/tree`, mem)).storePath.toString();
    const h = await mountStore({ mountpoint: memMnt, ...mem });
    try {
      const cold = await timeCommand(["cat", `${memMnt}/${big}`], { stdout: "null" });
      rows.push({
        what: `FUSE transport (memory backend) read ${MIB} MiB vs tmpfs (MiB/s)`,
        ours: (MIB / cold.secs).toFixed(0),
        reference: (MIB / tmpfs.secs).toFixed(0),
        ratio: (cold.secs / tmpfs.secs).toFixed(2) + " (time)",
      });
      const c = await find(`${memMnt}/${tree}`);
      const w = await find(`${memMnt}/${tree}`);
      rows.push({
        what: `FUSE transport (memory backend) stat of ${FILES} files, cold / warm`,
        ours: `${c.secs.toFixed(3)} s / ${w.secs.toFixed(3)} s`,
        reference: `${src.secs.toFixed(3)} s`,
        ratio: `${(c.secs / src.secs).toFixed(2)} / ${(w.secs / src.secs).toFixed(2)}`,
      });
    } finally {
      await h.unmount({ force: true });
    }
  } finally {
    await mem.close();
  }
} finally {
  await stopMount();
  await Deno.remove(work, { recursive: true });
}

for (const r of rows) {
  console.log(`${r.what}: nixcas ${r.ours}, reference ${r.reference}, ratio ${r.ratio}`);
}
if (Deno.args.includes("--rows")) console.log(JSON.stringify(rows));
