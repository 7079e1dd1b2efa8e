// Starts a daemon on the address given (one that is taken), reports the rejection, and then
// simply ends: the process exits only if the failed start left nothing running.
import { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import { serveDaemon } from "../../src/server/daemon.ts";

const [listen] = Deno.args;
try {
  await serveDaemon({
    listen,
    blobs: new MemoryBlobService(),
    directories: new MemoryDirectoryService(),
  });
  console.log("listening");
} catch (e) {
  console.log(`rejected: ${(e as Error).message}`);
}
