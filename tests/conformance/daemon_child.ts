/**
 * The daemon behind the registry's `grpc(…)` backends, in a process of its own as `nixcas daemon`
 * runs: its connections and timers are then not the test process's, so the gRPC clients' cases
 * keep Deno's sanitizers on. Each conformance case needs an empty store, so the daemon serves a
 * store that is replaced by a fresh one on each `reset` line on stdin (answered `ready`);
 * stdin's end stops it.
 *
 * Usage: `deno run -A tests/conformance/daemon_child.ts LISTEN memory|sqlite-read-server`.
 * Prints `listening <address>` once ready.
 *
 * @module
 */
import { openStore, type Store } from "../../src/backends/open.ts";
import { serveDaemon } from "../../src/server/daemon.ts";
import type { BlobService } from "../../src/castore/blob_service.ts";
import type { DirectoryService } from "../../src/castore/directory_service.ts";
import type { PathInfoService } from "../../src/store/path_info_service.ts";

const [listen, backing] = Deno.args;
if (backing !== "memory" && backing !== "sqlite-read-server") {
  throw new Error(`daemon_child: unknown backing ${backing}`);
}
const root = await Deno.makeTempDir({ prefix: "nixcas-conf-daemon-" });
let generation = 0;

async function freshStore(): Promise<Store> {
  if (backing === "memory") return await openStore("memory://");
  const dir = `${root}/${generation++}`;
  // As `nixcas daemon` opens SQLite stores.
  return await openStore(`sqlite://${dir}/store.db`, {}, { readServer: true });
}

let current = await freshStore();

/** An object whose methods are those of `pick(current)` at call time. */
function follow<T extends object>(pick: (s: Store) => T): T {
  return new Proxy({} as T, {
    get(_, key) {
      const target = pick(current);
      const v = Reflect.get(target, key);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

const daemon = await serveDaemon({
  listen,
  blobs: follow<BlobService>((s) => s.blobs),
  directories: follow<DirectoryService>((s) => s.directories),
  pathInfos: follow<PathInfoService>((s) => s.pathInfos),
});
console.log(`listening ${daemon.addressText}`);

const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
let buffered = "";
for await (const text of lines) {
  buffered += text;
  for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
    const line = buffered.slice(0, nl);
    buffered = buffered.slice(nl + 1);
    if (line !== "reset") throw new Error(`daemon_child: unknown command ${JSON.stringify(line)}`);
    await current.close();
    if (backing !== "memory") await Deno.remove(`${root}/${generation - 1}`, { recursive: true });
    current = await freshStore();
    console.log("ready");
  }
}
await daemon.close(1000);
await current.close();
await Deno.remove(root, { recursive: true });
