/**
 * Interop: our remote (`grpc+…`) backends against a small python grpcio server, over TCP and a
 * unix socket; a server that corrupts blob data is caught by the BLAKE3 check.
 */
import assert from "node:assert/strict";
import { B3Digest } from "../../src/castore/digest.ts";
import { putBlob, readBlob } from "../../src/castore/blob_util.ts";
import { collect } from "../../src/base/async.ts";
import { directoryDigest, type FileNode, makeDirectory } from "../../src/castore/directory.ts";
import { CorruptDataError } from "../../src/base/errors.ts";
import { concat } from "../../src/base/bytes.ts";
import { GrpcBlobService } from "../../src/backends/grpc/blob.ts";
import { GrpcDirectoryService } from "../../src/backends/grpc/directory.ts";
import { GrpcPathInfoService } from "../../src/backends/grpc/path_info.ts";
import { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import { MemoryPathInfoService } from "../../src/backends/memory/path_info.ts";
import { create } from "@bufbuild/protobuf";
import { NARInfoSchema, PathInfoSchema } from "../../src/gen/tvix/store/protos/pathinfo_pb.ts";
import { generateStubs, havePythonGrpc, startPyServer } from "./pystubs.ts";

const enabled = havePythonGrpc();
const te = new TextEncoder();

for (const kind of ["tcp", "unix"] as const) {
  Deno.test({
    name: `our remote backends against a python grpcio server (${kind})`,
    ignore: !enabled,
    async fn() {
      const stubs = await generateStubs();
      const py = await startPyServer(
        stubs,
        kind === "tcp" ? "127.0.0.1:0" : `unix://${stubs}/py.sock`,
      );
      const blobs = new GrpcBlobService(py.url);
      const directories = new GrpcDirectoryService(py.url);
      const pathInfos = new GrpcPathInfoService(py.url);
      try {
        // Blobs: absent, small, empty, 3 MiB + change (several chunks), offsets.
        const absent = B3Digest.fromBytes(new Uint8Array(32));
        assert.equal(await blobs.has(absent), false);
        assert.equal(await blobs.openRead(absent), null);
        const big = new Uint8Array(3 * (1 << 20) + 4321).map((_, i) => (i * 7) & 255);
        const local = new MemoryBlobService();
        for (const data of [te.encode("Hello World!"), new Uint8Array(0), big]) {
          const d = await putBlob(blobs, data);
          assert.equal(d.toString(), (await putBlob(local, data)).toString(), "BLAKE3 agrees");
          assert.equal(await blobs.has(d), true);
          assert.deepEqual(await readBlob(blobs, d), data);
        }
        const bigDigest = await putBlob(local, big);
        const r = (await blobs.openRead(bigDigest))!;
        assert.deepEqual(await r.readAt(1 << 20, 10), big.subarray(1 << 20, (1 << 20) + 10));
        await r.close();

        // Directories: a closure leaves first, recursive get, single put with a known child.
        const hello = await putBlob(blobs, te.encode("Hello World!"));
        const file: FileNode = {
          $typeName: "tvix.castore.v1.FileNode",
          name: te.encode("hello"),
          digest: hello.bytes,
          size: 12,
          executable: false,
        };
        const leaf = makeDirectory({ files: [file] });
        const root = makeDirectory({
          directories: [{
            $typeName: "tvix.castore.v1.DirectoryNode",
            name: te.encode("sub"),
            digest: directoryDigest(leaf).bytes,
            size: 1,
          }],
        });
        const putter = directories.putMultipleStart();
        await putter.put(leaf);
        await putter.put(root);
        const rootDigest = await putter.close();
        assert.equal(rootDigest.toString(), directoryDigest(root).toString());
        const all = await collect(directories.getRecursive(rootDigest));
        assert.deepEqual(
          all.map((d) => directoryDigest(d).key),
          [root, leaf].map((d) => directoryDigest(d).key),
        );
        const again = makeDirectory({ directories: root.directories, files: [file] });
        assert.equal(
          (await directories.put(again)).toString(),
          directoryDigest(again).toString(),
        );
        assert.equal(await directories.get(B3Digest.fromBytes(new Uint8Array(32))), null);

        // Path infos: put/get/list, and calculateNar equal to a local one over the same data.
        const info = create(PathInfoSchema, {
          node: {
            node: {
              case: "directory",
              value: {
                name: te.encode("00bgd045z0d4icpbc2yyz4gx48ak44la-x"),
                digest: rootDigest.bytes,
                size: 2,
              },
            },
          },
          narinfo: create(NARInfoSchema, { narSize: 1n, narSha256: new Uint8Array(32) }),
        });
        assert.deepEqual(await pathInfos.put(info), info);
        const listed = await collect(pathInfos.list());
        assert.deepEqual(listed, [info]);
        const ld = new MemoryDirectoryService();
        const lp = new MemoryPathInfoService(local, ld);
        await putBlob(local, te.encode("Hello World!"));
        const lput = ld.putMultipleStart();
        await lput.put(leaf);
        await lput.put(root);
        await lput.close();
        const node = { case: "directory" as const, value: info.node!.node.value as never };
        assert.deepEqual(await pathInfos.calculateNar(node), await lp.calculateNar(node));
      } finally {
        await Promise.all([blobs.close(), directories.close(), pathInfos.close()]);
        await py.stop();
        await Deno.remove(stubs, { recursive: true });
      }
    },
  });
}

Deno.test({
  name: "a server without chunk lists: one Read stream per reader, verified, at any offset",
  ignore: !enabled,
  async fn() {
    const stubs = await generateStubs();
    const py = await startPyServer(stubs, "127.0.0.1:0");
    const blobs = new GrpcBlobService(py.url);
    try {
      for (const mib of [3, 20]) {
        const data = new Uint8Array(mib << 20);
        for (let i = 0; i < data.length; i += 65536) {
          crypto.getRandomValues(data.subarray(i, i + 65536));
        }
        const d = await putBlob(blobs, data);
        assert.deepEqual(await blobs.chunks(d), []);
        const r = (await blobs.openRead(d))!;
        try {
          for (const off of [(mib << 20) - 10, 0, 12345, (mib << 19) + 1]) {
            assert.deepEqual(await r.readAt(off, 100), data.subarray(off, off + 100), `@${off}`);
          }
          assert.deepEqual(concat(await collect(r.chunks(777))), data.subarray(777));
        } finally {
          await r.close();
        }
      }
    } finally {
      await blobs.close();
      await py.stop();
      await Deno.remove(stubs, { recursive: true });
    }
  },
});

Deno.test({
  name: "a blob read from a server that corrupts data fails the BLAKE3 check",
  ignore: !enabled,
  async fn() {
    const stubs = await generateStubs();
    const py = await startPyServer(stubs, "127.0.0.1:0", ["--corrupt"]);
    const blobs = new GrpcBlobService(py.url);
    try {
      const d = await putBlob(blobs, te.encode("Hello World!"));
      await assert.rejects(
        readBlob(blobs, d),
        (e) => e instanceof CorruptDataError && e.digest === d.toString(),
      );
      // No chunk list from this server: a big blob (spooled past 16 MiB) yields no byte before
      // the whole was checked, through chunks() and readAt alike.
      const big = new Uint8Array(20 << 20);
      for (let i = 0; i < big.length; i += 65536) {
        crypto.getRandomValues(big.subarray(i, i + 65536));
      }
      const bd = await putBlob(blobs, big);
      const r = (await blobs.openRead(bd))!;
      let yielded = 0;
      await assert.rejects(
        (async () => {
          for await (const c of r.chunks()) yielded += c.length;
        })(),
        CorruptDataError,
      );
      assert.equal(yielded, 0);
      await r.close();
      const r2 = (await blobs.openRead(bd))!;
      await assert.rejects(r2.readAt(5 << 20, 10), CorruptDataError);
      await r2.close();
    } finally {
      await blobs.close();
      await py.stop();
      await Deno.remove(stubs, { recursive: true });
    }
  },
});
