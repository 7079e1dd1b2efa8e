/**
 * Runs every conformance suite against the local backends: memory, SQLite in memory, and a
 * SQLite file shared by the three services.
 */
import { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import { SqliteBlobService } from "../../src/backends/sqlite/blob.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import { SqliteDirectoryService } from "../../src/backends/sqlite/directory.ts";
import { blobServiceSuite } from "./blob.ts";
import { directoryServiceSuite } from "./directory.ts";
import { pathInfoServiceSuite } from "./path_info.ts";
import { MemoryPathInfoService } from "../../src/backends/memory/path_info.ts";
import { SqlitePathInfoService } from "../../src/backends/sqlite/path_info.ts";

const noCleanup = () => Promise.resolve();

/** A fresh SQLite file in a temp dir; cleanup closes the service and removes the dir. */
function sqliteFile<T extends { close(): Promise<void> }>(make: (path: string) => T) {
  return async () => {
    const dir = await Deno.makeTempDir({ prefix: "nixcas-conf-" });
    const svc = make(`${dir}/store.db`);
    return {
      svc,
      cleanup: async () => {
        await svc.close();
        await Deno.remove(dir, { recursive: true });
      },
    };
  };
}

blobServiceSuite(
  "memory",
  () => Promise.resolve({ svc: new MemoryBlobService(), cleanup: noCleanup }),
);
blobServiceSuite("sqlite(:memory:)", () => {
  const svc = new SqliteBlobService(":memory:");
  return Promise.resolve({ svc, cleanup: () => svc.close() });
});
blobServiceSuite("sqlite(file)", sqliteFile((p) => new SqliteBlobService(p)));

directoryServiceSuite(
  "memory",
  () => Promise.resolve({ svc: new MemoryDirectoryService(), cleanup: noCleanup }),
);
directoryServiceSuite("sqlite(:memory:)", () => {
  const svc = new SqliteDirectoryService(":memory:");
  return Promise.resolve({ svc, cleanup: () => svc.close() });
});
directoryServiceSuite("sqlite(file)", sqliteFile((p) => new SqliteDirectoryService(p)));

pathInfoServiceSuite("memory", () => {
  const blobs = new MemoryBlobService();
  const directories = new MemoryDirectoryService();
  return Promise.resolve({
    blobs,
    directories,
    svc: new MemoryPathInfoService(blobs, directories),
    cleanup: noCleanup,
  });
});
pathInfoServiceSuite("sqlite(file)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "nixcas-conf-" });
  const path = `${dir}/store.db`;
  const blobs = new SqliteBlobService(path);
  const directories = new SqliteDirectoryService(path);
  const svc = new SqlitePathInfoService(path, blobs, directories);
  return {
    blobs,
    directories,
    svc,
    cleanup: async () => {
      await svc.close();
      await directories.close();
      await blobs.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
});
