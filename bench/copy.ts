/**
 * The `copy` group: `nixcas copy --from local?root=A` of a closure (≥ 50 MiB, ≥ 2,000 files, with
 * references) into a fresh nixcas store, against `nix copy --from local?root=A --to
 * local?root=B` into a fresh Nix store, in the same run; and the peak RSS of each.
 *
 * @module
 */
import { bestInterleaved, ratio, type Row, s, timeCommand, writeRandomFile } from "./lib.ts";

/** Options of {@linkcode copyBenchmarks}. */
export interface CopyBenchOptions {
  /** A fresh directory for the stores; the caller removes it. */
  dir: string;
  /** The CLI to time (e.g. `[deno, "run", "-A", "mod.ts"]`). */
  nixcas: string[];
  /** Runs of each command, interleaved. */
  runs: number;
}

async function sh(cmd: string, args: string[], env: Record<string, string>): Promise<string> {
  const out = await new Deno.Command(cmd, { args, env, stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout).trim();
}

/** A Nix store at `${dir}/nix-a` holding a closure: returns its root path and its size. */
async function makeClosure(dir: string): Promise<{ root: string; files: number }> {
  const env = {
    NIX_REMOTE: `local?root=${dir}/nix-a`,
    HOME: dir,
    XDG_CACHE_HOME: `${dir}/xdg`,
    NIX_CONFIG: "substituters =\n",
  };
  // A tree of 2,400 small and middling files, and three big ones in a second path.
  const tree = `${dir}/src-tree`;
  let files = 0;
  for (let d = 0; d < 40; d++) {
    await Deno.mkdir(`${tree}/d${d}/sub`, { recursive: true });
    for (let f = 0; f < 60; f++) {
      const where = f % 3 === 0 ? `${tree}/d${d}/sub` : `${tree}/d${d}`;
      await Deno.writeTextFile(`${where}/f${f}.txt`, `line ${d}/${f}\n`.repeat(1 + (f * 97) % 900));
      files++;
    }
  }
  const big = `${dir}/src-big`;
  await Deno.mkdir(big);
  for (let i = 0; i < 3; i++) await writeRandomFile(`${big}/blob${i}`, 20, 30 + i);
  files += 3;
  const [treePath, bigPath] = (await sh("nix-store", ["--add", tree, big], env)).split("\n");
  const root = JSON.parse(
    await sh("nix-instantiate", [
      "--eval",
      "--read-write-mode",
      "-E",
      // builtins.storePath gives the string the context that makes them references.
      `builtins.toFile "root" "uses \${builtins.storePath "${treePath}"} and ` +
      `\${builtins.storePath "${bigPath}"}"`,
    ], env),
  );
  await Deno.remove(tree, { recursive: true });
  await Deno.remove(big, { recursive: true });
  return { root, files };
}

/** `nixcas copy --from local?root=A` vs `nix copy --from local?root=A --to local?root=B`. */
export async function copyBenchmarks(opts: CopyBenchOptions): Promise<Row[]> {
  const { dir, runs } = opts;
  const { root, files } = await makeClosure(dir);
  const from = `local?root=${dir}/nix-a`;
  const size = Number(
    JSON.parse(
      await sh("nix", [
        "--experimental-features",
        "nix-command",
        "path-info",
        "--json",
        "-S",
        root,
      ], { NIX_REMOTE: from, HOME: dir }),
    )[0].closureSize,
  );
  let n = 0;
  const ours = async () => {
    const store = `${dir}/nixcas-${n++}`;
    try {
      return await timeCommand([...opts.nixcas, "copy", "-q", "--from", from, root], {
        env: { NIXCAS_DIR: store },
      });
    } finally {
      await Deno.remove(store, { recursive: true }).catch(() => {});
    }
  };
  const nix = async () => {
    const to = `${dir}/nix-b-${n++}`;
    try {
      return await timeCommand([
        "nix",
        "--experimental-features",
        "nix-command",
        "copy",
        "--from",
        from,
        "--to",
        `local?root=${to}`,
        root,
      ], { env: { HOME: dir, XDG_CACHE_HOME: `${dir}/xdg-${n}`, NIX_CONFIG: "substituters =\n" } });
    } finally {
      await sh("chmod", ["-R", "u+w", to], {}).catch(() => {});
      await Deno.remove(to, { recursive: true }).catch(() => {});
    }
  };
  const [a, b] = await bestInterleaved(runs, ours, nix);
  const label = `${(size / 2 ** 20).toFixed(0)} MiB, ${files} files, 3 paths`;
  return [{
    what: `copy --from local?root= of a closure (${label}) vs nix copy to a local store`,
    ours: s(a.secs),
    reference: s(b.secs),
    ratio: ratio(a.secs, b.secs),
  }, {
    what: "peak RSS, copy --from local?root= (nix copy)",
    ours: `${a.rssMiB.toFixed(0)} MiB`,
    reference: `${b.rssMiB.toFixed(0)} MiB`,
    ratio: "",
  }];
}
