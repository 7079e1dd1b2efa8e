/**
 * DirectoryService kept in process memory.
 *
 * @module
 */
import { type B3Digest, blake3 } from "../../castore/digest.ts";
import { checkDigest } from "../../castore/verify.ts";
import {
  decodeDirectory,
  type Directory,
  encodeDirectory,
  validateDirectory,
} from "../../castore/directory.ts";
import { BufferedPutter } from "../../castore/closure.ts";
import type { DirectoryPutter, DirectoryService } from "../../castore/directory_service.ts";
import { traverseDirectories } from "../../castore/traverse.ts";

/**
 * Directories in a Map, lost when the process ends (`memory://`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { makeDirectory } from "@nixcas/nixcas/castore";
 * const directories = new MemoryDirectoryService();
 * const dir = makeDirectory({
 *   symlinks: [{
 *     $typeName: "tvix.castore.v1.SymlinkNode",
 *     name: new TextEncoder().encode("result"),
 *     target: new TextEncoder().encode("/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-hello"),
 *   }],
 * });
 * const digest = await directories.put(dir);
 * assert.deepEqual(await directories.get(digest), dir);
 * ```
 */
export class MemoryDirectoryService implements DirectoryService {
  // Stored encoded, so callers cannot mutate what the store holds.
  #dirs = new Map<string, Uint8Array>();

  /** The {@linkcode DirectoryService} method of the same name. */
  get(digest: B3Digest): Promise<Directory | null> {
    const bytes = this.#dirs.get(digest.key);
    if (!bytes) return Promise.resolve(null);
    try {
      // Stored bytes that changed would decode to another (valid) directory.
      checkDigest(bytes, digest, "directory");
    } catch (e) {
      return Promise.reject(e);
    }
    // Decoding copies every bytes field: callers cannot modify the stored directory.
    return Promise.resolve(decodeDirectory(bytes));
  }

  /**
   * The stored encoding of a directory (not a copy), or null: for tests that corrupt stored
   * data on purpose to see it caught.
   */
  storedBytes(digest: B3Digest): Uint8Array | null {
    return this.#dirs.get(digest.key) ?? null;
  }

  /** The {@linkcode DirectoryService} method of the same name. */
  // deno-lint-ignore require-await
  async put(directory: Directory): Promise<B3Digest> {
    validateDirectory(directory);
    const bytes = encodeDirectory(directory);
    const digest = blake3(bytes);
    this.#dirs.set(digest.key, bytes);
    return digest;
  }

  /** The {@linkcode DirectoryService} method of the same name. */
  getRecursive(root: B3Digest): AsyncIterable<Directory> {
    return traverseDirectories((d) => this.get(d), root);
  }

  /** The {@linkcode DirectoryService} method of the same name. */
  putMultipleStart(): DirectoryPutter {
    return new BufferedPutter((dirs) => {
      for (const [digest, bytes] of dirs) this.#dirs.set(digest.key, bytes);
      return Promise.resolve();
    });
  }

  /** The {@linkcode DirectoryService} method of the same name. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
