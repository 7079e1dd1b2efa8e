/**
 * PathInfoService kept in process memory.
 *
 * @module
 */
import type { BlobService } from "../../castore/blob_service.ts";
import { toHex } from "../../base/bytes.ts";
import {
  type AnyNode,
  fromNodeMessage,
  renameNode,
  toNodeMessage,
} from "../../castore/directory.ts";
import { encodeNodeWire } from "../../castore/wire.ts";
import { decodePathInfoWire, encodePathInfoWire } from "../../store/wire.ts";
import type { DirectoryService } from "../../castore/directory_service.ts";
import { InvalidRequestError } from "../../base/errors.ts";
import { calculateNar } from "../../nar/hash.ts";
import { checkRootData, mergePathInfo, validatePathInfo } from "../../store/path_info.ts";
import { STORE_PATH_DIGEST_LEN } from "../../store/store_path.ts";
import type { NarCalculation, PathInfo, PathInfoService } from "../../store/path_info_service.ts";

// Decoding copies every bytes field, so callers that modify a returned message cannot modify
// the stored one.
function decode(bytes: Uint8Array): PathInfo {
  return decodePathInfoWire(bytes);
}

/** Most NAR calculations the cache keeps (oldest dropped first). */
const NAR_CACHE_MAX = 10_000;

/**
 * Path infos in a Map, lost when the process ends (`memory://`). `calculateNar` renders from the
 * given blob and directory services and caches results by the root node.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   MemoryBlobService,
 *   MemoryDirectoryService,
 *   MemoryPathInfoService,
 * } from "@nixcas/nixcas/backends";
 * import { type AnyNode, putBlob } from "@nixcas/nixcas/castore";
 * import { makePathInfo, sourceStorePath } from "@nixcas/nixcas/store";
 * const blobs = new MemoryBlobService();
 * const pathInfos = new MemoryPathInfoService(blobs, new MemoryDirectoryService());
 * const contents = new TextEncoder().encode("Hello, world!\n");
 * const node: AnyNode = {
 *   case: "file",
 *   value: {
 *     $typeName: "tvix.castore.v1.FileNode",
 *     name: new TextEncoder().encode("hello.txt"),
 *     digest: (await putBlob(blobs, contents)).bytes,
 *     size: contents.length,
 *     executable: false,
 *   },
 * };
 * const { narSize, narSha256 } = await pathInfos.calculateNar(node);
 * const storePath = sourceStorePath("hello.txt", narSha256);
 * assert.equal(storePath.absolute, "/nix/store/xrabnx1r49hn890prhx86h6iyn19p976-hello.txt");
 * await pathInfos.put(makePathInfo({ storePath, node, narSize, narSha256 }));
 * assert.equal((await Array.fromAsync(pathInfos.list())).length, 1);
 * ```
 */
export class MemoryPathInfoService implements PathInfoService {
  // Stored encoded, so callers cannot mutate what the store holds.
  #infos = new Map<string, Uint8Array>();
  #narCache = new Map<string, Promise<NarCalculation>>();
  #blobs: BlobService;
  #directories: DirectoryService;

  /** Creates an empty service that calculates NARs from `blobs` and `directories`. */
  constructor(blobs: BlobService, directories: DirectoryService) {
    this.#blobs = blobs;
    this.#directories = directories;
  }

  /** The {@linkcode PathInfoService} method of the same name. */
  get(digest: Uint8Array): Promise<PathInfo | null> {
    if (digest.length !== STORE_PATH_DIGEST_LEN) {
      return Promise.reject(
        new InvalidRequestError(
          `invalid store path digest length: ${digest.length} (want ${STORE_PATH_DIGEST_LEN})`,
        ),
      );
    }
    const bytes = this.#infos.get(toHex(digest));
    return Promise.resolve(bytes ? decode(bytes) : null);
  }

  /**
   * The {@linkcode PathInfoService} method of the same name. The root directory (or, for a file
   * root, the blob) must be in this service's directory (blob) service, and a path already
   * stored can only gain signatures ({@linkcode mergePathInfo}); both refusals are
   * {@linkcode PreconditionError}.
   */
  async put(info: PathInfo): Promise<PathInfo> {
    const storePath = validatePathInfo(info);
    await checkRootData(storePath, fromNodeMessage(info.node), this.#blobs, this.#directories);
    // From here on synchronous: no other put can come between the read and the write.
    const key = toHex(storePath.digest);
    const stored = this.#infos.get(key);
    const bytes = encodePathInfoWire(
      stored ? mergePathInfo(storePath, decode(stored), info) : info,
    );
    this.#infos.set(key, bytes);
    return decode(bytes);
  }

  /** The {@linkcode PathInfoService} method of the same name. */
  calculateNar(node: AnyNode): Promise<NarCalculation> {
    // The NAR does not depend on the root's name, so the key leaves it out.
    const key = toHex(encodeNodeWire(toNodeMessage(renameNode(node, new Uint8Array()))));
    let result = this.#narCache.get(key);
    if (!result) {
      result = calculateNar(node, this.#blobs, this.#directories);
      // Concurrent callers share one calculation; failures are not cached.
      result.catch(() => this.#narCache.delete(key));
      if (this.#narCache.size >= NAR_CACHE_MAX) {
        this.#narCache.delete(this.#narCache.keys().next().value!);
      }
      this.#narCache.set(key, result);
    }
    // Copy, so a caller changing the digest bytes cannot corrupt the cache.
    return result.then((r) => ({ narSize: r.narSize, narSha256: r.narSha256.slice() }));
  }

  /** The {@linkcode PathInfoService} method of the same name. */
  async *list(): AsyncIterable<PathInfo> {
    // A snapshot: puts during the listing do not disturb it.
    for (const bytes of [...this.#infos.values()]) yield decode(bytes);
  }

  /** The {@linkcode PathInfoService} method of the same name. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
