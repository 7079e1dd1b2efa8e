/**
 * Compression throughput: decompressing a 64 MiB NAR-like input (the NAR of a library folder,
 * cut to size) from xz, zstd and bzip2 in process, against the Debian `xz -d`, `zstd -d` and
 * `bzip2 -d` on the same file in turns; compressing at the default levels against the same
 * commands; and peak RSS of a process decompressing the xz file.
 *
 *   deno run -A bench/compress.ts [--quick] [--rows]
 *
 * `--quick` uses 16 MiB; `--rows` adds a JSON line of rows for bench/main.ts.
 *
 * @module
 */
import { compress, type Compression, decompress } from "../src/compress/compression.ts";
import { bestInterleaved, printTable, ratio, type Row, timeCommand } from "./lib.ts";

const quick = Deno.args.includes("--quick");
const MIB = quick ? 16 : 64;
const RUNS = quick ? 1 : 3;
const XZ_MIB = quick ? 2 : 8; // xz -6 compresses at ≈2 MiB/s
const rows: Row[] = [];

function have(cmd: string): boolean {
  return new Deno.Command("sh", { args: ["-c", `command -v ${cmd}`], stdout: "null" })
    .outputSync().success;
}

/** The input: a real NAR of shared libraries where Nix is installed, else a tar of them. */
async function makeInput(path: string, mib: number): Promise<string> {
  const isDir = (d: string) => {
    try {
      return Deno.statSync(d).isDirectory;
    } catch {
      return false;
    }
  };
  const dir = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"]
    .find(isDir) ?? "/usr";
  const what = have("nix-store") ? `nix-store --dump ${dir}` : `tar cf - ${dir} 2>/dev/null`;
  const out = await new Deno.Command("sh", {
    args: ["-c", `${what} | head -c ${mib << 20} > ${path}`],
  }).output();
  if (!out.success) throw new Error(`making the input failed: ${what}`);
  return have("nix-store") ? `NAR of ${dir}` : `tar of ${dir}`;
}

async function fileSize(path: string): Promise<number> {
  return (await Deno.stat(path)).size;
}

/** Seconds to run `stream` to the end, counting its bytes. */
async function drain(stream: ReadableStream<Uint8Array>): Promise<{ secs: number; n: number }> {
  const t0 = performance.now();
  let n = 0;
  for await (const c of stream) n += c.length;
  return { secs: (performance.now() - t0) / 1000, n };
}

const BIN: Record<Exclude<Compression, "none">, [cmd: string, ext: string]> = {
  xz: ["xz", "xz"],
  zstd: ["zstd", "zst"],
  bzip2: ["bzip2", "bz2"],
};

const work = await Deno.makeTempDir({ prefix: "nixcas-bench-compress-" });
try {
  if (!have("xz") || !have("zstd") || !have("bzip2")) {
    rows.push({
      what: "compress group",
      ours: "skipped: no xz/zstd/bzip2",
      reference: "",
      ratio: "",
    });
  } else {
    const input = `${work}/input`;
    const label = await makeInput(input, MIB);
    const size = await fileSize(input);
    const mib = size / 1048576;
    for (const kind of ["xz", "zstd", "bzip2"] as const) {
      const [cmd, ext] = BIN[kind];
      const file = `${input}.${ext}`;
      await new Deno.Command("sh", { args: ["-c", `${cmd} -c ${input} > ${file}`] }).output();
      const [ours, ref] = await bestInterleaved(
        RUNS,
        async () => {
          const f = await Deno.open(file);
          const r = await drain(decompress(kind, f.readable));
          if (r.n !== size) throw new Error(`${kind}: ${r.n} bytes decompressed, not ${size}`);
          return r;
        },
        async () => ({
          secs: (await timeCommand([cmd, "-dc", file], { stdout: "null" })).secs,
          n: 0,
        }),
      );
      const ratioText = (size / (await fileSize(file))).toFixed(2);
      rows.push({
        what: `decompress ${kind}, ${MIB} MiB ${label} (×${ratioText}; MiB/s; ref ${cmd} -d)`,
        ours: (mib / ours.secs).toFixed(0),
        reference: (mib / ref.secs).toFixed(0),
        ratio: ratio(ours.secs, ref.secs),
      });
    }

    // Compression at the default levels (xz -6 on a slice: it runs at ≈2 MiB/s).
    const xzInput = `${work}/xz-input`;
    await new Deno.Command("sh", {
      args: ["-c", `head -c ${XZ_MIB << 20} ${input} > ${xzInput}`],
    }).output();
    const cases: [Exclude<Compression, "none">, string, number, string[], number][] = [
      ["xz", xzInput, 1, ["-6", "-T1"], RUNS],
      ["zstd", input, 1, ["-3"], RUNS],
      ["bzip2", input, 1, ["-9"], RUNS],
    ];
    if (!quick) {
      // liblzma splits the input into blocks of 3 × the dictionary (24 MiB at -6) for its
      // threads: two threads need 48 MiB to have two blocks. One run: ≈15 s each.
      const mtInput = `${work}/xz-mt-input`;
      await new Deno.Command("sh", { args: ["-c", `head -c ${48 << 20} ${input} > ${mtInput}`] })
        .output();
      cases.push(["xz", mtInput, 2, ["-6", "-T2"], 1]);
    }
    for (const [kind, path, threads, flags, runs] of cases) {
      const [cmd] = BIN[kind];
      const n = await fileSize(path);
      let ourSize = 0;
      let theirSize = 0;
      const [ours, ref] = await bestInterleaved(
        runs,
        async () => {
          const f = await Deno.open(path);
          const r = await drain(compress(kind, f.readable, { threads }));
          ourSize = r.n;
          return r;
        },
        async () => {
          const r = await timeCommand([cmd, ...flags, "-c", path], { stdout: "piped" });
          theirSize = r.stdout.length;
          return { secs: r.secs, n: theirSize };
        },
      );
      rows.push({
        what: `compress ${kind}${threads > 1 ? ` ${threads} threads` : ""}, ${
          (n / 1048576).toFixed(0)
        } MiB (MiB/s; ref ${cmd} ${flags.join(" ")}; sizes ${ourSize} vs ${theirSize})`,
        ours: (n / 1048576 / ours.secs).toFixed(1),
        reference: (n / 1048576 / ref.secs).toFixed(1),
        ratio: ratio(ours.secs, ref.secs),
      });
    }

    // Peak RSS of a process decompressing the xz file, beside `xz -d`'s.
    const script = `${work}/unxz.ts`;
    const lib = new URL("../src/compress/compression.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { decompress } from ${JSON.stringify(lib)};
       const f = await Deno.open(Deno.args[0]);
       let n = 0;
       for await (const c of decompress("xz", f.readable)) n += c.length;
       if (n !== ${size}) throw new Error("short");`,
    );
    const oursRss = await timeCommand([Deno.execPath(), "run", "-A", script, `${input}.xz`]);
    const refRss = await timeCommand(["xz", "-dc", `${input}.xz`], { stdout: "null" });
    await Deno.writeTextFile(`${work}/bare.ts`, `import ${JSON.stringify(lib)};`);
    const bare = await timeCommand([Deno.execPath(), "run", "-A", `${work}/bare.ts`]);
    rows.push({
      what: `peak RSS decompressing ${MIB} MiB of xz (Deno process; ref xz -d)`,
      ours: `${oursRss.rssMiB.toFixed(0)} MiB (idle: ${bare.rssMiB.toFixed(0)})`,
      reference: `${refRss.rssMiB.toFixed(0)} MiB`,
      ratio: "",
    });
  }
} finally {
  await Deno.remove(work, { recursive: true });
}

if (import.meta.main) {
  printTable(rows);
  if (Deno.args.includes("--rows")) console.log(JSON.stringify(rows));
}
