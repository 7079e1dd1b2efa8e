/**
 * Our daemon over TLS (`--tls-cert`/`--tls-key`) with our client and python grpcio, behind the
 * GOAWAY guard (rude clients over TLS leave it alive), and its `grpc.health.v1.Health` service
 * (python grpcio with stubs generated here, and our client, including NOT_SERVING on stop).
 */
import assert from "node:assert/strict";
import { createClient } from "@connectrpc/connect";
import { have, nixcas, ROOT, serviceFlags } from "../prereq.ts";
import { generateStubs, havePythonGrpc, INTEROP_DIR, PYTHON } from "./pystubs.ts";
import { makeCerts } from "./certs.ts";
import { putAndStat, startCliDaemon } from "../server/cli_daemon.ts";
import { type Leave, readCycle, readRequestBody } from "../server/goaway_client.ts";
import { createTransport } from "../../src/backends/grpc/transport.ts";
import {
  Health,
  HealthCheckResponse_ServingStatus as Status,
} from "../../src/gen/grpc/health/v1/health_pb.ts";
import { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import { MemoryPathInfoService } from "../../src/backends/memory/path_info.ts";
import { serveDaemon } from "../../src/server/daemon.ts";

const python = havePythonGrpc();
const openssl = have("daemon TLS tests", ["openssl"]);
const te = new TextEncoder();
const td = new TextDecoder();

/** The python stubs, plus the health proto as module `hlth`. */
async function stubs(): Promise<string> {
  const dir = await generateStubs();
  await Deno.mkdir(`${dir}/src/hlth`, { recursive: true });
  await Deno.copyFile(`${ROOT}/protos/grpc/health/v1/health.proto`, `${dir}/src/hlth/health.proto`);
  const out = await new Deno.Command(PYTHON, {
    args: [
      "-m",
      "grpc_tools.protoc",
      `-I${dir}/src`,
      `--python_out=${dir}`,
      `--grpc_python_out=${dir}`,
      "hlth/health.proto",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`protoc: ${td.decode(out.stderr)}`);
  return dir;
}

async function pyHealth(stubDir: string, target: string, extra: string[] = []): Promise<void> {
  const out = await new Deno.Command(PYTHON, {
    args: [`${INTEROP_DIR}/pyhealth.py`, target, ...extra],
    env: { PYGEN: stubDir, PYTHONPATH: INTEROP_DIR },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = td.decode(out.stdout) + td.decode(out.stderr);
  assert.ok(out.success && text.includes("ALL OK"), text);
}

Deno.test({
  name: "TLS daemon: our client (CA from NIX_SSL_CERT_FILE), the CLI and python grpcio",
  ignore: !openssl || !python,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "nixcas-dtls-" });
    const { ca, cert, key } = await makeCerts(tmp);
    const stubDir = await stubs();
    const d = await startCliDaemon("127.0.0.1:0", ["--tls-cert", cert, "--tls-key", key], {
      tls: true,
    });
    try {
      const port = d.address.split(":").at(-1);
      const url = `grpc+https://localhost:${port}`;
      Deno.env.set("NIX_SSL_CERT_FILE", ca);
      try {
        await putAndStat(url, te.encode("over our own TLS"));
      } finally {
        Deno.env.delete("NIX_SSL_CERT_FILE");
      }
      await Deno.mkdir(`${tmp}/tree`);
      await Deno.writeTextFile(`${tmp}/tree/f`, "tls\n");
      const env = { NIX_SSL_CERT_FILE: ca };
      const imported = await nixcas(["import", "--quiet", ...serviceFlags(url), `${tmp}/tree`], {
        env,
      });
      assert.equal(imported.code, 0, imported.stderr);
      const cat = await nixcas([
        "cat",
        ...serviceFlags(url),
        `${td.decode(imported.stdout).trim()}/f`,
      ], {
        env,
      });
      assert.equal(td.decode(cat.stdout), "tls\n", cat.stderr);
      await pyHealth(stubDir, `localhost:${port}`, ["--ca", ca]);
      // Without the CA: refused by the client, and the daemon still serves.
      const refused = await nixcas(["list", ...serviceFlags(url)], {
        env: { NIX_SSL_CERT_FILE: cert },
      });
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /certificate|verify/);
      // Plain HTTP/2 to the TLS port: fails, and the daemon still serves.
      const plain = await nixcas(["list", ...serviceFlags(`grpc+http://127.0.0.1:${port}`)]);
      assert.equal(plain.code, 1);
      await pyHealth(stubDir, `localhost:${port}`, ["--ca", ca]);
    } finally {
      const s = await d.stop();
      await Deno.remove(tmp, { recursive: true });
      await Deno.remove(stubDir, { recursive: true });
      assert.equal(s.code, 0, d.stderr());
    }
  },
});

Deno.test({
  name: "TLS daemon survives rude clients (GOAWAY, early GOAWAY, close, drop) over TLS",
  ignore: !openssl,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "nixcas-dtls-" });
    const { ca, cert, key } = await makeCerts(tmp);
    const caPem = await Deno.readTextFile(ca);
    const MODES: Leave[] = ["goaway", "early-goaway", "close", "destroy"];
    let full = 0;
    try {
      for (let round = 0; round < 5; round++) {
        const d = await startCliDaemon("127.0.0.1:0", ["--tls-cert", cert, "--tls-key", key], {
          tls: true,
        });
        try {
          const port = Number(d.address.split(":").at(-1));
          const url = `grpc+https://localhost:${port}`;
          Deno.env.set("NIX_SSL_CERT_FILE", ca);
          let digest: Uint8Array;
          try {
            digest = await putAndStat(url, new Uint8Array(2 << 20).fill(round));
          } finally {
            Deno.env.delete("NIX_SSL_CERT_FILE");
          }
          const open = async () => {
            const c = await Deno.connectTls({
              hostname: "localhost",
              port,
              caCerts: [caPem],
              alpnProtocols: ["h2"],
            });
            await c.handshake();
            return c as Deno.Conn;
          };
          const body = readRequestBody(digest);
          const cycles = round === 0 ? 40 : 1; // one long run, then fresh daemons
          for (let i = 0; i < cycles; i++) {
            const got = await Promise.all(MODES.map((m) => readCycle(open, body, m)));
            full += got.filter((n) => n >= 2 << 20).length;
            assert.ok(d.alive(), `daemon died:\n${d.stderr()}`);
          }
          Deno.env.set("NIX_SSL_CERT_FILE", ca);
          try {
            await putAndStat(url, te.encode(`still serving ${round}`));
          } finally {
            Deno.env.delete("NIX_SSL_CERT_FILE");
          }
        } finally {
          const s = await d.stop();
          assert.equal(s.code, 0, `daemon exit ${s.code}:\n${d.stderr()}`);
        }
      }
      assert.ok(full >= 20, `only ${full} complete reads`);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

Deno.test({
  name: "health: python grpcio Check/Watch/reflection against a plain daemon",
  ignore: !python,
  async fn() {
    const stubDir = await stubs();
    const d = await startCliDaemon("127.0.0.1:0");
    try {
      await pyHealth(stubDir, d.address);
    } finally {
      await d.stop();
      await Deno.remove(stubDir, { recursive: true });
    }
  },
});

Deno.test("health: our client; Watch says NOT_SERVING and ends when the daemon stops", async () => {
  const dir = await Deno.makeTempDir({ prefix: "nixcas-health-" });
  const blobs = new MemoryBlobService();
  const directories = new MemoryDirectoryService();
  const daemon = await serveDaemon({
    listen: `unix:${dir}/d.sock`,
    blobs,
    directories,
    pathInfos: new MemoryPathInfoService(blobs, directories),
  });
  const t = createTransport(`grpc+unix://${dir}/d.sock`);
  try {
    const health = createClient(Health, t.transport);
    for (
      const service of [
        "",
        "tvix.castore.v1.BlobService",
        "tvix.castore.v1.DirectoryService",
        "tvix.store.v1.PathInfoService",
      ]
    ) {
      assert.equal((await health.check({ service })).status, Status.SERVING, service);
    }
    await assert.rejects(health.check({ service: "nope" }), /not_found|unknown service/i);
    const seen: Status[] = [];
    const watching = (async () => {
      for await (const r of health.watch({ service: "" })) seen.push(r.status);
    })();
    while (seen.length === 0) await new Promise((r) => setTimeout(r, 20));
    const closed = daemon.close(30_000);
    await watching; // ended by the daemon, not by the 30 s grace
    assert.deepEqual(seen, [Status.SERVING, Status.NOT_SERVING]);
    await closed;
  } finally {
    t.close();
    await daemon.close();
    await Deno.remove(dir, { recursive: true });
  }
});
