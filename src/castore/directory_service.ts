/**
 * The DirectoryService interface: Directory messages keyed by the BLAKE3 of their canonical
 * encoding.
 *
 * @module
 */
import type { B3Digest } from "./digest.ts";
import type { Directory } from "./directory.ts";

/**
 * Stores Directory messages, keyed by their digest. Backends: memory
 * ({@linkcode MemoryDirectoryService}), SQLite ({@linkcode SqliteDirectoryService}), gRPC;
 * {@linkcode openDirectoryService} opens one by address.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { directoryNodeFor, type DirectoryService, makeDirectory } from "@nixcas/nixcas/castore";
 * const directories: DirectoryService = new MemoryDirectoryService();
 * const child = makeDirectory({});
 * const root = makeDirectory({
 *   directories: [directoryNodeFor(new TextEncoder().encode("share"), child)],
 * });
 * await directories.put(child);
 * const digest = await directories.put(root);
 * assert.deepEqual(await directories.get(digest), root);
 * // The root, then everything below it:
 * assert.equal((await Array.fromAsync(directories.getRecursive(digest))).length, 2);
 * await directories.close();
 * ```
 */
export interface DirectoryService {
  /** The directory with this digest, or null when absent. */
  get(digest: B3Digest): Promise<Directory | null>;
  /**
   * Stores one directory after validating it (children need not exist). Returns its digest.
   * Throws {@linkcode ValidateDirectoryError} for an invalid directory.
   */
  put(directory: Directory): Promise<B3Digest>;
  /**
   * The directory and all its descendants, breadth-first from the root, each directory once,
   * each validated. Throws (while iterating) when one is missing or invalid.
   */
  getRecursive(root: B3Digest): AsyncIterable<Directory>;
  /** Starts putting a closure, leaves first and root last. */
  putMultipleStart(): DirectoryPutter;
  /** Releases resources. */
  close(): Promise<void>;
}

/**
 * Puts a closure of directories, leaves first. Every child a directory refers to must have been
 * put earlier in the same putter, with a matching size. Nothing is guaranteed to be stored until
 * {@linkcode DirectoryPutter.close} resolves with the root digest (the last directory put).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import {
 *   directoryDigest,
 *   directoryNodeFor,
 *   type DirectoryPutter,
 *   makeDirectory,
 * } from "@nixcas/nixcas/castore";
 * const directories = new MemoryDirectoryService();
 * const leaf = makeDirectory({});
 * const root = makeDirectory({
 *   directories: [directoryNodeFor(new TextEncoder().encode("lib"), leaf)],
 * });
 * const putter: DirectoryPutter = directories.putMultipleStart();
 * await putter.put(leaf); // leaves first
 * await putter.put(root); // the root last
 * const digest = await putter.close();
 * assert(digest.equals(directoryDigest(root)));
 * ```
 */
export interface DirectoryPutter {
  /** Adds the next directory; may throw at once for invalid input or later from close(). */
  put(directory: Directory): Promise<void>;
  /** Finishes the closure and returns the root digest; throws when no directory was put. */
  close(): Promise<B3Digest>;
}
