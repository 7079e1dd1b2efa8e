/**
 * FUSE: a file whose stored chunk is corrupt reads as EIO at that chunk (logged, naming the
 * chunk); the intact part still reads and the mount keeps serving.
 */
import assert from "node:assert/strict";
import type { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import { putBlob } from "../../src/castore/blob_util.ts";
import { blobChunks } from "../../src/castore/verify.ts";
import { blake3 } from "../../src/castore/digest.ts";
import { BLOB_B_NAME, fileNode, genSvcs, HAVE_FUSE, pathInfo, withMount } from "./helpers.ts";

Deno.test({
  name: "FUSE: a corrupt chunk is EIO, the chunk is named in the log, the rest reads",
  ignore: !HAVE_FUSE,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const svcs = genSvcs();
    const blobs = svcs.blobs as MemoryBlobService;
    const data = new Uint8Array(8 << 20);
    for (let i = 0, x = 5; i < data.length; i++) {
      x = (Math.imul(x, 1103515245) + 12345) | 0;
      data[i] = x >>> 23;
    }
    await putBlob(blobs, data);
    await svcs.pathInfos.put(pathInfo(fileNode(BLOB_B_NAME, data)));
    const chunks = (await blobChunks(blobs, blake3(data)))!;
    blobs.storedBytes(chunks[1].digest)![100] ^= 1;
    await withMount(svcs, async (mnt, logs) => {
      const p = `${mnt}/${BLOB_B_NAME}`;
      const isEio = (e: unknown) =>
        (e as { code?: string }).code === "EIO" || /Input\/output error/.test(String(e));
      await assert.rejects(Deno.readFile(p), isEio);
      assert.ok(logs.some((l) => l.includes(chunks[1].digest.toString())), logs.join("\n"));
      // The intact first chunk reads.
      const f = await Deno.open(p);
      try {
        const buf = new Uint8Array(4096);
        assert.equal(await f.read(buf), 4096);
        assert.deepEqual(buf, data.subarray(0, 4096));
      } finally {
        f.close();
      }
      assert.ok((await Deno.stat(p)).isFile);
    });
  },
});
