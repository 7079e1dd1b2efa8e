/**
 * Interop: python grpcio reads a blob chunk by chunk from our daemon (Stat with send_chunks,
 * then Read per chunk digest, each checked with b3sum), and gets DATA_LOSS naming a corrupt
 * chunk, before any of its bytes.
 */
import assert from "node:assert/strict";
import { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import { MemoryPathInfoService } from "../../src/backends/memory/path_info.ts";
import { serveDaemon } from "../../src/server/daemon.ts";
import { putBlob } from "../../src/castore/blob_util.ts";
import { blobChunks } from "../../src/castore/verify.ts";
import { toHex } from "../../src/base/bytes.ts";
import { generateStubs, havePythonGrpc, INTEROP_DIR, PYTHON } from "./pystubs.ts";

Deno.test({
  name: "python grpcio client reads a blob chunk by chunk; a corrupt chunk is DATA_LOSS",
  ignore: !havePythonGrpc(),
  async fn() {
    const stubs = await generateStubs();
    const blobs = new MemoryBlobService();
    const directories = new MemoryDirectoryService();
    const daemon = await serveDaemon({
      listen: `unix:${stubs}/d.sock`,
      blobs,
      directories,
      pathInfos: new MemoryPathInfoService(blobs, directories),
    });
    try {
      const data = new Uint8Array(8 << 20);
      for (let i = 0, x = 13; i < data.length; i++) {
        x = (Math.imul(x, 1103515245) + 12345) | 0;
        data[i] = x >>> 23;
      }
      const digest = await putBlob(blobs, data);
      const chunks = (await blobChunks(blobs, digest))!;
      const py = async (...extra: string[]) => {
        const out = await new Deno.Command(PYTHON, {
          args: [
            `${INTEROP_DIR}/pychunks.py`,
            `unix://${stubs}/d.sock`,
            toHex(digest.bytes),
            ...extra,
          ],
          env: { PYGEN: stubs, PYTHONPATH: INTEROP_DIR },
          stdout: "piped",
          stderr: "piped",
        }).output();
        const text = new TextDecoder().decode(out.stdout);
        assert.ok(
          out.success && text.includes("ALL OK"),
          `${text}\n${new TextDecoder().decode(out.stderr)}`,
        );
      };
      await py();
      blobs.storedBytes(chunks[1].digest)![7] ^= 1;
      await py(toHex(chunks[1].digest.bytes));
    } finally {
      await daemon.close(1000);
      await Deno.remove(stubs, { recursive: true });
    }
  },
});
