/**
 * The DirectoryService interface: Directory messages keyed by the BLAKE3 of their canonical
 * encoding.
 *
 * @module
 */
import type { B3Digest } from "../digest.ts";
import type { Directory } from "../directory.ts";

/** Stores Directory messages. Backends: memory, SQLite, gRPC. */
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
 */
export interface DirectoryPutter {
  /** Adds the next directory; may throw at once for invalid input or later from close(). */
  put(directory: Directory): Promise<void>;
  /** Finishes the closure and returns the root digest; throws when no directory was put. */
  close(): Promise<B3Digest>;
}
