/**
 * The `ingest` group: NAR ingest into the default SQLite store (a library call, no CLI) against
 * `nix-store --restore DIR < nar`, both reading the NAR from stdin redirected from a file in the
 * same run; a 1 GiB NAR of one file and the NAR of a 5,000-file tree, and the peak RSS.
 *
 * Run as a script it is the child that is timed: `deno run -A bench/nar_ingest.ts < NAR` ingests
 * its stdin into `sqlite://$NIXCAS_DIR/store.db` and prints `{narSize, secs}` as JSON.
 *
 * @module
 */
import { bestInterleaved, ratio, type Row, s, timeCommand, writeRandomFile } from "./lib.ts";

const SELF = new URL(import.meta.url).pathname;

/** Stdin in fresh 1 MiB reads (ingest keeps what it is given until it is hashed). */
async function* stdinChunks(): AsyncGenerator<Uint8Array> {
  for (;;) {
    const buf = new Uint8Array(1 << 20);
    const n = await Deno.stdin.read(buf);
    if (n === null) return;
    yield n === buf.length ? buf : buf.subarray(0, n);
  }
}

if (import.meta.main) {
  const { preloadLibcrypto } = await import("../src/hash/sha256.ts");
  preloadLibcrypto(); // on another thread, while the store opens
  const { openStore } = await import("../src/backends/open.ts");
  const { ingestNar } = await import("../src/nar/ingest.ts");
  const store = await openStore();
  const t0 = performance.now();
  // Deno.stdin itself by default (the reader path); --chunks and --readable for comparison.
  const source = Deno.args.includes("--readable")
    ? Deno.stdin.readable
    : Deno.args.includes("--chunks")
    ? stdinChunks()
    : Deno.stdin;
  const r = await ingestNar(source, store.blobs, store.directories, {
    name: new TextEncoder().encode("ingested"),
  });
  const secs = (performance.now() - t0) / 1000;
  await store.close();
  console.log(JSON.stringify({ narSize: r.narSize, secs }));
}

/** Options of {@linkcode ingestBenchmarks}. */
export interface IngestBenchOptions {
  /** A fresh directory for the NARs, stores and restored trees; the caller removes it. */
  dir: string;
  /** Smaller NAR (256 MiB) and one run. */
  quick: boolean;
  /** Runs of each command, interleaved. */
  runs: number;
}

/** `sh -c` running `cmd` with stdin from `file` (exec: GNU time sees the command's own RSS). */
function withStdin(file: string, cmd: string[]): string[] {
  return ["sh", "-c", 'f=$1; shift; exec "$@" < "$f"', "sh", file, ...cmd];
}

/** Ingest vs `nix-store --restore`, for a NAR of one big file and one of a 5,000-file tree. */
export async function ingestBenchmarks(opts: IngestBenchOptions): Promise<Row[]> {
  const { dir, quick, runs } = opts;
  const rows: Row[] = [];
  const mib = quick ? 256 : 1024;
  const dump = async (path: string, nar: string) => {
    const r = await new Deno.Command("sh", {
      args: ["-c", 'nix-store --dump "$0" > "$1"', path, nar],
    }).output();
    if (!r.success) throw new Error(`nix-store --dump ${path} failed`);
  };
  await writeRandomFile(`${dir}/big`, mib, 11);
  await dump(`${dir}/big`, `${dir}/big.nar`);
  await Deno.remove(`${dir}/big`);
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
  await dump(tree, `${dir}/tree.nar`);
  await Deno.remove(tree, { recursive: true });

  let n = 0;
  const deno = Deno.execPath();
  for (const [label, nar] of [[`${mib} MiB file`, "big.nar"], ["5,000-file tree", "tree.nar"]]) {
    const path = `${dir}/${nar}`;
    const size = (await Deno.stat(path)).size;
    // Each run writes a fresh store or tree, removed straight after (GiBs in tmpfs).
    const ours = async () => {
      const store = `${dir}/store-${n++}`;
      try {
        const r = await timeCommand(withStdin(path, [deno, "run", "-A", SELF]), {
          env: { NIXCAS_DIR: store },
        });
        const out = JSON.parse(new TextDecoder().decode(r.stdout));
        if (out.narSize !== size) throw new Error(`ingested ${out.narSize} bytes of ${size}`);
        return r;
      } finally {
        await Deno.remove(store, { recursive: true }).catch(() => {});
      }
    };
    const nix = async () => {
      const out = `${dir}/restored-${n++}`;
      try {
        return await timeCommand(withStdin(path, ["nix-store", "--restore", out]));
      } finally {
        await Deno.remove(out, { recursive: true }).catch(() => {});
      }
    };
    const [a, b] = await bestInterleaved(runs, ours, nix);
    rows.push({
      what: `ingest NAR of a ${label} (${(size / 2 ** 20).toFixed(0)} MiB) vs nix-store --restore`,
      ours: s(a.secs),
      reference: s(b.secs),
      ratio: ratio(a.secs, b.secs),
    }, {
      what: `peak RSS, ingest NAR of a ${label} (nix-store --restore)`,
      ours: `${a.rssMiB.toFixed(0)} MiB`,
      reference: `${b.rssMiB.toFixed(0)} MiB`,
      ratio: "",
    });
  }
  await Deno.remove(`${dir}/big.nar`);
  await Deno.remove(`${dir}/tree.nar`);
  return rows;
}
