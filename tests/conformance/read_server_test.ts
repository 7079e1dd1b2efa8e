/**
 * The blob conformance suite on an SQLite file in read-server mode: memory-mapped database (what
 * `nixcas mount` and `nixcas daemon` use).
 */
import { SqliteBlobService } from "../../src/backends/sqlite/blob.ts";
import { useReadServerMode } from "../../src/backends/sqlite/db.ts";
import { blobServiceSuite } from "./blob.ts";

useReadServerMode();

blobServiceSuite("sqlite(file, read-server mode)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "nixcas-conf-rs-" });
  const svc = new SqliteBlobService(`${dir}/store.db`);
  return {
    svc,
    cleanup: async () => {
      await svc.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
});
