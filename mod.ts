/**
 * nixcas: a content-addressed store for Nix store paths, wire-compatible with tvix-store.
 *
 * Run as a CLI with `deno run -A mod.ts <subcommand>`; import as a library for the services.
 *
 * @module
 */
export * from "./src/base/bytes.ts";
export * from "./src/castore/digest.ts";
export * from "./src/base/errors.ts";
export * from "./src/castore/directory.ts";
export * from "./src/castore/blob_service.ts";
export * from "./src/castore/blob_util.ts";
export * from "./src/backends/memory/blob.ts";
export * from "./src/castore/directory_service.ts";
export * from "./src/backends/memory/directory.ts";
export * from "./src/castore/closure.ts";
export * from "./src/castore/traverse.ts";
export * from "./src/store/path_info_service.ts";
export * from "./src/store/nixbase32.ts";
export * from "./src/store/store_path.ts";
export * from "./src/hash/sha256.ts";
export * from "./src/store/import.ts";
export * from "./src/backends/sqlite/path_info.ts";
export * from "./src/backends/sqlite/blob.ts";
export * from "./src/backends/sqlite/directory.ts";
export * from "./src/nar/writer.ts";
export * from "./src/nar/render.ts";
export * from "./src/nar/hash.ts";
export * from "./src/backends/open.ts";

export { main } from "./src/cli/main.ts";

import { main as runCli } from "./src/cli/main.ts";
if (import.meta.main) {
  await runCli();
  // Every command has finished its work and awaited its output by now; exiting here skips the
  // runtime's teardown (≈3 ms of every command).
  Deno.exit(0);
}
export * from "./src/castore/import/mod.ts";
export * from "./src/store/path_info.ts";
export * from "./src/backends/memory/path_info.ts";
export * from "./src/base/message.ts";
export type { FileKind } from "./src/sys/libc.ts";
