/**
 * The daemon never dies on client behaviour: clients that read and leave with GOAWAY (which
 * aborts an unguarded Deno `node:http2` server, denoland/deno#36788), leave mid-response, or
 * drop the connection. One daemon takes ≥ 200 such cycles; ≥ 20 fresh daemons each take three
 * concurrent ones right after start (where the abort was most frequent). Zero deaths allowed.
 */
import assert from "node:assert/strict";
import { createClient } from "@connectrpc/connect";
import { createTransport } from "../../src/backends/grpc/transport.ts";
import { BlobService } from "../../src/gen/tvix/castore/protos/rpc_blobstore_pb.ts";
import { type DaemonProcess, startDaemonProcess } from "./helpers.ts";
import { slow } from "../prereq.ts";
import { type Leave, readCycle, readRequestBody, sessionOpener } from "./goaway_client.ts";

const MiB = 1 << 20;

async function putBlob(address: string, size: number, fill: number): Promise<Uint8Array> {
  const t = createTransport(
    address.startsWith("unix:") ? `grpc+unix://${address.slice(5)}` : `grpc+http://${address}`,
  );
  const c = createClient(BlobService, t.transport);
  const data = new Uint8Array(size).fill(fill);
  const r = await c.put((async function* () {
    for (let o = 0; o < data.length; o += MiB) yield { data: data.subarray(o, o + MiB) };
  })());
  await c.stat({ digest: r.digest }); // the daemon answers normal calls too
  return r.digest;
}

function deathReport(d: DaemonProcess, code: number | null): string {
  const tail = d.stderr().split("\n").filter((l) => !l.startsWith("    at")).slice(-5);
  return `daemon died (exit ${code}):\n${tail.join("\n")}`;
}

const MODES: Leave[] = ["goaway", "early-goaway", "close", "destroy"];

Deno.test("crash loop: 200 connect/read/disconnect cycles against one daemon", {
  ignore: slow(),
}, async () => {
  const dir = await Deno.makeTempDir();
  for (const listen of ["127.0.0.1:0", `unix:${dir}/d.sock`]) {
    const d = await startDaemonProcess(listen);
    try {
      const digest = await putBlob(d.address, 4 * MiB, 1);
      const open = sessionOpener(d.address);
      const body = readRequestBody(digest);
      const cycles = listen.startsWith("unix:") ? 100 : 200;
      let full = 0;
      // Four clients at a time, each leaving differently.
      for (let i = 0; i < cycles; i += 4) {
        const got = await Promise.all(MODES.map((m) => readCycle(open, body, m)));
        full += got.filter((n) => n >= 4 * MiB).length;
        assert.ok(d.alive(), deathReport(d, (await Promise.race([d.status, null]))?.code ?? null));
      }
      assert.ok(full >= cycles / 4, `only ${full} complete reads`);
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(d.alive(), deathReport(d, null));
      await putBlob(d.address, 1000, 2); // still serving
    } finally {
      const s = await d.stop();
      assert.equal(s.code, 0, deathReport(d, s.code));
    }
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("crash loop: 20 fresh daemons with disconnecting clients", {
  ignore: slow(),
}, async () => {
  let deaths = 0;
  const reports: string[] = [];
  for (let i = 0; i < 20; i++) {
    const d = await startDaemonProcess("127.0.0.1:0");
    try {
      const digest = await putBlob(d.address, 16 * MiB, i);
      const open = sessionOpener(d.address);
      const body = readRequestBody(digest);
      await Promise.all(
        ["goaway", "early-goaway", "close"].map((m) => readCycle(open, body, m as Leave)),
      );
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      const alive = d.alive();
      const s = await d.stop();
      if (!alive || s.code !== 0) {
        deaths++;
        reports.push(deathReport(d, s.code));
      }
    }
  }
  assert.equal(deaths, 0, reports.join("\n---\n"));
});
