/**
 * Validation of a leaves-to-root closure of directories, shared by every putter and by the gRPC
 * server's Put handler.
 *
 * @module
 */
import { B3Digest, blake3 } from "./digest.ts";
import { type Directory, directorySize, encodeDirectory, validateDirectory } from "./directory.ts";
import { displayName } from "../base/bytes.ts";
import { InvalidRequestError } from "../base/errors.ts";
import type { DirectoryPutter } from "./directory_service.ts";

/**
 * Limits on one closure put (a Directory Put stream), so that memory and work stay bounded
 * however long a client's stream is: the validator refuses the directory that passes a limit.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type ClosureLimits, makeDirectory } from "@nixcas/nixcas/castore";
 * import { ClosureValidator } from "./closure.ts";
 * const limits: ClosureLimits = { maxDirectories: 1 };
 * const v = new ClosureValidator(limits);
 * v.add(makeDirectory({}));
 * assert.throws(() => v.add(makeDirectory({})), /more than 1 directories/);
 * ```
 */
export interface ClosureLimits {
  /** Most directory messages in one put, duplicates included (default: no limit). */
  maxDirectories?: number;
  /** Most bytes of canonical encoding in one put, duplicates included (default: no limit). */
  maxBytes?: number;
}

/**
 * The daemon's default {@linkcode ClosureLimits.maxDirectories}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_MAX_DIRECTORIES_PER_PUT } from "@nixcas/nixcas/castore";
 * assert.equal(DEFAULT_MAX_DIRECTORIES_PER_PUT, 200_000);
 * ```
 */
export const DEFAULT_MAX_DIRECTORIES_PER_PUT = 200_000;

/**
 * The daemon's default {@linkcode ClosureLimits.maxBytes}: 256 MiB.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_MAX_DIRECTORY_BYTES_PER_PUT } from "@nixcas/nixcas/castore";
 * assert.equal(DEFAULT_MAX_DIRECTORY_BYTES_PER_PUT, 256 * 1024 * 1024);
 * ```
 */
export const DEFAULT_MAX_DIRECTORY_BYTES_PER_PUT = 256 << 20;

/**
 * Checks directories as they arrive leaves first: each is valid, each child it refers to was
 * added before, with the size that child really has, and (at {@linkcode ClosureValidator.finish})
 * every directory but the last, the root, is referred to by one added after it, so the whole is
 * one connected closure. A directory added again is accepted and counted once, as tvix's
 * DirectoryGraph does. Optional {@linkcode ClosureLimits} bound the stream.
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
 * assert(ok.finish().equals(digest));
 * assert.equal(ok.count, 2);
 * // The root before its child is refused:
 * assert.throws(() => new ClosureValidator().add(root), InvalidRequestError);
 * // A directory nothing after it refers to is refused at the end:
 * const stray = new ClosureValidator();
 * stray.add(leaf);
 * stray.add(makeDirectory({ directories: [directoryNodeFor(new TextEncoder().encode("x"), leaf)] }));
 * stray.add(root);
 * assert.throws(() => stray.finish(), /is not referred to by any directory sent after it/);
 * ```
 */
export class ClosureValidator {
  #sizes = new Map<string, number>();
  // Directories no later one referred to (yet): at the end only the root may be left.
  #unreferenced = new Set<string>();
  #last: B3Digest | null = null;
  #count = 0;
  #bytes = 0;
  #maxDirectories: number;
  #maxBytes: number;

  /** A validator for one closure, refusing a stream that passes `limits`. */
  constructor(limits: ClosureLimits = {}) {
    this.#maxDirectories = limits.maxDirectories ?? Infinity;
    this.#maxBytes = limits.maxBytes ?? Infinity;
  }

  /**
   * Validates `directory` against the rules and what came before; returns its digest. Pass its
   * canonical encoding as `encoded` when you have it, to save encoding it again.
   */
  add(directory: Directory, encoded?: Uint8Array): B3Digest {
    if (this.#count >= this.#maxDirectories) {
      throw new InvalidRequestError(
        `the put has more than ${this.#maxDirectories} directories, the limit per put`,
      );
    }
    validateDirectory(directory);
    const bytes = encoded ?? encodeDirectory(directory);
    if (this.#bytes + bytes.length > this.#maxBytes) {
      throw new InvalidRequestError(
        `the put has more than ${this.#maxBytes} bytes of directories, the limit per put`,
      );
    }
    const digest = blake3(bytes);
    for (const child of directory.directories) {
      const key = B3Digest.fromBytes(child.digest).key;
      const size = this.#sizes.get(key);
      if (size === undefined) {
        throw new InvalidRequestError(
          `directory ${digest} refers to child ${displayName(child.name)} (${
            b3(child.digest)
          }) that was not sent before it`,
        );
      }
      if (size !== child.size) {
        throw new InvalidRequestError(
          `directory ${digest} gives child ${displayName(child.name)} (${
            b3(child.digest)
          }) size ${child.size}, but its size is ${size}`,
        );
      }
    }
    for (const child of directory.directories) {
      this.#unreferenced.delete(B3Digest.fromBytes(child.digest).key);
    }
    const key = digest.key; // one string for both collections
    if (!this.#sizes.has(key)) {
      this.#sizes.set(key, directorySize(directory));
      this.#unreferenced.add(key);
    }
    this.#last = digest;
    this.#count++;
    this.#bytes += bytes.length;
    return digest;
  }

  /** How many directories were added, duplicates included. */
  get count(): number {
    return this.#count;
  }

  /** How many different directories were added. */
  get distinct(): number {
    return this.#sizes.size;
  }

  /** The root digest (the last one added); throws when nothing was added. */
  root(): B3Digest {
    if (!this.#last) throw new InvalidRequestError("no directories sent, so there is no root");
    return this.#last;
  }

  /**
   * Ends the closure: returns the root digest, or throws {@linkcode InvalidRequestError} when
   * nothing was added or a directory other than the root is not referred to by one added after
   * it (naming it).
   */
  finish(): B3Digest {
    const root = this.root();
    const stray = [...this.#unreferenced].filter((k) => k !== root.key);
    if (stray.length > 0) {
      const named = stray.slice(0, 3).map((k) => B3Digest.parse(k).toString()).join(", ");
      const more = stray.length > 3 ? ` and ${stray.length - 3} more` : "";
      throw new InvalidRequestError(
        `directory ${named}${more} is not referred to by any directory sent after it: a put ` +
          `must be one closure, leaves first and its root ${root} last`,
      );
    }
    return root;
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
    const before = this.#validator.distinct;
    const digest = this.#validator.add(directory, bytes);
    // A directory sent again is stored once.
    if (this.#validator.distinct > before) this.#pending.push([digest, bytes]);
  }

  /** The {@linkcode DirectoryPutter} method of the same name. */
  close(): Promise<B3Digest> {
    this.#root ??= (async () => {
      const root = this.#validator.finish();
      await this.#commit(this.#pending);
      this.#pending = [];
      return root;
    })();
    return this.#root;
  }
}
