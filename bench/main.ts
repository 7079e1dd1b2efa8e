/**
 * `deno task bench`: every benchmark, printed as one table of ratios against references measured
 * in the same run (these machines are shared and noisy, so absolute numbers mean little).
 *
 *   deno task bench [--quick] [--only GROUP,...]
 *
 * Groups (all run when there is no --only): blob, import, nar, ingest, copy, trees, grpc,
 * fuse, compress, serve. `copy` (bench/copy.ts) is a closure out of a Nix store, against `nix
 * copy`.
 * `trees` is issue 17's real-shaped trees (bench/trees.ts) and has two parts that can be named on
 * their own: `real-trees` (copies of /usr/lib/python3.11 and /usr/share/doc) and `small-files`
 * (100,000 files of 32 KiB: import time and peak RSS, nar). `ingest` (bench/nar_ingest.ts) is NAR
 * ingest into SQLite against `nix-store --restore`. `compress` is bench/compress.ts. `serve`
 * (bench/serve.ts) is `nixcas serve` against nginx on a `file://` cache of the same closure.
 *
 * @module
 */
import {
  best,
  bestInterleaved,
  printTable,
  ratio,
  type Row,
  s,
  stopChildren,
  timeCommand,
  writeRandomFile,
} from "./lib.ts";
import { copyBenchmarks } from "./copy.ts";
import { ingestBenchmarks } from "./nar_ingest.ts";
import { treeBenchmarks } from "./trees.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const args = Deno.args;
if (args.includes("--help") || args.includes("-h")) {
  console.log(
    "deno task bench [--quick] [--only GROUP,...]\n" +
      "groups: blob, import, nar, ingest, copy, trees (= real-trees + small-files), grpc, fuse, " +
      "compress, serve",
  );
  Deno.exit(0);
}
const quick = args.includes("--quick");
const onlyArg = args[args.indexOf("--only") + 1];
const only = args.includes("--only") ? new Set(onlyArg.split(",")) : null;
const want = (k: string) => !only || only.has(k);
const RUNS = quick ? 1 : 3;
// The whole-command comparisons with Nix (~0.2 s each, ±20–40 ms of noise here) get more runs.
const RUNS_NIX = quick ? 1 : 9;

const tmpBase = await Deno.stat("/dev/shm").then(() => "/dev/shm").catch(() => undefined);
const work = await Deno.makeTempDir({ dir: tmpBase, prefix: "nixcas-bench-" });
const rows: Row[] = [];
const deno = Deno.execPath();
// The CLI as `deno task build` makes it (minified, split into chunks loaded on demand), which is
// what `deno task compile` packages; `deno run mod.ts` from the checkout is measured beside it.
const built = `${work}/cli`;
const nixcas = (...a: string[]) => [deno, "run", "-A", "--quiet", `${built}/mod.js`, ...a];
const nixcasSource = (...a: string[]) => [deno, "run", "-A", "--quiet", `${ROOT}/mod.ts`, ...a];

// Interrupted, the bench still removes its work directory (GiBs in tmpfs, throw-away Nix stores):
// the finally below does not run when a signal ends the process.
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(sig, async () => {
    await stopChildren();
    try {
      Deno.removeSync(work, { recursive: true });
    } catch { /* already gone */ }
    Deno.exit(130);
  });
}

let builtOnce = false;
/** Builds the CLI into `built` once, for the groups that run it. */
async function ensureBuilt(): Promise<void> {
  if (builtOnce) return;
  builtOnce = true;
  const b = await new Deno.Command("bash", {
    args: [`${ROOT}/scripts/build.sh`, built],
    env: { DENO: deno },
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!b.success) throw new Error("scripts/build.sh failed");
  // Its first run fills Deno's caches for the new files (module analysis, V8 code cache), as
  // earlier runs did for the checkout: the --quick run's single import would pay for that.
  await timeCommand(nixcas("--version"));
}

function haveCmd(c: string): boolean {
  return new Deno.Command("sh", { args: ["-c", `command -v ${c}`], stdout: "null" }).outputSync()
    .success;
}

try {
  // --- blobs in SQLite: 1 GiB streamed in and out, peak RSS (issue: foundation) ---
  if (want("blob")) {
    const mib = quick ? 256 : 1024;
    const r = await timeCommand([
      deno,
      "run",
      "-A",
      `${ROOT}/bench/sqlite_blob.ts`,
      `${work}/blob.db`,
      String(mib),
    ]);
    const out = JSON.parse(new TextDecoder().decode(r.stdout));
    for (const suffix of ["", "-wal", "-shm", "-pack"]) {
      await Deno.remove(`${work}/blob.db${suffix}`).catch(() => {});
    }
    await writeRandomFile(`${work}/ref.bin`, 256);
    const b3 = haveCmd("b3sum")
      ? await best(RUNS, () => timeCommand(["b3sum", "--num-threads", "1", `${work}/ref.bin`]))
      : null;
    await Deno.remove(`${work}/ref.bin`);
    const b3Rate = b3 ? 256 / b3.secs : NaN;
    rows.push({
      what: `SQLite blob write ${mib} MiB (MiB/s; ref b3sum 1 thread)`,
      ours: out.writeMiBs.toFixed(0),
      reference: b3Rate.toFixed(0),
      ratio: ratio(b3Rate, out.writeMiBs) + " (time)",
    });
    rows.push({
      what: `SQLite blob read ${mib} MiB (MiB/s)`,
      ours: out.readMiBs.toFixed(0),
      reference: "",
      ratio: "",
    });
    rows.push({
      what: `peak RSS, ${mib} MiB blob write+read`,
      ours: `${r.rssMiB.toFixed(0)} MiB`,
      reference: "≤ 200 MiB",
      ratio: "",
    });
  }

  // --- import vs nix-store --add; nar vs nix-store --dump ---
  if ((want("import") || want("nar")) && haveCmd("nix-store")) {
    await ensureBuilt();
    // Its own directory, removed before the next group: left behind, its 2 GB in tmpfs made the
    // FUSE read that follows 4x slower here (the VM backs newly used memory lazily).
    const dir = `${work}/import`;
    await Deno.mkdir(dir);
    try {
      await importBenchmarks(dir);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }

  // --- NAR ingest into SQLite vs nix-store --restore (issue 21), in a directory of its own ---
  if (want("ingest")) {
    if (!haveCmd("nix-store")) {
      rows.push({ what: "ingest group", ours: "skipped: no nix-store", reference: "", ratio: "" });
    } else {
      const dir = `${work}/ingest`;
      await Deno.mkdir(dir);
      try {
        rows.push(...await ingestBenchmarks({ dir, quick, runs: RUNS_NIX }));
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    }
  }

  // --- a closure out of a Nix store, nixcas copy vs nix copy (issue 21) ---
  if (want("copy")) {
    if (!haveCmd("nix")) {
      rows.push({ what: "copy group", ours: "skipped: no nix", reference: "", ratio: "" });
    } else {
      const dir = `${work}/copy`;
      await Deno.mkdir(dir);
      try {
        await ensureBuilt();
        rows.push(...await copyBenchmarks({ dir, nixcas: nixcas(), runs: quick ? 1 : 5 }));
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    }
  }

  // --- real-shaped trees and many small files (issue 17), in a directory of their own ---
  const wantTrees = (k: string) => want("trees") || want(k);
  if (wantTrees("real-trees") || wantTrees("small-files")) {
    if (!haveCmd("nix-store")) {
      rows.push({ what: "trees group", ours: "skipped: no nix-store", reference: "", ratio: "" });
    } else {
      await ensureBuilt();
      const dir = `${work}/trees`;
      await Deno.mkdir(dir);
      try {
        rows.push(
          ...await treeBenchmarks({
            dir,
            quick,
            runsNix: RUNS_NIX,
            runsSmall: RUNS,
            nixcas,
            nixcasSource,
            want: wantTrees,
          }),
        );
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    }
  }

  // --- gRPC, FUSE, compression and serve benchmarks live beside this file, print rows as JSON ---
  const scripts: [group: string, file: string][] = [
    ["grpc", "grpc"],
    ["fuse", "fuse"],
    ["fuse", "fuse_daemon"], // FUSE through a daemon-backed mount
    ["compress", "compress"],
    ["serve", "serve"],
  ];
  for (const [k, file] of scripts) {
    if (!want(k)) continue;
    const script = `${ROOT}/bench/${file}.ts`;
    if (!(await Deno.stat(script).catch(() => null))) continue;
    const out = await new Deno.Command(deno, {
      args: ["run", "-A", script, "--rows", ...(quick ? ["--quick"] : [])],
      stderr: "inherit",
    }).output();
    if (!out.success) {
      rows.push({ what: `${file} benchmark`, ours: "failed", reference: "", ratio: "" });
      continue;
    }
    const text = new TextDecoder().decode(out.stdout);
    const line = text.trim().split("\n").filter((l) => l.startsWith("[")).at(-1);
    if (line) rows.push(...JSON.parse(line) as Row[]);
  }
} finally {
  await Deno.remove(work, { recursive: true });
}

console.log(
  `nixcas benchmarks (${
    new Date().toISOString()
  }, ${Deno.build.target}, runs: best of ${RUNS}; against Nix: best of ${RUNS_NIX}, alternating)`,
);
console.log("time ratios are nixcas / reference: below 1.0 means nixcas is faster");
printTable(rows);

/** Import vs `nix-store --add` and `nar` vs `nix-store --dump`, with every file under `dir`. */
async function importBenchmarks(dir: string): Promise<void> {
  const big = `${dir}/big64`;
  await writeRandomFile(big, 64, 7);
  const tree = `${dir}/tree5000`;
  await Deno.mkdir(tree);
  for (let d = 0; d < 50; d++) {
    await Deno.mkdir(`${tree}/d${d}`);
    for (let f = 0; f < 100; f++) {
      await Deno.writeTextFile(
        `${tree}/d${d}/f${f}.txt`,
        `file ${d}/${f}\n`.repeat(1 + (f * 37) % 200),
      );
    }
  }
  const huge = `${dir}/big512`;
  await writeRandomFile(huge, quick ? 128 : 512, 9);
  let n = 0;
  const fresh = () => ({ NIXCAS_DIR: `${dir}/nixcas-${n++}` });
  const nixEnv = () => ({ NIX_REMOTE: `local?root=${dir}/nixroot-${n++}` });

  // The build, the checkout and Nix take turns, so that all three see the same disturbances
  // (the first runs after the blob group pay for memory the VM backs anew).
  for (const [label, path] of [["64 MiB file", big], ["5,000-file tree", tree]]) {
    const [ours, source, ref] = await bestInterleaved(
      RUNS_NIX,
      () => timeCommand(nixcas("import", "--quiet", path), { env: fresh() }),
      () => timeCommand(nixcasSource("import", "--quiet", path), { env: fresh() }),
      () => timeCommand(["nix-store", "--add", path], { env: nixEnv() }),
    );
    const out = (r: { stdout: Uint8Array }) => new TextDecoder().decode(r.stdout);
    if (out(ours) !== out(ref) || out(source) !== out(ref)) {
      throw new Error(`store paths differ for ${path}`);
    }
    rows.push({
      what: `import ${label} vs nix-store --add`,
      ours: s(ours.secs),
      reference: s(ref.secs),
      ratio: ratio(ours.secs, ref.secs),
    }, {
      what: `import ${label} vs nix-store --add, from the checkout (deno run mod.ts)`,
      ours: s(source.secs),
      reference: s(ref.secs),
      ratio: ratio(source.secs, ref.secs),
    });
  }
  const h = await timeCommand(nixcas("import", "--quiet", huge), { env: fresh() });
  rows.push({
    what: `peak RSS importing a ${quick ? 128 : 512} MiB file`,
    ours: `${h.rssMiB.toFixed(0)} MiB`,
    reference: "≤ 200 MiB",
    ratio: "",
  });

  if (want("nar")) {
    const env = fresh();
    const p = new TextDecoder().decode(
      (await timeCommand(nixcas("import", "--quiet", tree), { env })).stdout,
    ).trim();
    const pb = new TextDecoder().decode(
      (await timeCommand(nixcas("import", "--quiet", big), { env })).stdout,
    ).trim();
    for (const [label, sp, src] of [["5,000-file tree", p, tree], ["64 MiB file", pb, big]]) {
      const [ours, ref] = await bestInterleaved(
        RUNS_NIX,
        () => timeCommand(nixcas("nar", sp), { env, stdout: "null" }),
        () => timeCommand(["nix-store", "--dump", src], { stdout: "null" }),
      );
      rows.push({
        what: `nar ${label} vs nix-store --dump`,
        ours: s(ours.secs),
        reference: s(ref.secs),
        ratio: ratio(ours.secs, ref.secs),
      });
    }
    // Issue 22's row: a NAR of one big file, every byte checked (BLAKE3 runs at ≈5 GB/s here,
    // about the speed at which nix-store --dump copies it out).
    const gibMiB = quick ? 256 : 1024;
    const gib = `${work}/gib.bin`;
    await writeRandomFile(gib, gibMiB, 11);
    const pg = new TextDecoder().decode(
      (await timeCommand(nixcas("import", "--quiet", gib), { env })).stdout,
    ).trim();
    const [ours, ref] = await bestInterleaved(
      quick ? 1 : 5,
      () => timeCommand(nixcas("nar", pg), { env, stdout: "null" }),
      () => timeCommand(["nix-store", "--dump", gib], { stdout: "null" }),
    );
    rows.push({
      what: `nar ${
        gibMiB === 1024 ? "1 GiB" : `${gibMiB} MiB`
      } file vs nix-store --dump (goal ≤ 1.5)`,
      ours: s(ours.secs),
      reference: s(ref.secs),
      ratio: ratio(ours.secs, ref.secs),
    });
    await Deno.remove(gib);
  }
}
