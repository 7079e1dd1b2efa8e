/**
 * A Nix binary cache over HTTP, served from castore and a path info service: what `nix copy
 * --to/--from http://…` and substituters speak.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import { binaryCacheHandler } from "@nixcas/nixcas/http";
 * const store = await openStore("memory://");
 * const res = await binaryCacheHandler(store)(new Request("http://x/nix-cache-info"));
 * assert.match(await res.text(), /^StoreDir: \/nix\/store\n/);
 * await store.close();
 * ```
 *
 * @module
 */
export { binaryCacheHandler, type BinaryCacheServerOptions } from "./binary_cache.ts";
