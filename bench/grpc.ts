/**
 * gRPC blob throughput: a 256 MiB blob put and read through the daemon by python grpcio and by
 * our client, beside python-to-python in the same run. Prints MiB/s and ratios.
 *
 * Usage: `deno run -A bench/grpc.ts [MiB=256] [rounds=2]` (needs /usr/bin/python3 with grpcio,
 * and b3sum). Best of `rounds` per cell.
 *
 * @module
 */
import { GrpcBlobService } from "../src/backends/grpc/blob.ts";
import { putBlob } from "../src/castore/blob_util.ts";
import { startCliDaemon } from "../tests/server/cli_daemon.ts";
import { enableNativeBlake3 } from "../src/hash/blake3_native.ts";
import {
  generateStubs,
  havePythonGrpc,
  INTEROP_DIR,
  PYTHON,
  startPyServer,
} from "../tests/interop/pystubs.ts";

// Usage: bench/grpc.ts [MIB] [ROUNDS] [--quick] [--rows]; --rows adds a JSON line for bench/main.ts.
const positional = Deno.args.filter((a) => !a.startsWith("--"));
const QUICK = Deno.args.includes("--quick");
const MIB = Number(positional[0] ?? (QUICK ? 64 : 256));
const ROUNDS = Number(positional[1] ?? (QUICK ? 1 : 2));

type Result = { put: number; read: number };

async function pyClient(stubs: string, target: string): Promise<Result> {
  const out = await new Deno.Command(PYTHON, {
    args: [`${INTEROP_DIR}/pybench.py`, target, String(MIB)],
    env: { PYGEN: stubs, PYTHONPATH: INTEROP_DIR },
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error("pybench failed");
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

async function ourClient(url: string): Promise<Result> {
  const blobs = new GrpcBlobService(url);
  try {
    const data = new Uint8Array(MIB << 20);
    for (let o = 0; o < data.length; o += 65536) {
      crypto.getRandomValues(data.subarray(o, o + 65536));
    }
    await putBlob(blobs, new Uint8Array([1]));
    let t = performance.now();
    const d = await putBlob(blobs, data);
    const tp = (performance.now() - t) / 1000;
    t = performance.now();
    const r = (await blobs.openRead(d))!;
    let n = 0;
    for await (const c of r.chunks()) n += c.length; // BLAKE3-verified at the end
    const tr = (performance.now() - t) / 1000;
    if (n !== data.length) throw new Error("short read");
    return { put: MIB / tp, read: MIB / tr };
  } finally {
    await blobs.close();
  }
}

async function best(f: () => Promise<Result>): Promise<Result> {
  let b = { put: 0, read: 0 };
  for (let i = 0; i < ROUNDS; i++) {
    const r = await f();
    b = { put: Math.max(b.put, r.put), read: Math.max(b.read, r.read) };
  }
  return b;
}

if (!havePythonGrpc()) Deno.exit(0);
const stubs = await generateStubs();
const rows: [string, Result][] = [];
try {
  const py = await startPyServer(stubs, "127.0.0.1:0");
  try {
    rows.push(["python client -> python server", await best(() => pyClient(stubs, py.address))]);
  } finally {
    await py.stop();
  }
  // `nixcas daemon` over memory backends (python's server keeps blobs in memory too), a fresh one
  // for each round: a memory store holding the earlier rounds' blobs slowed the later ones by up
  // to half. Our client with native BLAKE3, as the CLI loads it.
  await enableNativeBlake3();
  const fresh = (run: (address: string) => Promise<Result>) => async () => {
    const d = await startCliDaemon("127.0.0.1:0");
    try {
      return await run(d.address);
    } finally {
      await d.stop();
    }
  };
  rows.push([
    "python client -> nixcas daemon",
    await best(fresh((address) => pyClient(stubs, address))),
  ]);
  rows.push([
    "nixcas client -> nixcas daemon",
    await best(fresh((address) => ourClient(`grpc+http://${address}`))),
  ]);
} finally {
  await Deno.remove(stubs, { recursive: true });
}
const base = rows[0][1];
console.log(`gRPC blob throughput, ${MIB} MiB, 1 MiB chunks, TCP loopback, best of ${ROUNDS}`);
for (const [name, r] of rows) {
  console.log(
    `${name.padEnd(46)} put ${r.put.toFixed(0).padStart(5)} MiB/s (${
      (r.put / base.put).toFixed(2)
    }x py-py)` +
      `   read ${r.read.toFixed(0).padStart(5)} MiB/s (${(r.read / base.read).toFixed(2)}x py-py)`,
  );
}
if (Deno.args.includes("--rows")) {
  const ref = `${base.put.toFixed(0)} / ${base.read.toFixed(0)}`;
  console.log(JSON.stringify(
    rows.slice(1).map(([name, r]) => ({
      what: `gRPC ${MIB} MiB put / read MiB/s: ${name} (ref python -> python)`,
      ours: `${r.put.toFixed(0)} / ${r.read.toFixed(0)}`,
      reference: ref,
      ratio: `${(base.put / r.put).toFixed(2)} / ${(base.read / r.read).toFixed(2)} (time)`,
    })),
  ));
}
