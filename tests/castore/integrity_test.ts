/**
 * Corrupt stored data is caught before any of its bytes reaches a caller: in the library
 * (memory backend, the verifying wrapper other backends use), through the daemon (DATA_LOSS,
 * our gRPC client), and in the CLI (`cat`, `nar`: exit 1, one line, no corrupt bytes).
 */
import assert from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import { MemoryPathInfoService } from "../../src/backends/memory/path_info.ts";
import { GrpcBlobService } from "../../src/backends/grpc/blob.ts";
import { createTransport } from "../../src/backends/grpc/transport.ts";
import { serveDaemon } from "../../src/server/daemon.ts";
import { BlobService as BlobServiceDesc } from "../../src/gen/tvix/castore/protos/rpc_blobstore_pb.ts";
import type { BlobReader, BlobService, ChunkMeta } from "../../src/castore/blob_service.ts";
import { bufferReader, putBlob, readBlob } from "../../src/castore/blob_util.ts";
import { type B3Digest, blake3 } from "../../src/castore/digest.ts";
import {
  type BatchChecker,
  blobChunks,
  readSmallBlobs,
  verifyingReader,
  wholeVerifiedReader,
} from "../../src/castore/verify.ts";
import { SqliteBlobService } from "../../src/backends/sqlite/blob.ts";
import { bytes } from "../fixtures.ts";
import { chunkBuffer } from "../../src/castore/chunker.ts";
import { concat } from "../../src/base/bytes.ts";
import { CorruptDataError } from "../../src/base/errors.ts";
import { importStorePath } from "../../src/store/import.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

/** 8 MiB that the chunker cuts into several chunks. */
function big(seed = 3): Uint8Array {
  const data = new Uint8Array(8 << 20);
  let x = seed;
  for (let i = 0; i < data.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) | 0;
    data[i] = x >>> 23;
  }
  return data;
}

/** Reads everything `chunks()` yields until it throws; returns the bytes and the error. */
async function drain(r: BlobReader): Promise<{ got: Uint8Array; error: unknown }> {
  const parts: Uint8Array[] = [];
  try {
    for await (const c of r.chunks()) parts.push(c.slice());
    return { got: concat(parts), error: null };
  } catch (e) {
    return { got: concat(parts), error: e };
  } finally {
    await r.close();
  }
}

/** Stores `data` in a memory service and flips one byte of its chunk `k`. */
async function corrupted(data: Uint8Array, k: number) {
  const blobs = new MemoryBlobService();
  const digest = await putBlob(blobs, data);
  const chunks = (await blobChunks(blobs, digest))!;
  assert.ok(chunks.length > k, `${chunks.length} chunks`);
  blobs.storedBytes(chunks[k].digest)![100] ^= 1;
  return { blobs, digest, chunks };
}

const isCorrupt = (digest: B3Digest) => (e: unknown) =>
  e instanceof CorruptDataError && e.digest === digest.toString() &&
  e.message.includes(digest.toString());

Deno.test("memory backend: a flipped byte in a chunk is a CorruptDataError naming the chunk", async () => {
  const data = big();
  const { blobs, digest, chunks } = await corrupted(data, 1);
  await assert.rejects(readBlob(blobs, digest), isCorrupt(chunks[1].digest));
  // chunks(): the intact first chunk, then the error; nothing of the bad one.
  const { got, error } = await drain((await blobs.openRead(digest))!);
  assert.ok(isCorrupt(chunks[1].digest)(error), String(error));
  assert.deepEqual(got, data.subarray(0, chunks[0].size));
  // readAt: fine in chunk 0, the error in chunk 1.
  const r = (await blobs.openRead(digest))!;
  assert.deepEqual(await r.readAt(10, 10), data.subarray(10, 20));
  await assert.rejects(r.readAt(chunks[0].size + 5, 1), isCorrupt(chunks[1].digest));
  await r.close();
  // The chunk read by its own digest.
  await assert.rejects(readBlob(blobs, chunks[1].digest), isCorrupt(chunks[1].digest));
});

Deno.test("memory backend: a flipped byte in a small blob is caught before any byte", async () => {
  const blobs = new MemoryBlobService();
  const data = new TextEncoder().encode("Hello, world!\n");
  const digest = await putBlob(blobs, data);
  blobs.storedBytes(digest)![0] ^= 1;
  const r = (await blobs.openRead(digest))!;
  await assert.rejects(r.readAt(5, 2), isCorrupt(digest));
  const { got, error } = await drain((await blobs.openRead(digest))!);
  assert.ok(isCorrupt(digest)(error));
  assert.equal(got.length, 0);
});

Deno.test("verifyingReader (for backends that do not verify): chunked and unchunked", async () => {
  const data = big(5);
  const pieces = chunkBuffer(data);
  const chunks: ChunkMeta[] = pieces.map((p) => ({ digest: blake3(p), size: p.length }));
  const digest = blake3(data);
  const bad = data.slice();
  bad[chunks[0].size + chunks[1].size + 7] ^= 0x80; // in chunk 2
  const c = await drain(verifyingReader(bufferReader(bad), digest, chunks));
  assert.ok(isCorrupt(chunks[2].digest)(c.error), String(c.error));
  assert.deepEqual(c.got, data.subarray(0, chunks[0].size + chunks[1].size));
  const rc = verifyingReader(bufferReader(bad), digest, chunks);
  assert.deepEqual(await rc.readAt(3, 4), data.subarray(3, 7));
  await assert.rejects(rc.readAt(chunks[0].size + chunks[1].size, 8), CorruptDataError);
  // Unchunked: nothing before the whole was checked, small (in memory) or big (two passes).
  const readers = [
    verifyingReader(bufferReader(bad), digest, []),
    wholeVerifiedReader(digest, bufferReader(bad), { spool: false, bufferLimit: 1 << 20 }),
    wholeVerifiedReader(digest, bufferReader(bad), { spool: true, bufferLimit: 1 << 20 }),
  ];
  for (const [i, whole] of readers.entries()) {
    const w = await drain(whole);
    assert.ok(isCorrupt(digest)(w.error), `reader ${i}: ${w.error}`);
    assert.equal(w.got.length, 0);
  }
  for (const spool of [false, true]) {
    const r = wholeVerifiedReader(digest, bufferReader(data), { spool, bufferLimit: 1 << 20 });
    assert.deepEqual(await r.readAt(3 << 20, 10), data.subarray(3 << 20, (3 << 20) + 10));
    assert.deepEqual((await drain(r)).got, data);
  }
  const ok = verifyingReader(bufferReader(data), digest, []);
  assert.deepEqual(await ok.readAt(5 << 20, 10), data.subarray(5 << 20, (5 << 20) + 10));
  assert.deepEqual((await drain(ok)).got, data);
});

Deno.test("wholeVerifiedReader: bytes that change after the first pass are never returned", async () => {
  // The known gap of a re-read without checks: a source whose bytes differ on the second pass
  // (storage going bad while a big blob is read). Each window read again is checked against the
  // CV the first pass derived the digest from.
  const data = big(7).subarray(0, (5 << 20) + 1234); // 5 windows and a tail
  const digest = blake3(data);
  const changing = (at: number): BlobReader => {
    let passes = 0;
    const inner = bufferReader(data);
    const second = data.slice();
    second[at] ^= 0x20;
    const again = bufferReader(second);
    return {
      readAt: (o, n) => (passes > 0 ? again : inner).readAt(o, n),
      async *chunks(offset = 0) {
        const src = passes++ > 0 ? again : inner;
        yield* src.chunks(offset);
      },
      close: () => Promise.resolve(),
    };
  };
  const at = (3 << 20) + 99; // in window 3
  const opts = { spool: false, bufferLimit: 1 << 20 };
  const r = wholeVerifiedReader(digest, changing(at), opts);
  const { got, error } = await drain(r);
  assert.ok(isCorrupt(digest)(error), String(error));
  assert.match(String(error), /changed since it was checked.*3145728\.\.4194304/);
  assert.deepEqual(
    got,
    data.subarray(0, 3 << 20),
    "the windows before, nothing of the changed one",
  );
  // readAt: intact windows and the tail read fine, the changed window throws.
  const r2 = wholeVerifiedReader(digest, changing(at), opts);
  assert.deepEqual(await r2.readAt(5, 10), data.subarray(5, 15)); // first pass, then window 0
  assert.deepEqual(
    await r2.readAt((5 << 20) + 10, 20),
    data.subarray((5 << 20) + 10, (5 << 20) + 30),
  );
  assert.deepEqual(await r2.readAt((1 << 20) - 3, 6), data.subarray((1 << 20) - 3, (1 << 20) + 3));
  await assert.rejects(r2.readAt(at - 5, 10), isCorrupt(digest));
  await r2.close();
  // A second pass that ends early fails too, and one that is intact gives every byte.
  let passes = 0;
  const shorter: BlobReader = {
    readAt: (o, n) => bufferReader(data).readAt(o, n),
    chunks: (offset = 0) =>
      bufferReader(passes++ > 0 ? data.subarray(0, (2 << 20) + 10) : data).chunks(offset),
    close: () => Promise.resolve(),
  };
  const cut = await drain(wholeVerifiedReader(digest, shorter, opts));
  assert.ok(isCorrupt(digest)(cut.error), String(cut.error));
  assert.deepEqual(cut.got, data.subarray(0, 2 << 20));
  const whole = await drain(wholeVerifiedReader(digest, bufferReader(data), opts));
  assert.equal(whole.error, null);
  assert.deepEqual(whole.got, data);
  const fromOffset = wholeVerifiedReader(digest, bufferReader(data), opts);
  const parts: Uint8Array[] = [];
  for await (const c of fromOffset.chunks((2 << 20) + 5)) parts.push(c);
  assert.deepEqual(concat(parts), data.subarray((2 << 20) + 5));
  await fromOffset.close();
});

Deno.test("readSmallBlobs: a corrupt blob of a batch throws naming it, the others read", async () => {
  const blobs = new SqliteBlobService(":memory:");
  try {
    const datas = [10, 5000, 70_000, 3].map((n, i) => bytes(n, 40 + i));
    const requests = [];
    for (const d of datas) requests.push({ digest: await putBlob(blobs, d), size: d.length });
    const missing = { digest: blake3(new Uint8Array(7)), size: 7 };
    const wrongSize = { digest: requests[1].digest, size: 4999 };
    const all = [...requests, missing, wrongSize];
    const total = all.reduce((n, r) => n + r.size, 0);
    for (const shared of [false, true]) {
      const into = new Uint8Array(
        shared ? new SharedArrayBuffer(total + 8) : new ArrayBuffer(total + 8),
      )
        .subarray(8);
      // A checker that finds range 2 bad, whatever the bytes: its verdict decides.
      let asked = 0;
      const checker: BatchChecker = {
        check(_buf, starts, sizes, _expected) {
          asked++;
          assert.equal(starts[0], 8, "offsets are within the shared buffer");
          assert.equal(sizes.length, 4, "only the blobs found");
          return Promise.resolve([2]);
        },
      };
      const got = await readSmallBlobs(blobs, all, into, { checker });
      assert.equal(asked, shared ? 1 : 0, "a checker only sees shared buffers");
      assert.deepEqual(await got.get(0), datas[0]);
      assert.deepEqual(await got.get(1), datas[1]);
      assert.equal(await got.get(4), null);
      assert.equal(await got.get(5), null);
      if (shared) {
        // The checker said no: the bytes are hashed here to name what they hash to; they are
        // intact, so they come out (a checker's false alarm costs a hash, never wrong bytes).
        assert.deepEqual(await got.get(2), datas[2]);
      }
    }
    // A checker that takes the reads over (file stores only) and fails them: the backend reads
    // after all, and the blobs are checked here.
    const tmp = await Deno.makeTempDir({ prefix: "nixcas-readsmall-" });
    const onDisk = new SqliteBlobService(`${tmp}/store.db`);
    try {
      for (const d of datas) await putBlob(onDisk, d);
      let took = 0;
      const failing: BatchChecker = {
        check: () => Promise.reject(new Error("unused")),
        readAndCheck: (_fd, runs) => {
          took += runs.length / 3;
          return Promise.reject(new Error("short read"));
        },
      };
      const into = new Uint8Array(new SharedArrayBuffer(total));
      const got = await readSmallBlobs(onDisk, all, into, { checker: failing });
      assert.ok(took >= 1, "the pack reads were offered to the checker");
      for (const [i, d] of datas.entries()) assert.deepEqual(await got.get(i), d);
    } finally {
      await onDisk.close();
      await Deno.remove(tmp, { recursive: true });
    }
    // A flipped byte in the stored bytes is caught here, naming the blob.
    const into = new Uint8Array(total);
    const got = await readSmallBlobs(blobs, all, into);
    into[10 + 5000 + 123] ^= 1; // as if the pack had it
    await assert.rejects(got.get(2), isCorrupt(requests[2].digest));
    assert.deepEqual(await got.get(3), datas[3]);
    // A backend without readSmall: one verified read each.
    const memory = new MemoryBlobService();
    for (const d of datas) await putBlob(memory, d);
    const m = await readSmallBlobs(memory, all);
    assert.deepEqual(await m.get(2), datas[2]);
    assert.equal(await m.get(4), null);
    assert.equal(await m.get(5), null);
  } finally {
    await blobs.close();
  }
});

/** A daemon (in this process) over `blobs`, on a unix socket; returns its grpc+ URL. */
async function daemonOver(blobs: BlobService) {
  const dir = await Deno.makeTempDir({ prefix: "nixcas-integrity-" });
  const directories = new MemoryDirectoryService();
  const pathInfos = new MemoryPathInfoService(blobs, directories);
  const logged: string[] = [];
  const daemon = await serveDaemon({
    listen: `unix:${dir}/d.sock`,
    blobs,
    directories,
    pathInfos,
    log: (m) => logged.push(m),
  });
  return {
    url: `grpc+unix://${dir}/d.sock`,
    directories,
    pathInfos,
    logged,
    stop: async () => {
      await daemon.close(1000);
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("daemon: a corrupt chunk is DATA_LOSS naming it, and never sent", async () => {
  const data = big();
  const { blobs, digest, chunks } = await corrupted(data, 1);
  const d = await daemonOver(blobs);
  const remote = createTransport(d.url);
  const client = createClient(BlobServiceDesc, remote.transport);
  const ours = new GrpcBlobService(d.url);
  try {
    // Raw Read of the bad chunk: no message at all, then DATA_LOSS.
    let messages = 0;
    await assert.rejects(
      (async () => {
        for await (const _ of client.read({ digest: chunks[1].digest.bytes })) messages++;
      })(),
      (e) =>
        ConnectError.from(e).code === Code.DataLoss &&
        ConnectError.from(e).rawMessage.includes(chunks[1].digest.toString()),
    );
    assert.equal(messages, 0);
    // Raw Read of the blob: exactly the intact chunk 0, then DATA_LOSS.
    const parts: Uint8Array[] = [];
    await assert.rejects(
      (async () => {
        for await (const m of client.read({ digest: digest.bytes })) parts.push(m.data);
      })(),
      (e) => ConnectError.from(e).code === Code.DataLoss,
    );
    assert.deepEqual(concat(parts), data.subarray(0, chunks[0].size));
    // Our client: the typed error naming the chunk, only intact bytes before it.
    const { got, error } = await drain((await ours.openRead(digest))!);
    assert.ok(isCorrupt(chunks[1].digest)(error), String(error));
    assert.deepEqual(got, data.subarray(0, chunks[0].size));
    const r = (await ours.openRead(digest))!;
    await assert.rejects(r.readAt(chunks[0].size, 1), isCorrupt(chunks[1].digest));
    assert.deepEqual(await r.readAt(1, 3), data.subarray(1, 4));
    await r.close();
  } finally {
    remote.close();
    await ours.close();
    await d.stop();
  }
});

/** A backend that claims to verify but hands out corrupt bytes: tests the gRPC client's checks. */
class LyingBlobService extends MemoryBlobService {
  #chunked: boolean;
  constructor(chunked: boolean) {
    super();
    this.#chunked = chunked;
  }
  override async chunks(digest: B3Digest) {
    const c = await super.chunks(digest);
    return this.#chunked ? c : c && [];
  }
  override async openRead(digest: B3Digest) {
    const r = await super.openRead(digest);
    if (!r) return null;
    const flip = (c: Uint8Array, at: number) => {
      const x = c.slice();
      if (at < x.length) x[at] ^= 1;
      return x;
    };
    const data = await readAllUnchecked(r);
    // Unchunked: flip a byte near the end; chunked (read per chunk): flip byte 100.
    const bad = flip(data, this.#chunked ? 100 : data.length - 1);
    return bufferReader(bad);
  }
}

async function readAllUnchecked(r: BlobReader): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of r.chunks()) parts.push(c);
  await r.close();
  return concat(parts);
}

Deno.test("gRPC client: nothing corrupt is yielded, with and without a chunk list", async () => {
  for (const chunked of [true, false]) {
    const lying = new LyingBlobService(chunked);
    const data = big(chunked ? 7 : 9);
    const digest = await putBlob(lying, data);
    const chunks = (await blobChunks(lying, digest))!;
    const d = await daemonOver(lying);
    const ours = new GrpcBlobService(d.url);
    try {
      const { got, error } = await drain((await ours.openRead(digest))!);
      assert.ok(error instanceof CorruptDataError, `chunked ${chunked}: ${error}`);
      // The first chunk's Read is corrupt (chunked), or the whole blob's last byte is.
      const bad = chunked ? chunks[0].digest : digest;
      assert.equal(error.digest, bad.toString());
      assert.equal(got.length, 0, `chunked ${chunked}: ${got.length} bytes yielded`);
      const r = (await ours.openRead(digest))!;
      await assert.rejects(r.readAt(0, 10), CorruptDataError);
      await r.close();
    } finally {
      await ours.close();
      await d.stop();
    }
  }
});

async function cli(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", `${ROOT}/mod.ts`, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: out.stdout, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test("CLI cat and nar over a daemon with a corrupt chunk: exit 1, one line, no corrupt bytes", async () => {
  const work = await Deno.makeTempDir({ prefix: "nixcas-integrity-cli-" });
  const blobs = new MemoryBlobService();
  const d = await daemonOver(blobs);
  try {
    const data = big(11);
    await Deno.writeFile(`${work}/big`, data);
    const imported = await importStorePath(`${work}/big`, {
      blobs,
      directories: d.directories,
      pathInfos: d.pathInfos,
    });
    const path = imported.storePath.absolute;
    const flags = [
      "--blob-service-addr",
      d.url,
      "--directory-service-addr",
      d.url,
      "--path-info-service-addr",
      d.url,
    ];
    const goodNar = await cli(["nar", ...flags, path]);
    assert.equal(goodNar.code, 0, goodNar.stderr);
    const chunks = (await blobChunks(blobs, blake3(data)))!;
    blobs.storedBytes(chunks[1].digest)![100] ^= 1;

    const cat = await cli(["cat", ...flags, path]);
    assert.equal(cat.code, 1);
    console.log(`cat: ${cat.stderr.trim()}`);
    assert.equal(cat.stderr.trim().split("\n").length, 1, cat.stderr);
    assert.ok(cat.stderr.includes(chunks[1].digest.toString()), cat.stderr);
    assert.ok(cat.stdout.length <= chunks[0].size, `${cat.stdout.length} bytes written`);
    assert.deepEqual(cat.stdout, data.subarray(0, cat.stdout.length));

    const nar = await cli(["nar", ...flags, path]);
    assert.equal(nar.code, 1);
    assert.equal(nar.stderr.trim().split("\n").length, 1, nar.stderr);
    assert.ok(nar.stderr.includes(chunks[1].digest.toString()), nar.stderr);
    // A prefix of the true NAR that ends before the bad chunk's bytes.
    const headerLen = goodNar.stdout.length - data.length - 8 * 4; // generous upper bound
    assert.ok(nar.stdout.length <= headerLen + 8 * 4 + chunks[0].size, `${nar.stdout.length}`);
    assert.deepEqual(nar.stdout, goodNar.stdout.subarray(0, nar.stdout.length));
  } finally {
    await d.stop();
    await Deno.remove(work, { recursive: true });
  }
});
