/**
 * FUSE benchmark: sequential read of a 256 MiB file through `nixcas mount` vs `cat` of the same
 * file on tmpfs, and stat of 10,000 files through the mount vs the source directory. Each is the
 * first access after mounting (nothing cached by the kernel for the mount).
 *
 *   deno run -A bench/fuse.ts [--quick] [--rows]
 *
 * @module
 */
import { type Row, timeCommand, writeRandomFile } from "./lib.ts";

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
try {
  await writeRandomFile(`${work}/big`, MIB, 3);
  await Deno.mkdir(`${work}/tree`);
  for (let d = 0; d < FILES / 100; d++) {
    await Deno.mkdir(`${work}/tree/d${d}`);
    for (let f = 0; f < 100; f++) {
      await Deno.writeTextFile(`${work}/tree/d${d}/f${f}`, `${d} ${f}\n`);
    }
  }
  const bigBase = await nixcasImport(`${work}/big`);
  const treeBase = await nixcasImport(`${work}/tree`);
  await Deno.mkdir(mnt);
  mount = new Deno.Command(deno, {
    args: ["run", "-A", "--quiet", `${ROOT}/mod.ts`, "mount", mnt],
    env,
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = mount.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes("mounted the store")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`mount failed: ${seen}`);
    seen += value;
  }
  (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })();

  const viaMount = await timeCommand(["cat", `${mnt}/${bigBase}`], { stdout: "null" });
  const viaTmpfs = await timeCommand(["cat", `${work}/big`], { stdout: "null" });
  rows.push({
    what: `FUSE sequential read ${MIB} MiB vs cat on tmpfs (MiB/s)`,
    ours: (MIB / viaMount.secs).toFixed(0),
    reference: (MIB / viaTmpfs.secs).toFixed(0),
    ratio: (viaMount.secs / viaTmpfs.secs).toFixed(2) + " (time)",
  });
  const statMount = await timeCommand(["find", `${mnt}/${treeBase}`, "-printf", "%s\\n"], {
    stdout: "null",
  });
  const statSrc = await timeCommand(["find", `${work}/tree`, "-printf", "%s\\n"], {
    stdout: "null",
  });
  rows.push({
    what: `FUSE stat of ${FILES} files vs the source directory`,
    ours: `${statMount.secs.toFixed(3)} s`,
    reference: `${statSrc.secs.toFixed(3)} s`,
    ratio: (statMount.secs / statSrc.secs).toFixed(2),
  });
} finally {
  if (mount) {
    mount.kill("SIGTERM");
    await mount.status;
  }
  await Deno.remove(work, { recursive: true });
}

for (const r of rows) {
  console.log(`${r.what}: nixcas ${r.ours}, reference ${r.reference}, ratio ${r.ratio}`);
}
if (Deno.args.includes("--rows")) console.log(JSON.stringify(rows));
