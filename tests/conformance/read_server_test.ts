/**
 * The conformance suites on the registry's read-server backends (backends.ts): SQLite memory
 * mapped, as `nixcas mount` and `nixcas daemon` open it. The mode is process-wide, hence a file
 * (and process) of its own.
 */
import { useReadServerMode } from "../../src/backends/sqlite/db.ts";
import { READ_SERVER_BACKENDS, warmUp } from "./backends.ts";
import { blobServiceSuite } from "./blob.ts";
import { directoryServiceSuite } from "./directory.ts";
import { pathInfoServiceSuite } from "./path_info.ts";

useReadServerMode();
await warmUp(READ_SERVER_BACKENDS);

for (const backend of READ_SERVER_BACKENDS) {
  blobServiceSuite(backend);
  directoryServiceSuite(backend);
  pathInfoServiceSuite(backend);
}
