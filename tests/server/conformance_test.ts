/**
 * The conformance suites of the three services, run on the remote (`grpc+…`) backends against
 * a real daemon (memory backends behind it), over a unix socket and over TCP.
 */
import { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import { MemoryPathInfoService } from "../../src/backends/memory/path_info.ts";
import { GrpcBlobService } from "../../src/backends/grpc/blob.ts";
import { GrpcDirectoryService } from "../../src/backends/grpc/directory.ts";
import { GrpcPathInfoService } from "../../src/backends/grpc/path_info.ts";
import { type Daemon, serveDaemon } from "../../src/server/daemon.ts";
import { blobServiceSuite } from "../conformance/blob.ts";
import { directoryServiceSuite } from "../conformance/directory.ts";
import { pathInfoServiceSuite } from "../conformance/path_info.ts";

/** A fresh daemon over fresh memory stores; returns its service URL and a stopper. */
async function freshDaemon(
  kind: "unix" | "tcp",
): Promise<{ url: string; stop: () => Promise<void> }> {
  const blobs = new MemoryBlobService();
  const directories = new MemoryDirectoryService();
  const pathInfos = new MemoryPathInfoService(blobs, directories);
  let dir: string | null = null;
  let daemon: Daemon;
  if (kind === "unix") {
    dir = await Deno.makeTempDir({ prefix: "nixcas-grpc-" });
    daemon = await serveDaemon({ listen: `unix:${dir}/d.sock`, blobs, directories, pathInfos });
  } else {
    daemon = await serveDaemon({ listen: "127.0.0.1:0", blobs, directories, pathInfos });
  }
  const url = daemon.address.transport === "unix"
    ? `grpc+unix://${daemon.address.path}`
    : `grpc+http://${daemon.addressText}`;
  return {
    url,
    stop: async () => {
      await daemon.close(1000);
      if (dir) await Deno.remove(dir, { recursive: true });
    },
  };
}

for (const kind of ["unix", "tcp"] as const) {
  blobServiceSuite(`grpc(${kind})`, async () => {
    const d = await freshDaemon(kind);
    const svc = new GrpcBlobService(d.url);
    return { svc, cleanup: async () => (await svc.close(), await d.stop()) };
  });
  directoryServiceSuite(`grpc(${kind})`, async () => {
    const d = await freshDaemon(kind);
    const svc = new GrpcDirectoryService(d.url);
    return { svc, cleanup: async () => (await svc.close(), await d.stop()) };
  });
  pathInfoServiceSuite(`grpc(${kind})`, async () => {
    const d = await freshDaemon(kind);
    const blobs = new GrpcBlobService(d.url);
    const directories = new GrpcDirectoryService(d.url);
    const svc = new GrpcPathInfoService(d.url);
    return {
      blobs,
      directories,
      svc,
      cleanup: async () => {
        await Promise.all([svc.close(), blobs.close(), directories.close()]);
        await d.stop();
      },
    };
  });
}
