/**
 * DirectoryService kept in process memory.
 *
 * @module
 */
import { type B3Digest, blake3 } from "../digest.ts";
import {
  decodeDirectory,
  type Directory,
  encodeDirectory,
  validateDirectory,
} from "../directory.ts";
import { InvalidRequestError } from "../errors.ts";
import { ClosureValidator } from "./closure.ts";
import type { DirectoryPutter, DirectoryService } from "./service.ts";
import { traverseDirectories } from "./traverse.ts";

/**
 * Directories in a Map, lost when the process ends (`memory://`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { makeDirectory, MemoryDirectoryService } from "../../../mod.ts";
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
    // Decoding copies every bytes field: callers cannot modify the stored directory.
    return Promise.resolve(bytes ? decodeDirectory(bytes) : null);
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

/**
 * A putter that validates the closure as directories arrive and hands all of them to `commit`
 * at close, so a rejected closure stores nothing. Directories are small; a closure fits memory.
 * Backends use it to implement {@linkcode DirectoryService.putMultipleStart}.
 *
 * @example
 * ```ts
 * import {
 *   type B3Digest,
 *   BufferedPutter,
 *   directoryNodeFor,
 *   makeDirectory,
 * } from "../../../mod.ts";
 * const stored = new Map<string, Uint8Array>();
 * const putter = new BufferedPutter((dirs: [B3Digest, Uint8Array][]) => {
 *   for (const [digest, encoded] of dirs) stored.set(digest.key, encoded);
 *   return Promise.resolve();
 * });
 * const leaf = makeDirectory({});
 * await putter.put(leaf);
 * await putter.put(makeDirectory({
 *   directories: [directoryNodeFor(new TextEncoder().encode("empty"), leaf)],
 * }));
 * console.log(stored.size); // 0: nothing is committed before close
 * const root = await putter.close();
 * console.log(stored.size, stored.has(root.key)); // 2 true
 * ```
 */
export class BufferedPutter implements DirectoryPutter {
  #validator = new ClosureValidator();
  #pending: [B3Digest, Uint8Array][] = [];
  #root: Promise<B3Digest> | null = null;
  #commit: (dirs: [B3Digest, Uint8Array][]) => Promise<void>;

  /** `commit` stores the validated, encoded directories in one go. */
  constructor(commit: (dirs: [B3Digest, Uint8Array][]) => Promise<void>) {
    this.#commit = commit;
  }

  /** The {@linkcode DirectoryPutter} method of the same name. */
  // deno-lint-ignore require-await
  async put(directory: Directory): Promise<void> {
    if (this.#root) throw new InvalidRequestError("directory putter is closed");
    const bytes = encodeDirectory(directory);
    this.#pending.push([this.#validator.add(directory, bytes), bytes]);
  }

  /** The {@linkcode DirectoryPutter} method of the same name. */
  close(): Promise<B3Digest> {
    this.#root ??= (async () => {
      const root = this.#validator.root();
      await this.#commit(this.#pending);
      this.#pending = [];
      return root;
    })();
    return this.#root;
  }
}
