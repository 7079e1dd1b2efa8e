/**
 * Interop: Debian's python grpcio, an independent gRPC implementation, calls every RPC and every
 * rejection of our daemon, over TCP and over a unix socket.
 */
import assert from "node:assert/strict";
import { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import { MemoryPathInfoService } from "../../src/backends/memory/path_info.ts";
import { serveDaemon } from "../../src/server/daemon.ts";
import { generateStubs, havePythonGrpc, INTEROP_DIR, PYTHON } from "./pystubs.ts";

const enabled = havePythonGrpc();

for (const kind of ["tcp", "unix"] as const) {
  Deno.test({
    name: `python grpcio client: every RPC and rejection against our daemon (${kind})`,
    ignore: !enabled,
    async fn() {
      const stubs = await generateStubs();
      const blobs = new MemoryBlobService();
      const directories = new MemoryDirectoryService();
      const pathInfos = new MemoryPathInfoService(blobs, directories);
      const logged: string[] = [];
      const daemon = await serveDaemon({
        listen: kind === "tcp" ? "127.0.0.1:0" : `unix:${stubs}/d.sock`,
        blobs,
        directories,
        pathInfos,
        log: (m) => logged.push(m),
      });
      try {
        const target = daemon.address.transport === "unix"
          ? `unix://${daemon.address.path}`
          : daemon.addressText;
        const out = await new Deno.Command(PYTHON, {
          args: [`${INTEROP_DIR}/pyclient.py`, target],
          env: { PYGEN: stubs, PYTHONPATH: INTEROP_DIR },
          stdout: "piped",
          stderr: "piped",
        }).output();
        const text = new TextDecoder().decode(out.stdout);
        const err = new TextDecoder().decode(out.stderr);
        assert.ok(out.success && text.includes("ALL OK"), `${text}\n${err}`);
        assert.deepEqual(logged, [], "no handler error escaped to the log");
      } finally {
        await daemon.close(1000);
        await Deno.remove(stubs, { recursive: true });
      }
    },
  });
}
