/**
 * Validation of a leaves-to-root closure of directories, shared by every putter and by the gRPC
 * server's Put handler.
 *
 * @module
 */
import { B3Digest, blake3 } from "./digest.ts";
import {
  type Directory,
  directoryDigest,
  directorySize,
  encodeDirectory,
  validateDirectory,
} from "./directory.ts";
import { displayName } from "../base/bytes.ts";
import { InvalidRequestError } from "../base/errors.ts";
import type { DirectoryPutter } from "./directory_service.ts";

/**
 * Checks directories as they arrive leaves first: each is valid, and each child it refers to
 * was added before, with the size that child really has. The last one added is the root.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidRequestError } from "@nixcas/nixcas";
 * import { directoryNodeFor, makeDirectory } from "@nixcas/nixcas/castore";
 * import { ClosureValidator } from "./closure.ts";
 * const leaf = makeDirectory({});
 * const root = makeDirectory({
 *   directories: [directoryNodeFor(new TextEncoder().encode("lib"), leaf)],
 * });
 * const ok = new ClosureValidator();
 * ok.add(leaf);
 * const digest = ok.add(root);
 * assert(ok.root().equals(digest));
 * assert.equal(ok.count, 2);
 * // The root before its child is refused:
 * assert.throws(() => new ClosureValidator().add(root), InvalidRequestError);
 * ```
 */
export class ClosureValidator {
  #sizes = new Map<string, number>();
  #last: B3Digest | null = null;
  #count = 0;

  /**
   * Validates `directory` against the rules and what came before; returns its digest. Pass its
   * canonical encoding as `encoded` when you have it, to save encoding it again.
   */
  add(directory: Directory, encoded?: Uint8Array): B3Digest {
    validateDirectory(directory);
    for (const child of directory.directories) {
      const key = B3Digest.fromBytes(child.digest).key;
      const size = this.#sizes.get(key);
      if (size === undefined) {
        throw new InvalidRequestError(
          `directory ${displayName(child.name)} refers to child ${
            b3(child.digest)
          } that was not sent before it`,
        );
      }
      if (size !== child.size) {
        throw new InvalidRequestError(
          `directory ${displayName(child.name)} has size ${child.size}, but ${
            b3(child.digest)
          } has size ${size}`,
        );
      }
    }
    const digest = encoded ? blake3(encoded) : directoryDigest(directory);
    this.#sizes.set(digest.key, directorySize(directory));
    this.#last = digest;
    this.#count++;
    return digest;
  }

  /** How many directories were added. */
  get count(): number {
    return this.#count;
  }

  /** The root digest; throws when nothing was added. */
  root(): B3Digest {
    if (!this.#last) throw new InvalidRequestError("no directories sent, so there is no root");
    return this.#last;
  }
}

function b3(bytes: Uint8Array): string {
  return B3Digest.fromBytes(bytes).toString();
}

/**
 * A putter that validates the closure as directories arrive and hands all of them to `commit`
 * at close, so a rejected closure stores nothing. Directories are small; a closure fits memory.
 * Backends use it to implement {@linkcode DirectoryService.putMultipleStart}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type B3Digest, directoryNodeFor, makeDirectory } from "@nixcas/nixcas/castore";
 * import { BufferedPutter } from "./closure.ts";
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
 * assert.equal(stored.size, 0); // nothing is committed before close
 * const root = await putter.close();
 * assert.equal(stored.size, 2);
 * assert(stored.has(root.key));
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
