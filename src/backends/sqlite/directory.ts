/**
 * DirectoryService in an SQLite file, rows keyed by digest holding the canonical encoding.
 *
 * @module
 */
import type { StatementSync } from "node:sqlite";
import { type B3Digest, blake3 } from "../../castore/digest.ts";
import { checkDigest } from "../../castore/verify.ts";
import {
  decodeDirectory,
  type Directory,
  encodeDirectory,
  validateDirectory,
} from "../../castore/directory.ts";
import {
  openDatabase,
  type OpenOptions,
  type SqliteHandle,
  storageError,
  transaction,
} from "./db.ts";
import { BufferedPutter } from "../../castore/closure.ts";
import type { DirectoryPutter, DirectoryService } from "../../castore/directory_service.ts";
import { traverseDirectories } from "../../castore/traverse.ts";

/**
 * Directories in SQLite (`sqlite:///abs/path.db`). A closure is stored in one transaction.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SqliteDirectoryService } from "@nixcas/nixcas/backends";
 * import { makeDirectory } from "@nixcas/nixcas/castore";
 * const dir = await Deno.makeTempDir();
 * let directories = new SqliteDirectoryService(`${dir}/store.db`);
 * const digest = await directories.put(makeDirectory({}));
 * await directories.close();
 * directories = new SqliteDirectoryService(`${dir}/store.db`);
 * assert.deepEqual(await directories.get(digest), makeDirectory({}));
 * await directories.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class SqliteDirectoryService implements DirectoryService {
  #h: SqliteHandle;
  #get: StatementSync;
  #insert: StatementSync;

  /**
   * Opens the database at `path` (`:memory:` for a private in-memory one), created if missing
   * unless `options.readOnly`.
   */
  constructor(path: string, options: OpenOptions = {}) {
    this.#h = openDatabase(path, options);
    this.#get = this.#h.db.prepare("SELECT data FROM directories WHERE digest = ?");
    this.#insert = this.#h.db.prepare(
      "INSERT OR IGNORE INTO directories (digest, data) VALUES (?, ?)",
    );
  }

  /** The {@linkcode DirectoryService} method of the same name. */
  get(digest: B3Digest): Promise<Directory | null> {
    let row: { data: Uint8Array } | undefined;
    try {
      row = this.#get.get(digest.bytes) as typeof row;
    } catch (e) {
      return Promise.reject(storageError(`reading directory ${digest}`, e));
    }
    if (!row) return Promise.resolve(null);
    try {
      // A flipped byte may still decode, to another directory: the digest is checked first.
      checkDigest(row.data, digest, "directory");
    } catch (e) {
      return Promise.reject(e);
    }
    try {
      return Promise.resolve(decodeDirectory(row.data));
    } catch (e) {
      return Promise.reject(storageError(`decoding directory ${digest}`, e));
    }
  }

  /** The {@linkcode DirectoryService} method of the same name. */
  // deno-lint-ignore require-await
  async put(directory: Directory): Promise<B3Digest> {
    validateDirectory(directory);
    const bytes = encodeDirectory(directory);
    const digest = blake3(bytes);
    try {
      this.#insert.run(digest.bytes, bytes);
    } catch (e) {
      throw storageError(`storing directory ${digest}`, e);
    }
    return digest;
  }

  /** The {@linkcode DirectoryService} method of the same name. */
  getRecursive(root: B3Digest): AsyncIterable<Directory> {
    return traverseDirectories((d) => this.get(d), root);
  }

  /** The {@linkcode DirectoryService} method of the same name. */
  putMultipleStart(): DirectoryPutter {
    return new BufferedPutter((dirs) => {
      try {
        transaction(this.#h.db, () => {
          for (const [digest, bytes] of dirs) this.#insert.run(digest.bytes, bytes);
        });
      } catch (e) {
        return Promise.reject(storageError("storing directories", e));
      }
      return Promise.resolve();
    });
  }

  /** The {@linkcode DirectoryService} method of the same name. */
  close(): Promise<void> {
    return this.#h.release();
  }
}
