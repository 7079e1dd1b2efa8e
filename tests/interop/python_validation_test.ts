/**
 * Interop: python grpcio sends what our daemon must refuse (tests/interop/pyvalidate.py):
 * undecodable protobuf on every RPC (INVALID_ARGUMENT, not INTERNAL), invalid names and symlink
 * targets, disconnected and endless Directory Put streams, changed store paths and PathInfos
 * whose data is missing (FAILED_PRECONDITION); over memory and over SQLite backends.
 */
import assert from "node:assert/strict";
import { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import { MemoryPathInfoService } from "../../src/backends/memory/path_info.ts";
import { SqliteBlobService } from "../../src/backends/sqlite/blob.ts";
import { SqliteDirectoryService } from "../../src/backends/sqlite/directory.ts";
import { SqlitePathInfoService } from "../../src/backends/sqlite/path_info.ts";
import { serveDaemon } from "../../src/server/daemon.ts";
import { generateStubs, havePythonGrpc, INTEROP_DIR, PYTHON } from "./pystubs.ts";

const enabled = havePythonGrpc();

for (const backend of ["memory", "sqlite"] as const) {
  Deno.test({
    name: `python grpcio client: what the daemon refuses (${backend})`,
    ignore: !enabled,
    async fn() {
      const stubs = await generateStubs();
      const db = `${stubs}/store.db`;
      const blobs = backend === "memory" ? new MemoryBlobService() : new SqliteBlobService(db);
      const directories = backend === "memory"
        ? new MemoryDirectoryService()
        : new SqliteDirectoryService(db);
      const pathInfos = backend === "memory"
        ? new MemoryPathInfoService(blobs, directories)
        : new SqlitePathInfoService(db, blobs, directories);
      const logged: string[] = [];
      const daemon = await serveDaemon({
        listen: "127.0.0.1:0",
        blobs,
        directories,
        pathInfos,
        directoryPutLimits: { maxDirectories: 10 },
        log: (m) => logged.push(m),
      });
      try {
        const out = await new Deno.Command(PYTHON, {
          args: [`${INTEROP_DIR}/pyvalidate.py`, daemon.addressText],
          env: { PYGEN: stubs, PYTHONPATH: INTEROP_DIR },
          stdout: "piped",
          stderr: "piped",
        }).output();
        const text = new TextDecoder().decode(out.stdout);
        const err = new TextDecoder().decode(out.stderr);
        assert.ok(out.success && text.includes("ALL OK"), `${text}\n${err}`);
      } finally {
        await daemon.close(1000);
        await pathInfos.close();
        await directories.close();
        await blobs.close();
        await Deno.remove(stubs, { recursive: true });
      }
    },
  });
}
