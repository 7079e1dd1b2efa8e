/**
 * streamNar over an SQLite store (the default one): small files read in batches (inline rows and
 * neighbours in the pack file), mid-sized and big files through verified readers (a big one in
 * two checked passes), with the output's buffers reused only once a write settled and with the
 * batches checked by a worker. Every form must give the NAR the import hashed.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { openStore, type Store } from "../../src/backends/open.ts";
import type { AnyNode } from "../../src/castore/directory.ts";
import { B3Digest } from "../../src/castore/digest.ts";
import { StorageError } from "../../src/base/errors.ts";
import type { BatchChecker } from "../../src/castore/verify.ts";
import { enableNativeBlake3 } from "../../src/hash/blake3_native.ts";
import { renderNar, streamNar, writeNar } from "../../src/nar/render.ts";
import { importStorePath } from "../../src/store/import.ts";
import { startLlvmBlake3Worker } from "../../src/sys/llvm_blake3.ts";
import { bytes } from "../fixtures.ts";

interface Fixture {
  tmp: string;
  store: Store;
  root: AnyNode;
  narSize: number;
  narSha256: string;
}

/** A tree of ~900 files over several 4 MiB batches, imported into a fresh SQLite store. */
async function fixture(): Promise<Fixture> {
  const tmp = await Deno.makeTempDir({ prefix: "nixcas-stream-" });
  const tree = `${tmp}/tree`;
  let seed = 1;
  for (let d = 0; d < 3; d++) {
    await Deno.mkdir(`${tree}/d${d}/sub`, { recursive: true });
    for (let f = 0; f < 300; f++) {
      // Empty, inline (≤ 4 KiB), in the pack: sizes that straddle the batch limits.
      const size = f % 50 === 0 ? 0 : f % 3 === 0 ? (f * 37) % 4000 : 5000 + ((f * 7919) % 60_000);
      await Deno.writeFile(`${tree}/d${d}/f${f}`, bytes(size, seed++), {
        mode: f % 7 ? 0o644 : 0o755,
      });
    }
    await Deno.writeFile(`${tree}/d${d}/sub/mid`, bytes((1 << 20) + 5 + d, seed++)); // > a batch file
    await Deno.symlink(`../f${d}`, `${tree}/d${d}/sub/link`);
  }
  await Deno.writeFile(`${tree}/big`, bytes((18 << 20) + 333, seed++)); // two-pass reader
  const store = await openStore(`sqlite://${tmp}/store.db`);
  const { pathInfo } = await importStorePath(tree, store);
  return {
    tmp,
    store,
    root: pathInfo.node!.node as AnyNode,
    narSize: Number(pathInfo.narinfo!.narSize),
    narSha256: Array.from(pathInfo.narinfo!.narSha256, (b) => b.toString(16).padStart(2, "0"))
      .join(""),
  };
}

async function cleanup(f: Fixture) {
  await f.store.close();
  await Deno.remove(f.tmp, { recursive: true });
}

Deno.test("streamNar over SQLite: every form gives the imported NAR", async (t) => {
  const f = await fixture();
  try {
    const check = (size: number, sha: string, what: string) => {
      assert.equal(size, f.narSize, `${what}: size`);
      assert.equal(sha, f.narSha256, `${what}: sha256`);
    };
    await t.step("renderNar (arrays the consumer keeps)", async () => {
      const kept: Uint8Array[] = [];
      for await (const b of renderNar(f.root, f.store.blobs, f.store.directories)) kept.push(b);
      const h = createHash("sha256");
      let n = 0;
      for (const b of kept) {
        h.update(b);
        n += b.length;
      }
      check(n, h.digest("hex"), "renderNar");
    });
    await t.step("writeNar (a sink that consumes at once, buffers reused)", async () => {
      const h = createHash("sha256");
      const n = await writeNar(
        (b) => h.update(b),
        f.root,
        f.store.blobs,
        f.store.directories,
        { reuseBuffer: true },
      );
      check(n, h.digest("hex"), "writeNar");
    });
    // An output that reads its parts only later, as a write on another thread would: a buffer
    // reused before the write settled would show up as a wrong hash.
    const lateOutput = () => {
      const h = createHash("sha256");
      let n = 0;
      let calls = 0;
      const out = async (parts: Uint8Array[]) => {
        calls++;
        await new Promise((r) => setTimeout(r, 0));
        for (const p of parts) {
          h.update(p);
          n += p.length;
        }
      };
      return { out, done: () => ({ n, sha: h.digest("hex"), calls }) };
    };
    await t.step("streamNar, recycling buffers, output late", async () => {
      const o = lateOutput();
      const n = await streamNar(f.root, f.store.blobs, f.store.directories, o.out, {
        recycle: true,
      });
      const r = o.done();
      assert.equal(n, r.n);
      check(r.n, r.sha, "streamNar recycle");
      assert.ok(r.calls > 3, `${r.calls} output calls: the output is written in pieces`);
    });
    await t.step("streamNar with a checker off this thread", async () => {
      // The worker where native BLAKE3 is here, else one that answers later from this thread.
      const worker = (await enableNativeBlake3()) ? startLlvmBlake3Worker() : null;
      let asked = 0;
      const fake: BatchChecker = {
        check: async () => {
          asked++;
          await new Promise((r) => setTimeout(r, 0));
          return [];
        },
      };
      const checker = worker ?? fake;
      try {
        const o = lateOutput();
        await streamNar(f.root, f.store.blobs, f.store.directories, o.out, {
          recycle: true,
          checker,
        });
        const r = o.done();
        check(r.n, r.sha, "streamNar checker");
        if (!worker) assert.ok(asked > 1);
      } finally {
        worker?.close();
      }
    });
  } finally {
    await cleanup(f);
  }
});

Deno.test("streamNar: a failing output stops the render with its error, nothing after", async () => {
  const f = await fixture();
  try {
    let calls = 0;
    const out = (_parts: Uint8Array[]) => {
      calls++;
      return calls === 2 ? Promise.reject(new Error("disk full")) : Promise.resolve();
    };
    await assert.rejects(
      streamNar(f.root, f.store.blobs, f.store.directories, out, { recycle: true }),
      /disk full/,
    );
    assert.ok(calls <= 3, `${calls} calls: at most the one queued behind the failure`);
  } finally {
    await cleanup(f);
  }
});

Deno.test("streamNar: a big blob longer or shorter than its node says is a StorageError", async () => {
  const f = await fixture();
  try {
    assert.equal(f.root.case, "directory");
    const top = (await f.store.directories.get(B3Digest.fromBytes(f.root.value.digest)))!;
    const big = top.files.find((n) => new TextDecoder().decode(n.name) === "big")!;
    for (const delta of [-1, 1, -(5 << 20)]) {
      const node: AnyNode = { case: "file", value: { ...big, size: big.size + delta } };
      await assert.rejects(
        streamNar(node, f.store.blobs, f.store.directories, () => {}, { recycle: true }),
        (e: unknown) =>
          e instanceof StorageError && /node says|recorded in its node/.test(e.message),
      );
    }
  } finally {
    await cleanup(f);
  }
});
