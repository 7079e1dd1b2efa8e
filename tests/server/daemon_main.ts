/**
 * A daemon over memory backends for tests that need it in its own process (crash loops,
 * signals, interop). Usage: `deno run -A tests/server/daemon_main.ts ADDRESS`.
 * Prints `listening <address>` once ready; SIGINT/SIGTERM stop it gracefully.
 *
 * @module
 */
import { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import { closeOnSignal, serveDaemon } from "../../src/server/daemon.ts";
import { MemoryPathInfoService } from "../../src/backends/memory/path_info.ts";

const blobs = new MemoryBlobService();
const directories = new MemoryDirectoryService();
const daemon = await serveDaemon({
  listen: Deno.args[0],
  blobs,
  directories,
  pathInfos: new MemoryPathInfoService(blobs, directories),
});
console.log(`listening ${daemon.addressText}`);
await closeOnSignal(daemon);
console.log("stopped");
