/**
 * The `nixcas` command line as a function: {@linkcode main} runs one command, as
 * `deno run -A jsr:@nixcas/nixcas <command>` does.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "@nixcas/nixcas/cli";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import { StorePath } from "@nixcas/nixcas/store";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/hello.txt`, "Hello, world!\n");
 * const addr = `sqlite://${dir}/store.db`;
 * await main(["import", "--quiet", "--blob-service-addr", addr, "--directory-service-addr", addr,
 *   "--path-info-service-addr", addr, `${dir}/hello.txt`]);
 * const store = await openStore(addr);
 * const path = StorePath.parseAbsolute("/nix/store/xrabnx1r49hn890prhx86h6iyn19p976-hello.txt");
 * assert.notEqual(await store.pathInfos.get(path.digest), null);
 * await store.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
export { main } from "./main.ts";
