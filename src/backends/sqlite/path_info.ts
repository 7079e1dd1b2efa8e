/**
 * PathInfoService in an SQLite file; NAR calculations are cached in `nar_cache` by root node.
 *
 * @module
 */
import type { StatementSync } from "node:sqlite";
import type { BlobService } from "../../castore/blob_service.ts";
import {
  type AnyNode,
  fromNodeMessage,
  renameNode,
  toNodeMessage,
} from "../../castore/directory.ts";
import { encodeNodeWire } from "../../castore/wire.ts";
import { decodePathInfoWire, encodePathInfoWire } from "../../store/wire.ts";
import type { DirectoryService } from "../../castore/directory_service.ts";
import { InvalidRequestError, PreconditionError } from "../../base/errors.ts";
import { calculateNar } from "../../nar/hash.ts";
import {
  openDatabase,
  type OpenOptions,
  type SqliteHandle,
  storageError,
  transaction,
} from "./db.ts";
import { checkRootData, mergePathInfo, validatePathInfo } from "../../store/path_info.ts";
import { STORE_PATH_DIGEST_LEN } from "../../store/store_path.ts";
import type { NarCalculation, PathInfo, PathInfoService } from "../../store/path_info_service.ts";

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// Rows read per query by list(): memory stays bounded however large the store.
const LIST_PAGE = 256;

/**
 * Path infos in SQLite (`sqlite:///abs/path.db`), usually the same file as blobs and directories.
 * NAR calculations are cached in the database too.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   SqliteBlobService,
 *   SqliteDirectoryService,
 *   SqlitePathInfoService,
 * } from "@nixcas/nixcas/backends";
 * import { type AnyNode } from "@nixcas/nixcas/castore";
 * import { makePathInfo, sourceStorePath } from "@nixcas/nixcas/store";
 * const dir = await Deno.makeTempDir();
 * const db = `${dir}/store.db`;
 * const blobs = new SqliteBlobService(db);
 * const directories = new SqliteDirectoryService(db);
 * const pathInfos = new SqlitePathInfoService(db, blobs, directories);
 * const node: AnyNode = {
 *   case: "symlink",
 *   value: {
 *     $typeName: "tvix.castore.v1.SymlinkNode",
 *     name: new TextEncoder().encode("hosts"),
 *     target: new TextEncoder().encode("/etc/hosts"),
 *   },
 * };
 * const { narSize, narSha256 } = await pathInfos.calculateNar(node);
 * const storePath = sourceStorePath("hosts", narSha256);
 * await pathInfos.put(makePathInfo({ storePath, node, narSize, narSha256 }));
 * const info = await pathInfos.get(storePath.digest);
 * assert.deepEqual(info?.references, []);
 * await pathInfos.close();
 * await directories.close();
 * await blobs.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class SqlitePathInfoService implements PathInfoService {
  #h: SqliteHandle;
  #blobs: BlobService;
  #directories: DirectoryService;
  #get: StatementSync;
  #put: StatementSync;
  #list: StatementSync;
  #narGet: StatementSync;
  #narPut: StatementSync;

  /**
   * Opens the database at `path` (created if missing unless `options.readOnly`); NARs are
   * calculated from `blobs` and `directories`.
   */
  constructor(
    path: string,
    blobs: BlobService,
    directories: DirectoryService,
    options: OpenOptions = {},
  ) {
    this.#h = openDatabase(path, options);
    this.#blobs = blobs;
    this.#directories = directories;
    const db = this.#h.db;
    this.#get = db.prepare("SELECT data FROM path_infos WHERE digest = ?");
    // Replaces only with a merge of the stored row (signatures added): see put().
    this.#put = db.prepare("INSERT OR REPLACE INTO path_infos (digest, data) VALUES (?, ?)");
    this.#list = db.prepare(
      `SELECT digest, data FROM path_infos WHERE digest > ? ORDER BY digest LIMIT ${LIST_PAGE}`,
    );
    this.#narGet = db.prepare("SELECT nar_size, nar_sha256 FROM nar_cache WHERE node = ?");
    this.#narPut = db.prepare(
      "INSERT OR REPLACE INTO nar_cache (node, nar_size, nar_sha256) VALUES (?, ?, ?)",
    );
  }

  /** The {@linkcode PathInfoService} method of the same name. */
  // deno-lint-ignore require-await
  async get(digest: Uint8Array): Promise<PathInfo | null> {
    if (digest.length !== STORE_PATH_DIGEST_LEN) {
      throw new InvalidRequestError(
        `invalid store path digest length: ${digest.length} (want ${STORE_PATH_DIGEST_LEN})`,
      );
    }
    let row: { data: Uint8Array } | undefined;
    try {
      row = this.#get.get(digest) as typeof row;
    } catch (e) {
      throw storageError("reading path info", e);
    }
    return row ? decodePathInfoWire(row.data) : null;
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
    let bytes: Uint8Array;
    try {
      // One write transaction: another process's put cannot come between the read and write.
      bytes = transaction(this.#h.db, () => {
        const row = this.#get.get(storePath.digest) as { data: Uint8Array } | undefined;
        const merged = row ? mergePathInfo(storePath, decodePathInfoWire(row.data), info) : info;
        const out = encodePathInfoWire(merged);
        if (!row || !equalBytes(row.data, out)) this.#put.run(storePath.digest, out);
        return out;
      });
    } catch (e) {
      if (e instanceof PreconditionError) throw e;
      throw storageError(`storing path info ${storePath}`, e);
    }
    return decodePathInfoWire(bytes);
  }

  /** The {@linkcode PathInfoService} method of the same name. */
  async calculateNar(node: AnyNode): Promise<NarCalculation> {
    // The NAR does not depend on the root's name, so the cache key leaves it out.
    const key = encodeNodeWire(toNodeMessage(renameNode(node, new Uint8Array())));
    const hit = this.#narGet.get(key) as { nar_size: number; nar_sha256: Uint8Array } | undefined;
    if (hit) return { narSize: hit.nar_size, narSha256: hit.nar_sha256 };
    const calc = await calculateNar(node, this.#blobs, this.#directories);
    if (!this.#h.writable) return calc; // a reader does not write, not even its cache
    try {
      this.#narPut.run(key, calc.narSize, calc.narSha256);
    } catch (e) {
      throw storageError("caching NAR calculation", e);
    }
    return calc;
  }

  /** The {@linkcode PathInfoService} method of the same name. */
  async *list(): AsyncIterable<PathInfo> {
    // Pages by key, each read whole: a statement's iterator is reset by any other use of the
    // statement, so one held across the consumer's awaits broke concurrent lists.
    let after: Uint8Array = new Uint8Array(0); // sorts before every digest
    for (;;) {
      let rows: { digest: Uint8Array; data: Uint8Array }[];
      try {
        rows = this.#list.all(after) as typeof rows;
      } catch (e) {
        throw storageError("listing path infos", e);
      }
      for (const row of rows) yield decodePathInfoWire(row.data);
      if (rows.length < LIST_PAGE) return;
      after = rows[rows.length - 1].digest;
    }
  }

  /** The {@linkcode PathInfoService} method of the same name. */
  close(): Promise<void> {
    return this.#h.release();
  }
}
