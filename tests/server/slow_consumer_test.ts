/**
 * Server-streaming calls (PathInfo List, recursive Directory Get, Blob Read) read by a consumer
 * slower than the network, against a daemon in its own process. Deno's `finished()` takes an
 * HTTP/2 stream whose server already sent its trailers for a closed one, so an iteration that
 * begins or waits while answers are still buffered failed with "Premature close" at its end.
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { putBlob } from "../../src/castore/blob_util.ts";
import type { BlobReader } from "../../src/castore/blob_service.ts";
import { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import type { B3Digest } from "../../src/castore/digest.ts";
import { serveDaemon } from "../../src/server/daemon.ts";
import { GrpcBlobService } from "../../src/backends/grpc/blob.ts";
import { GrpcDirectoryService } from "../../src/backends/grpc/directory.ts";
import {
  type Directory,
  directoryDigest,
  directoryNodeFor,
  makeDirectory,
  toNodeMessage,
} from "../../src/castore/directory.ts";
import { NARInfoSchema, PathInfoSchema } from "../../src/gen/tvix/store/protos/pathinfo_pb.ts";
import { GrpcPathInfoService } from "../../src/backends/grpc/path_info.ts";
import { nixcas, ROOT, serviceFlags, startNixcas } from "../prereq.ts";
import { startDaemonProcess } from "./helpers.ts";

const te = new TextEncoder();
const td = new TextDecoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Distinct valid store path hashes (nixbase32). */
const HASHES = ["00bgd045z0d4icpbc2yyz4gx48ak44la", "1c8jvhk4wx1qmkznhvw3k6h7hk3ngd5y"]
  .flatMap((h) => ["a", "b", "c"].map((c) => h.slice(0, 31) + c));

async function withDaemon(fn: (url: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "nixcas-slow-" });
  const sock = `${dir}/d.sock`;
  const d = await startDaemonProcess(`unix:${sock}`);
  try {
    await fn(`grpc+unix://${sock}`);
  } finally {
    await d.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

for (const delay of [5, 50]) {
  Deno.test(`List of ${HASHES.length} path infos, consumer awaits ${delay} ms per item`, () =>
    withDaemon(async (url) => {
      const svc = new GrpcPathInfoService(url);
      try {
        const names = HASHES.map((h, i) => `${h}-p${i}`);
        for (const name of names) {
          await svc.put(create(PathInfoSchema, {
            node: toNodeMessage({
              case: "symlink",
              value: {
                $typeName: "tvix.castore.v1.SymlinkNode",
                name: te.encode(name),
                target: te.encode("/nix/store/elsewhere"),
              },
            }),
            narinfo: create(NARInfoSchema, { narSize: 1n, narSha256: new Uint8Array(32) }),
          }));
        }
        const got: string[] = [];
        for await (const info of svc.list()) {
          await sleep(delay);
          got.push(td.decode(info.node!.node.value!.name));
        }
        assert.deepEqual(got.sort(), names.sort());
      } finally {
        await svc.close();
      }
    }));
}

Deno.test("recursive Directory Get of a 6-directory closure, consumer awaits 20 ms each", () =>
  withDaemon(async (url) => {
    const svc = new GrpcDirectoryService(url);
    try {
      // A chain: each directory holds the previous one (and a symlink, so all differ).
      const chain: Directory[] = [];
      for (let i = 0; i < 6; i++) {
        chain.push(makeDirectory({
          directories: i ? [directoryNodeFor(te.encode(`d${i}`), chain[i - 1])] : [],
          symlinks: [{
            $typeName: "tvix.castore.v1.SymlinkNode",
            name: te.encode(`s${i}`),
            target: te.encode("t"),
          }],
        }));
      }
      const putter = svc.putMultipleStart();
      for (const d of chain) await putter.put(d);
      const root = await putter.close();
      assert.ok(root.equals(directoryDigest(chain[5])));
      let n = 0;
      for await (const _ of svc.getRecursive(root)) {
        await sleep(20);
        n++;
      }
      assert.equal(n, chain.length);
    } finally {
      await svc.close();
    }
  }));

/** Every Read answer in 2 KiB messages (other servers send small ones), so a whole answer fits
 * in the client's 64 KiB stream window and may have arrived before the reading begins. */
class SmallChunks extends MemoryBlobService {
  override async openRead(digest: B3Digest): Promise<BlobReader | null> {
    const r = await super.openRead(digest);
    if (!r) return null;
    return {
      ...r,
      async *chunks(offset?: number) {
        for await (const c of r.chunks(offset)) {
          for (let o = 0; o < c.length; o += 2048) yield c.subarray(o, o + 2048);
        }
      },
    };
  }
}

Deno.test("Blob Read of 40 KiB in 20 messages, reader awaits 20 ms per chunk", async () => {
  const dir = await Deno.makeTempDir({ prefix: "nixcas-slow-" });
  const blobs = new SmallChunks();
  const daemon = await serveDaemon({
    listen: `unix:${dir}/d.sock`,
    blobs,
    directories: new MemoryDirectoryService(),
  });
  const remote = new GrpcBlobService(`grpc+unix://${dir}/d.sock`);
  try {
    const data = new Uint8Array(40 << 10).map((_, i) => (i * 7) & 255);
    const digest = await putBlob(blobs, data);
    for (const [offset, wait] of [[0, 0], [0, 100], [1, 100]]) {
      const reader = (await remote.openRead(digest))!;
      // Created before the wait: the call starts, the reading begins only after it.
      const chunks = reader.chunks(offset);
      await sleep(wait);
      let got = offset;
      for await (const chunk of chunks) {
        assert.deepEqual(chunk, data.subarray(got, got + chunk.length));
        got += chunk.length;
        await sleep(20);
      }
      await reader.close();
      assert.equal(got, data.length);
    }
  } finally {
    await remote.close();
    await daemon.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CLI: `nixcas list | while read l; do sleep 0.05; done` through `nixcas daemon`", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "nixcas-slow-cli-" });
  const sock = `${tmp}/daemon.sock`;
  const { child: daemon, drained } = await startNixcas(
    ["daemon", "--listen-address", `unix:${sock}`],
    "listening",
    { NIXCAS_DIR: `${tmp}/store` },
  );
  try {
    const flags = serviceFlags(`grpc+unix://${sock}`);
    const files = [0, 1, 2, 3, 4, 5].map((i) => `${tmp}/f${i}`);
    for (const [i, f] of files.entries()) await Deno.writeTextFile(f, `file ${i}\n`);
    const imported = await nixcas(["import", "--quiet", ...flags, ...files]);
    assert.equal(imported.code, 0, imported.stderr);
    const paths = td.decode(imported.stdout).trim().split("\n");
    assert.equal(paths.length, files.length);
    const quoted = [Deno.execPath(), "run", "-A", "--quiet", `${ROOT}/mod.ts`, "list", ...flags]
      .map((a) => `'${a}'`).join(" ");
    // Whether the whole answer arrives before the reading begins is up to the scheduler: three
    // runs make a pass by luck unlikely.
    for (let run = 0; run < 3; run++) {
      const out = await new Deno.Command("bash", {
        args: ["-c", `set -o pipefail; ${quoted} | while read l; do sleep 0.05; echo "$l"; done`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(out.code, 0, td.decode(out.stderr));
      assert.equal(td.decode(out.stderr), "");
      assert.deepEqual(td.decode(out.stdout).trim().split("\n").sort(), paths.sort());
    }
  } finally {
    daemon.kill("SIGTERM");
    await daemon.status;
    await drained;
    await Deno.remove(tmp, { recursive: true });
  }
});
