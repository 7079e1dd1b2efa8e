/**
 * The `serve` group (issue 22): `nixcas serve` against nginx serving the flat `file://` cache
 * that `nix copy --to file://…?compression=none` wrote of the same closure, in the same run.
 *
 * - push: `nix copy --to http://…?compression=none` into a fresh `nixcas serve` (NARs checked
 *   and ingested into SQLite as they arrive) vs `nix copy --to file://…?compression=none`;
 * - pull: `nix copy --from http://… --to local?root=<fresh>` out of nixcas vs out of nginx
 *   (goal: time ratio ≤ 1.2);
 * - 16 `curl` NAR downloads at once, and one, vs nginx (MiB/s);
 * - narinfo GETs one after another on one connection (ms each);
 * - the server's peak RSS over the push, and over the reads;
 * - the pull again from the same handler in this process with blob reads not verified: not a
 *   mode of nixcas, the measure of what verification costs.
 *
 * The closure (made by Nix in a throw-away store): 16 directories of a random file and small
 * text files, one big random file, a copy of /usr/lib/python3.11 (real-shaped files; generated
 * text files where it is missing), and a text path referring to all of them, ≥ 200 MiB of NAR
 * (≈ 70 MiB with `--quick`). nginx is Debian's (`/usr/sbin/nginx`); without it the nginx rows
 * say they were skipped.
 *
 *   deno run -A bench/serve.ts [--quick] [--rows]
 *
 * `--rows` adds a JSON line of rows for bench/main.ts.
 *
 * @module
 */
import { type Background, startNixcas } from "../tests/prereq.ts";
import { printTable, ratio, type Row, s, timeCommand, track, writeRandomFile } from "./lib.ts";

const quick = Deno.args.includes("--quick");
const RUNS = quick ? 1 : 3;
const DATA_MIB = quick ? 2 : 9; // the random file in each of the 16 directories
const BIG_MIB = quick ? 8 : 32;
const PARALLEL = 16;
const NIX = ["nix", "--experimental-features", "nix-command"];
const td = new TextDecoder();

function have(cmd: string): boolean {
  return new Deno.Command("sh", { args: ["-c", `command -v ${cmd}`], stdout: "null" })
    .outputSync().success;
}

const rows: Row[] = [];
if (!have("nix-store") || !have("curl")) {
  rows.push({
    what: "serve group",
    ours: "skipped: no nix-store or curl",
    reference: "",
    ratio: "",
  });
  finish();
  Deno.exit(0);
}
const NGINX = ["/usr/sbin/nginx", "nginx"].find((c) => c.startsWith("/") ? exists(c) : have(c));

function exists(p: string): boolean {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
}

const tmpBase = exists("/dev/shm") ? "/dev/shm" : undefined;
const work = await Deno.makeTempDir({ dir: tmpBase, prefix: "nixcas-bench-serve-" });
const nixStore = `${work}/nix`;
let serial = 0;
const fresh = (tag: string) => `${work}/${tag}-${serial++}`;
/** The source store, with a fresh narinfo cache (Nix keeps narinfo answers across runs). */
const nixEnv = () => ({
  NIX_REMOTE: `local?root=${nixStore}`,
  HOME: work,
  XDG_CACHE_HOME: fresh("xdg"),
  NIX_CONFIG: "substituters =\n",
});

async function sh(cmd: string[], env: Record<string, string> = nixEnv()): Promise<string> {
  const out = await new Deno.Command(cmd[0], { args: cmd.slice(1), env, stderr: "piped" })
    .output();
  if (!out.success) throw new Error(`${cmd.join(" ")}: ${td.decode(out.stderr)}`);
  return td.decode(out.stdout).trim();
}

/** A nixcas serve process on a loopback port with its own store. */
interface Serve {
  url: string;
  /** Its NIXCAS_DIR. */
  dir: string;
  proc: Background;
  stop(): Promise<void>;
}

async function startServe(): Promise<Serve> {
  const dir = fresh("nixcas");
  const proc = await startNixcas(["serve", "--listen", "127.0.0.1:0"], "listening", {
    NIXCAS_DIR: dir,
  });
  track(proc.child);
  let m: RegExpExecArray | null = null;
  for (let i = 0; i < 100 && !(m = /listening (http:\/\/[0-9.:]+)/.exec(proc.stderr())); i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  if (!m) throw new Error(`nixcas serve printed no address: ${proc.stderr()}`);
  return {
    url: m[1],
    dir,
    proc,
    async stop() {
      proc.child.kill("SIGTERM");
      await proc.child.status;
      await proc.drained;
    },
  };
}

/** The peak RSS of a running process, from /proc (MiB); `reset` starts a new peak after it. */
function peakRss(pid: number, reset = false): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  if (reset) Deno.writeTextFileSync(`/proc/${pid}/clear_refs`, "5");
  return m ? Number(m[1]) / 1024 : NaN;
}

/**
 * The same handler in this process over the server's store with blob reads not verified: not a
 * mode nixcas has, only the measure of what verifying costs (SQLite keeps big blobs without
 * chunk digests, so each is hashed whole before its first byte goes out: held in memory up to
 * 16 MiB, read twice beyond).
 */
async function startUnverified(dir: string): Promise<{ url: string; stop(): Promise<void> }> {
  const { openStore } = await import("../src/backends/open.ts");
  const { binaryCacheHandler } = await import("../src/http/binary_cache.ts");
  const store = await openStore(`sqlite://${dir}/store.db`, {}, { readOnly: true });
  const blobs = new Proxy(store.blobs, {
    get(target, key) {
      if (key === "verifiesReads") return true;
      const v = Reflect.get(target, key);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    binaryCacheHandler({ ...store, blobs }),
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    async stop() {
      ac.abort();
      await server.finished;
      await store.close();
    },
  };
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** nginx in the foreground on a loopback port, serving `root` as a flat binary cache. */
async function startNginx(root: string): Promise<{ url: string; stop(): Promise<void> }> {
  const dir = `${work}/nginx`;
  await Deno.mkdir(`${dir}/tmp`, { recursive: true });
  const port = freePort();
  // `user root`: the cache sits in a 0700 temporary directory; the workers must read it.
  await Deno.writeTextFile(
    `${dir}/nginx.conf`,
    `daemon off;
worker_processes auto;
user root;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  types { text/x-nix-narinfo narinfo; application/x-nix-nar nar; }
  default_type application/octet-stream;
  server { listen 127.0.0.1:${port}; root ${root}; }
}
`,
  );
  const child = track(
    new Deno.Command(NGINX!, {
      args: ["-p", dir, "-e", `${dir}/error.log`, "-c", `${dir}/nginx.conf`],
      stdout: "null",
      stderr: "piped",
    }).spawn(),
  );
  const stderr = new Response(child.stderr).text();
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0;; i++) {
    try {
      const r = await fetch(`${url}/nix-cache-info`);
      await r.body?.cancel();
      if (r.ok) break;
    } catch { /* not up yet */ }
    if (i === 200) {
      child.kill("SIGTERM");
      throw new Error(`nginx did not start: ${await stderr}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    url,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await stderr;
    },
  };
}

/** The closure: returns its top (a text path referring to every other path). */
async function makeClosure(): Promise<{ top: string; data: string[]; big: string }> {
  const src = `${work}/src`;
  await Deno.mkdir(src);
  const data: string[] = [];
  for (let i = 0; i < PARALLEL; i++) {
    const d = `${src}/data-${i}`;
    await Deno.mkdir(`${d}/share/doc`, { recursive: true });
    await writeRandomFile(`${d}/blob.bin`, DATA_MIB, 100 + i);
    for (let f = 0; f < 40; f++) {
      await Deno.writeTextFile(
        `${d}/share/doc/note-${f}.txt`,
        `data set ${i}, note ${f}: some text as documentation has it.\n`.repeat(20 + f * 3),
      );
    }
    data.push(d);
  }
  await Deno.mkdir(`${src}/big`);
  await writeRandomFile(`${src}/big/big.bin`, BIG_MIB, 7);
  let tree = "/usr/lib/python3.11";
  if (!exists(tree)) {
    tree = `${src}/lib`;
    for (let d = 0; d < 50; d++) {
      await Deno.mkdir(`${tree}/m${d}`, { recursive: true });
      for (let f = 0; f < 100; f++) {
        await Deno.writeTextFile(`${tree}/m${d}/f${f}.py`, `x = ${f}\n`.repeat(1 + (f * 37) % 400));
      }
    }
  }
  const added = (await sh([
    "nix-store",
    "--add",
    ...data,
    `${src}/big`,
    ...(quick ? [] : [tree]),
  ])).split("\n");
  await Deno.remove(src, { recursive: true });
  const refs = added.map((p) => `\${builtins.storePath "${p}"}`).join("\n");
  const top = JSON.parse(
    await sh([
      "nix-instantiate",
      "--eval",
      "--read-write-mode",
      "-E",
      `builtins.toFile "closure-top" ''\n${refs}\n''`,
    ]),
  ) as string;
  return { top, data: added.slice(0, PARALLEL), big: added[PARALLEL] };
}

/** `nix copy --to` of the closure, timed. */
const pushTo = (to: string, top: string) =>
  timeCommand([...NIX, "copy", "--to", to, top], {
    env: nixEnv(),
  });

/** `nix copy --from` of the closure into a fresh store, timed; the store is removed after. */
async function pullFrom(from: string, top: string): Promise<{ secs: number }> {
  const root = fresh("pull");
  try {
    const r = await timeCommand([
      ...NIX,
      "copy",
      "--from",
      from,
      "--to",
      `local?root=${root}`,
      "--no-check-sigs",
      top,
    ], { env: nixEnv() });
    // A fast wrong answer is no result: the closure must be valid there.
    const closure = await sh(["nix-store", "-qR", top], {
      ...nixEnv(),
      NIX_REMOTE: `local?root=${root}`,
    });
    if (closure.split("\n").length < 3) throw new Error(`pull from ${from}: closure missing`);
    return r;
  } finally {
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}

/** The NAR URLs of `paths` as `base`'s narinfos give them, with their sizes. */
async function narUrls(base: string, paths: string[]): Promise<{ url: string; size: number }[]> {
  const out = [];
  for (const p of paths) {
    const text = await (await fetch(`${base}/${p.slice(11, 43)}.narinfo`)).text();
    const url = /^URL: (.*)$/m.exec(text)?.[1];
    const size = Number(/^NarSize: (\d+)$/m.exec(text)?.[1]);
    if (!url || !size) throw new Error(`${base}: no narinfo for ${p}: ${text}`);
    out.push({ url: `${base}/${url}`, size });
  }
  return out;
}

/** curl of every URL at once; returns wall seconds, checking each got the whole NAR. */
async function curlAll(nars: { url: string; size: number }[]): Promise<{ secs: number }> {
  const t0 = performance.now();
  await Promise.all(nars.map(async ({ url, size }) => {
    const out = await track(
      new Deno.Command("curl", {
        args: ["-sf", "-o", "/dev/null", "-w", "%{size_download}", url],
        stdout: "piped",
        stderr: "piped",
      }).spawn(),
    ).output();
    const got = Number(td.decode(out.stdout));
    if (!out.success || got !== size) {
      throw new Error(`curl ${url}: exit ${out.code}, ${got} of ${size} bytes`);
    }
  }));
  return { secs: (performance.now() - t0) / 1000 };
}

/** `n` narinfo GETs one after another on one connection; ms each. */
async function narinfoLatency(base: string, paths: string[], n: number): Promise<number> {
  const urls = paths.map((p) => `${base}/${p.slice(11, 43)}.narinfo`);
  for (const u of urls) await (await fetch(u)).text(); // warm
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const r = await fetch(urls[i % urls.length]);
    if (!r.ok) throw new Error(`${urls[i % urls.length]}: ${r.status}`);
    await r.text();
  }
  return (performance.now() - t0) / n;
}

const mibs = (bytes: number, secs: number) => (bytes / (1 << 20) / secs).toFixed(0);

function finish() {
  printTable(rows);
  if (Deno.args.includes("--rows")) console.log(JSON.stringify(rows));
}

const stops: (() => Promise<void>)[] = [];
try {
  const { top, data, big } = await makeClosure();
  const closure = (await sh(["nix-store", "-qR", top])).split("\n");
  const narMiB = Number(
    (await sh([...NIX, "path-info", "-S", "--json", top])).match(/"closureSize":(\d+)/)?.[1],
  ) / (1 << 20);
  console.error(`serve bench: closure of ${closure.length} paths, ${narMiB.toFixed(0)} MiB of NAR`);

  // Push: a fresh server (and store) each run, against a fresh file:// cache; alternating.
  let server: Serve | undefined;
  let cache = "";
  let bestPush = Infinity, bestFile = Infinity;
  for (let i = 0; i < RUNS; i++) {
    await server?.stop();
    server = await startServe();
    const r = await pushTo(`${server.url}?compression=none`, top);
    bestPush = Math.min(bestPush, r.secs);
    if (cache) await Deno.remove(cache, { recursive: true });
    cache = fresh("cache");
    const f = await pushTo(`file://${cache}?compression=none`, top);
    bestFile = Math.min(bestFile, f.secs);
  }
  const serve = server!;
  stops.push(() => serve.stop());
  rows.push({
    what: `push ${narMiB.toFixed(0)} MiB closure: nix copy --to http:// nixcas serve ` +
      `vs --to file:// (compression=none)`,
    ours: s(bestPush),
    reference: s(bestFile),
    ratio: ratio(bestPush, bestFile),
  });

  rows.push({
    what: "nixcas serve peak RSS over the push",
    ours: `${peakRss(serve.proc.child.pid, true).toFixed(0)} MiB`,
    reference: "",
    ratio: "",
  });

  const nginx = NGINX ? await startNginx(cache) : undefined;
  if (nginx) stops.push(() => nginx.stop());
  if (!nginx) {
    rows.push({
      what: "serve vs nginx rows",
      ours: "skipped: no nginx (apt-get install nginx)",
      reference: "",
      ratio: "",
    });
  }

  // Pull: nix copy --from, alternating; the unverified handler beside them.
  const unverified = await startUnverified(serve.dir);
  stops.push(() => unverified.stop());
  let bestOurs = Infinity, bestNginx = Infinity, bestRaw = Infinity;
  for (let i = 0; i < RUNS; i++) {
    bestOurs = Math.min(bestOurs, (await pullFrom(serve.url, top)).secs);
    if (nginx) bestNginx = Math.min(bestNginx, (await pullFrom(nginx.url, top)).secs);
    bestRaw = Math.min(bestRaw, (await pullFrom(unverified.url, top)).secs);
  }
  rows.push({
    what: `pull ${narMiB.toFixed(0)} MiB closure: nix copy --from nixcas serve vs nginx ` +
      `(goal ≤ 1.2)`,
    ours: s(bestOurs),
    reference: nginx ? s(bestNginx) : "no nginx",
    ratio: nginx ? ratio(bestOurs, bestNginx) : "",
  }, {
    what: "pull, the same handler with blob reads not verified (what verifying costs)",
    ours: s(bestRaw),
    reference: nginx ? s(bestNginx) : "no nginx",
    ratio: nginx ? ratio(bestRaw, bestNginx) : "",
  });

  // NAR downloads with curl: 16 at once, then one big one.
  const oursNars = await narUrls(serve.url, data);
  const theirNars = nginx ? await narUrls(nginx.url, data) : [];
  const total = oursNars.reduce((a, n) => a + n.size, 0);
  let b16 = Infinity, r16 = Infinity;
  for (let i = 0; i < RUNS; i++) {
    b16 = Math.min(b16, (await curlAll(oursNars)).secs);
    if (nginx) r16 = Math.min(r16, (await curlAll(theirNars)).secs);
  }
  rows.push({
    what: `${PARALLEL} curl NAR downloads at once, ${(total / (1 << 20)).toFixed(0)} MiB (MiB/s)`,
    ours: mibs(total, b16),
    reference: nginx ? mibs(total, r16) : "no nginx",
    ratio: nginx ? `${ratio(b16, r16)} (time)` : "",
  });
  const [oursBig] = await narUrls(serve.url, [big]);
  const [theirBig] = nginx ? await narUrls(nginx.url, [big]) : [];
  let b1 = Infinity, r1 = Infinity;
  for (let i = 0; i < RUNS; i++) {
    b1 = Math.min(b1, (await curlAll([oursBig])).secs);
    if (nginx) r1 = Math.min(r1, (await curlAll([theirBig])).secs);
  }
  rows.push({
    what: `1 curl NAR download, ${(oursBig.size / (1 << 20)).toFixed(0)} MiB (MiB/s)`,
    ours: mibs(oursBig.size, b1),
    reference: nginx ? mibs(oursBig.size, r1) : "no nginx",
    ratio: nginx ? `${ratio(b1, r1)} (time)` : "",
  });

  const n = quick ? 200 : 1000;
  const lOurs = await narinfoLatency(serve.url, closure, n);
  const lNginx = nginx ? await narinfoLatency(nginx.url, closure, n) : NaN;
  rows.push({
    what: `narinfo GET, ${n} one after another (ms each)`,
    ours: lOurs.toFixed(2),
    reference: nginx ? lNginx.toFixed(2) : "no nginx",
    ratio: nginx ? ratio(lOurs, lNginx) : "",
  });
  rows.push({
    what: `nixcas serve peak RSS over the pulls and downloads (${PARALLEL} at once)`,
    ours: `${peakRss(serve.proc.child.pid).toFixed(0)} MiB`,
    reference: "",
    ratio: "",
  });
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => {});
  await Deno.remove(work, { recursive: true }).catch(() => {});
}
finish();
