/**
 * The `trees` group (issue 17): import and `nar` on trees shaped like real ones, against
 * `nix-store --add` and `nix-store --dump` of the same tree in the same run.
 *
 * - `real-trees`: copies of `/usr/lib/python3.11` and `/usr/share/doc` (a row says so when one is
 *   missing), copied into tmpfs so that neither side reads the disk.
 * - `small-files`: 100,000 files of 32 KiB (10,000 with `--quick`), import time and peak RSS
 *   (goal ≤ 256 MiB), and `nar` of the imported tree.
 *
 * Before any time is reported, nixcas's store path must equal nix-store's and its NAR bytes must
 * equal `nix-store --dump`'s (checked once, untimed): a fast wrong answer is not a result.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { bestInterleaved, ratio, type Row, s, timeCommand, track } from "./lib.ts";

/** What the group needs from bench/main.ts. */
export interface TreesContext {
  /** An empty directory (on tmpfs) that the group owns; the caller removes it. */
  dir: string;
  quick: boolean;
  /** Runs for the whole-command comparisons on the real trees. */
  runsNix: number;
  /** Runs for the small-file rows (each nix-store --add of 100,000 files takes ≈10 s). */
  runsSmall: number;
  /** The built CLI's command line. */
  nixcas: (...a: string[]) => string[];
  /** The CLI from the checkout (`deno run mod.ts`). */
  nixcasSource: (...a: string[]) => string[];
  /** Whether a sub-group was asked for. */
  want: (k: string) => boolean;
}

const REAL_TREES = ["/usr/lib/python3.11", "/usr/share/doc"];
const GiB = 1 << 30;
const MiB = 1 << 20;

/** Rows of the trees group. */
export async function treeBenchmarks(ctx: TreesContext): Promise<Row[]> {
  const rows: Row[] = [];
  if (ctx.want("real-trees")) rows.push(...await realTrees(ctx));
  if (ctx.want("small-files")) rows.push(...await smallFiles(ctx));
  return rows;
}

let serial = 0;
/** Runs `fn` with a directory that does not exist yet and is removed afterwards, come what may. */
async function scratch<T>(ctx: TreesContext, fn: (d: string) => Promise<T>): Promise<T> {
  const d = `${ctx.dir}/scratch-${serial++}`;
  try {
    return await fn(d);
  } finally {
    await Deno.remove(d, { recursive: true }).catch(() => {});
  }
}

const text = (b: Uint8Array) => new TextDecoder().decode(b).trim();

/** SHA-256 and length of a command's stdout, streamed (a NAR of 3 GiB is not held in memory). */
async function stdoutDigest(
  cmd: string[],
  env?: Record<string, string>,
): Promise<{ sha256: string; bytes: number }> {
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  track(child);
  const h = createHash("sha256");
  let bytes = 0;
  const err = new Response(child.stderr).text();
  for await (const chunk of child.stdout) {
    h.update(chunk);
    bytes += chunk.length;
  }
  const st = await child.status;
  if (!st.success) throw new Error(`${cmd.join(" ")} failed:\n${(await err).trim()}`);
  return { sha256: h.digest("hex"), bytes };
}

/** Throws unless nixcas's NAR of `storePath` is byte for byte `nix-store --dump src`. */
async function assertSameNar(
  ctx: TreesContext,
  storePath: string,
  env: Record<string, string>,
  src: string,
): Promise<void> {
  const ours = await stdoutDigest(ctx.nixcas("nar", storePath), env);
  const ref = await stdoutDigest(["nix-store", "--dump", src]);
  if (ours.sha256 !== ref.sha256 || ours.bytes !== ref.bytes) {
    throw new Error(
      `NAR of ${storePath} differs from nix-store --dump ${src}: ` +
        `${ours.bytes} bytes sha256 ${ours.sha256} vs ${ref.bytes} bytes sha256 ${ref.sha256}`,
    );
  }
}

/** Files and bytes under `dir` (regular files' sizes; symlinks counted as files). */
async function treeSize(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0, bytes = 0;
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) {
      const t = await treeSize(p);
      files += t.files;
      bytes += t.bytes;
    } else {
      files++;
      if (e.isFile) bytes += (await Deno.lstat(p)).size;
    }
  }
  return { files, bytes };
}

const count = (n: number) => n.toLocaleString("en-US");

async function realTrees(ctx: TreesContext): Promise<Row[]> {
  const rows: Row[] = [];
  for (const orig of REAL_TREES) {
    if (!(await Deno.stat(orig).catch(() => null))?.isDirectory) {
      console.error(`bench trees: ${orig} is not here, its rows are skipped`);
      rows.push({ what: `tree ${orig}`, ours: "skipped: not present", reference: "", ratio: "" });
      continue;
    }
    const name = orig.split("/").at(-1)!;
    const src = `${ctx.dir}/real/${name}`;
    await Deno.mkdir(`${ctx.dir}/real`, { recursive: true });
    // cp -a keeps symlinks as symlinks and the executable bits, which are what a NAR records.
    const cp = await new Deno.Command("cp", { args: ["-a", orig, src], stderr: "piped" }).output();
    if (!cp.success) throw new Error(`cp -a ${orig} ${src} failed: ${text(cp.stderr)}`);
    try {
      const { files, bytes } = await treeSize(src);
      const label = `${orig} (${count(files)} files, ${(bytes / MiB).toFixed(0)} MiB)`;

      // Untimed: both tools must agree on the store path and the NAR bytes.
      await scratch(ctx, async (d) => {
        const env = { NIXCAS_DIR: `${d}/nixcas` };
        const ours = text(
          (await timeCommand(ctx.nixcas("import", "--quiet", src), { env })).stdout,
        );
        const ref = text(
          (await timeCommand(["nix-store", "--add", src], {
            env: { NIX_REMOTE: `local?root=${d}/nix` },
          })).stdout,
        );
        if (ours !== ref) {
          throw new Error(`store paths differ for ${orig}: nixcas ${ours}, nix-store ${ref}`);
        }
        await assertSameNar(ctx, ours, env, src);
      });

      // Each run imports into a fresh store, removed at once (19 copies of 120 MiB would
      // otherwise pile up in tmpfs); the three take turns.
      const [ours, source, ref] = await bestInterleaved(
        ctx.runsNix,
        () =>
          scratch(ctx, (d) =>
            timeCommand(ctx.nixcas("import", "--quiet", src), {
              env: { NIXCAS_DIR: d },
              stdout: "null",
            })),
        () =>
          scratch(ctx, (d) =>
            timeCommand(ctx.nixcasSource("import", "--quiet", src), {
              env: { NIXCAS_DIR: d },
              stdout: "null",
            })),
        () =>
          scratch(ctx, (d) =>
            timeCommand(["nix-store", "--add", src], {
              env: { NIX_REMOTE: `local?root=${d}` },
              stdout: "null",
            })),
      );
      rows.push({
        what: `import ${label} vs nix-store --add`,
        ours: s(ours.secs),
        reference: s(ref.secs),
        ratio: ratio(ours.secs, ref.secs),
      }, {
        what: `import ${orig}, from the checkout (deno run mod.ts)`,
        ours: s(source.secs),
        reference: s(ref.secs),
        ratio: ratio(source.secs, ref.secs),
      });

      await scratch(ctx, async (d) => {
        const env = { NIXCAS_DIR: d };
        const p = text((await timeCommand(ctx.nixcas("import", "--quiet", src), { env })).stdout);
        const [nar, dump] = await bestInterleaved(
          ctx.runsNix,
          () => timeCommand(ctx.nixcas("nar", p), { env, stdout: "null" }),
          () => timeCommand(["nix-store", "--dump", src], { stdout: "null" }),
        );
        rows.push({
          what: `nar ${orig} vs nix-store --dump`,
          ours: s(nar.secs),
          reference: s(dump.secs),
          ratio: ratio(nar.secs, dump.secs),
        });
      });
    } finally {
      await Deno.remove(src, { recursive: true });
    }
  }
  return rows;
}

/** MemAvailable from /proc/meminfo, in bytes (Infinity where there is none). */
function memAvailable(): number {
  try {
    const m = Deno.readTextFileSync("/proc/meminfo").match(/^MemAvailable:\s+(\d+) kB/m);
    return m ? Number(m[1]) * 1024 : Infinity;
  } catch {
    return Infinity;
  }
}

const FILE_SIZE = 32 * 1024;
const PER_DIR = 1000;

/**
 * Writes `n` files of 32 KiB in directories of 1,000: every file's content differs (a slice of a
 * random pool at its own offset, stamped with its number), so no layer can deduplicate them.
 */
async function writeSmallFiles(root: string, n: number): Promise<void> {
  const pool = new Uint8Array(2 * MiB);
  const v = new Uint32Array(pool.buffer);
  let x = 12345;
  for (let j = 0; j < v.length; j++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    v[j] = x >>> 0;
  }
  await Deno.mkdir(root);
  const writes: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const dir = `${root}/d${String(Math.floor(i / PER_DIR)).padStart(3, "0")}`;
    if (i % PER_DIR === 0) await Deno.mkdir(dir);
    const off = (i * 4099) % (pool.length - FILE_SIZE);
    const data = pool.slice(off, off + FILE_SIZE);
    new DataView(data.buffer).setUint32(0, i);
    writes.push(Deno.writeFile(`${dir}/f${i % PER_DIR}`, data));
    if (writes.length >= 64) await Promise.all(writes.splice(0));
  }
  await Promise.all(writes);
}

async function smallFiles(ctx: TreesContext): Promise<Row[]> {
  const n = ctx.quick ? 10_000 : 100_000;
  const treeBytes = n * FILE_SIZE;
  const label = `${count(n)} files of 32 KiB (${(treeBytes / GiB).toFixed(1)} GiB)`;
  // At once in memory: the tree, one store on each side (nixcas's removed before Nix's run), and
  // the importer's peak (today ≈2.2x the tree; the goal is 256 MiB), with 2 GiB to spare for the
  // other users of this machine.
  const need = 2 * treeBytes + Math.max(2.5 * treeBytes, treeBytes) + 2 * GiB;
  const avail = memAvailable();
  if (avail < need) {
    const msg = `needs ${(need / GiB).toFixed(1)} GiB of memory, ${
      (avail / GiB).toFixed(1)
    } GiB available`;
    console.error(`bench trees: small-file rows skipped: ${msg}`);
    return [{ what: `import ${label}`, ours: `skipped: ${msg}`, reference: "", ratio: "" }];
  }
  const rows: Row[] = [];
  const src = `${ctx.dir}/small/files`;
  await Deno.mkdir(`${ctx.dir}/small`);
  try {
    await writeSmallFiles(src, n);
    // Each side gets a fresh store per run, removed before the other side runs, and they take
    // turns; the last nixcas store is kept for the nar rows.
    const keep = `${ctx.dir}/small/nixcas`;
    let bestOurs = Infinity, bestRef = Infinity, maxRss = 0, refRss = 0;
    let ourPath = "", refPath = "";
    for (let i = 0; i < ctx.runsSmall; i++) {
      const last = i === ctx.runsSmall - 1;
      await Deno.remove(keep, { recursive: true }).catch(() => {});
      const o = await timeCommand(ctx.nixcas("import", "--quiet", src), {
        env: { NIXCAS_DIR: keep },
      });
      if (!last) await Deno.remove(keep, { recursive: true });
      bestOurs = Math.min(bestOurs, o.secs);
      maxRss = Math.max(maxRss, o.rssMiB);
      ourPath = text(o.stdout);
      const r = await scratch(
        ctx,
        (d) => timeCommand(["nix-store", "--add", src], { env: { NIX_REMOTE: `local?root=${d}` } }),
      );
      bestRef = Math.min(bestRef, r.secs);
      refRss = Math.max(refRss, r.rssMiB);
      refPath = text(r.stdout);
      if (ourPath !== refPath) {
        throw new Error(`store paths differ for ${src}: nixcas ${ourPath}, nix-store ${refPath}`);
      }
    }
    const env = { NIXCAS_DIR: keep };
    await assertSameNar(ctx, ourPath, env, src);
    rows.push({
      what: `import ${label} vs nix-store --add`,
      ours: s(bestOurs),
      reference: s(bestRef),
      ratio: ratio(bestOurs, bestRef),
    }, {
      what: `peak RSS importing ${count(n)} files of 32 KiB (nix-store --add: ${
        refRss.toFixed(0)
      } MiB)`,
      ours: `${maxRss.toFixed(0)} MiB`,
      reference: "≤ 256 MiB (goal)",
      ratio: maxRss <= 256 ? "meets goal" : `${(maxRss / 256).toFixed(1)}x goal`,
    });
    const [nar, dump] = await bestInterleaved(
      ctx.runsSmall,
      () => timeCommand(ctx.nixcas("nar", ourPath), { env, stdout: "null" }),
      () => timeCommand(["nix-store", "--dump", src], { stdout: "null" }),
    );
    rows.push({
      what: `nar ${count(n)} files of 32 KiB vs nix-store --dump`,
      ours: s(nar.secs),
      reference: s(dump.secs),
      ratio: ratio(nar.secs, dump.secs),
    });
  } finally {
    await Deno.remove(`${ctx.dir}/small`, { recursive: true });
  }
  return rows;
}
