/**
 * A Nix binary cache as a path info service (`nix+http://…`, `nix+https://…`, `nix+file:///…`):
 * a path not yet known here is looked up in the cache by its digest, its narinfo checked
 * (signature by a trusted key, or content address), its NAR fetched and ingested into the
 * configured blob and directory services, and the result kept in a local path info service, so
 * a second access downloads nothing. A mount over it serves a remote Nix cache lazily.
 *
 * @module
 */
import type { BlobService } from "../../castore/blob_service.ts";
import type { AnyNode } from "../../castore/directory.ts";
import type { DirectoryService } from "../../castore/directory_service.ts";
import type { NarCalculation } from "../../nar/hash.ts";
import { copyPaths, NixcasStore, trustedSignatureCheck } from "../../store/copy.ts";
import type { PathInfo, PathInfoService } from "../../store/path_info_service.ts";
import type { PublicKey } from "../../store/signature.ts";
import { BinaryCache } from "./binary_cache.ts";

/**
 * Options of {@linkcode NixCachePathInfoService}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { NixCachePathInfoOptions } from "@nixcas/nixcas/backends";
 * const opts: NixCachePathInfoOptions = { trustedKeys: [] };
 * assert.equal(opts.trustedKeys.length, 0);
 * ```
 */
export interface NixCachePathInfoOptions {
  /** Keys whose signatures make a path acceptable (content-addressed paths need none). */
  trustedKeys: readonly PublicKey[];
}

/**
 * Path infos from a Nix binary cache, fetched on first use into `local`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   BinaryCache,
 *   MemoryPathInfoService,
 *   NixCachePathInfoService,
 *   openStore,
 * } from "@nixcas/nixcas/backends";
 * import { copyPaths, importStorePath, NixcasStore, SigningKey } from "@nixcas/nixcas/store";
 * // A file:// cache with one path, signed, written from another store.
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/hello.txt`, "Hello, world!\n");
 * const a = await openStore("memory://");
 * const { storePath } = await importStorePath(`${dir}/hello.txt`, a);
 * const key = await SigningKey.generate("test-1");
 * const cache = BinaryCache.open(`file://${dir}/cache`, { signingKey: key });
 * await copyPaths(new NixcasStore(a), cache, [storePath], { castore: a });
 *
 * const b = await openStore("memory://");
 * const open = (trustedKeys: SigningKey["publicKey"][]) =>
 *   new NixCachePathInfoService(`file://${dir}/cache`, b.blobs, b.directories, local, {
 *     trustedKeys,
 *   });
 * const local = new MemoryPathInfoService(b.blobs, b.directories);
 * // An imported path is content-addressed (as `nix-store --add` makes it): valid by its CA.
 * const info = await open([]).get(storePath.digest);
 * assert.equal(info?.narinfo?.narSize, 128n);
 * assert.ok(await local.get(storePath.digest)); // kept: a second get downloads nothing
 * // A signature by a trusted key would do as well.
 * assert.equal((await open([key.publicKey]).get(storePath.digest))?.narinfo?.narSize, 128n);
 * await a.close();
 * await b.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class NixCachePathInfoService implements PathInfoService {
  readonly #cache: BinaryCache;
  readonly #blobs: BlobService;
  readonly #directories: DirectoryService;
  readonly #local: PathInfoService;
  readonly #check: (info: Parameters<ReturnType<typeof trustedSignatureCheck>>[0]) => Promise<void>;
  readonly #fetching = new Map<string, Promise<PathInfo | null>>();

  /**
   * Reads through the cache at `cacheAddr` (`file:///…`, `http(s)://…`), storing contents in
   * `blobs` and `directories` and path infos in `local`.
   */
  constructor(
    cacheAddr: string,
    blobs: BlobService,
    directories: DirectoryService,
    local: PathInfoService,
    options: NixCachePathInfoOptions,
  ) {
    this.#cache = BinaryCache.open(cacheAddr);
    this.#blobs = blobs;
    this.#directories = directories;
    this.#local = local;
    this.#check = trustedSignatureCheck(options.trustedKeys);
  }

  /** Known here, or fetched from the cache (checked, ingested, kept); null when it has none. */
  async get(digest: Uint8Array): Promise<PathInfo | null> {
    const known = await this.#local.get(digest);
    if (known) return known;
    const key = digest.join(",");
    let p = this.#fetching.get(key);
    if (!p) {
      p = this.#fetch(digest).finally(() => this.#fetching.delete(key));
      this.#fetching.set(key, p);
    }
    return await p;
  }

  async #fetch(digest: Uint8Array): Promise<PathInfo | null> {
    const info = await this.#cache.queryDigest(digest);
    if (!info) return null;
    const castore = { blobs: this.#blobs, directories: this.#directories };
    // Only this path: its references are fetched when they are looked up in turn.
    await copyPaths(
      this.#cache,
      new NixcasStore({ ...castore, pathInfos: this.#local }),
      [info.storePath],
      { castore, recursive: false, check: this.#check },
    );
    return await this.#local.get(digest);
  }

  /** Stores in the local path info service (the cache is only read). */
  put(info: PathInfo): Promise<PathInfo> {
    return this.#local.put(info);
  }

  /** See {@linkcode PathInfoService.calculateNar}. */
  calculateNar(node: AnyNode): Promise<NarCalculation> {
    return this.#local.calculateNar(node);
  }

  /** The paths fetched (or put) so far: a binary cache cannot be listed. */
  list(): AsyncIterable<PathInfo> {
    return this.#local.list();
  }

  /** Closes the local path info service. */
  async close(): Promise<void> {
    await this.#local.close();
  }
}
