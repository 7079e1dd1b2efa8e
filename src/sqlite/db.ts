/**
 * The one SQLite schema behind all three services. A file opened by several services of one
 * process shares one connection; several processes may use the same file at once (WAL mode,
 * busy timeout).
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { StorageError } from "../castore/errors.ts";
import { Checkpointer } from "./checkpointer.ts";

/** Schema version stored in `PRAGMA user_version`. */
export const SCHEMA_VERSION = 2;

// Tables holding bytes are rowid tables with a separate unique index on the digest: in a
// WITHOUT ROWID table every row sits in the key's B-tree, so rows of kilobytes made random
// inserts split pages constantly (5,000 small blobs: 133-186 ms vs 33 ms; 1 MiB chunk rows:
// 2.3-3 ms vs 1.2 ms each, measured).
const SCHEMA = `
CREATE TABLE IF NOT EXISTS blobs (
  digest BLOB NOT NULL UNIQUE,    -- 32-byte BLAKE3 of the contents
  size INTEGER NOT NULL,
  data BLOB,                      -- the contents of a blob of at most one chunk (1 MiB), else NULL
  data_id INTEGER                 -- else: chunks.data_id holding the bytes
);
CREATE TABLE IF NOT EXISTS chunks (
  data_id INTEGER NOT NULL,
  idx INTEGER NOT NULL,           -- chunk i holds bytes [i MiB, (i+1) MiB)
  data BLOB NOT NULL,
  PRIMARY KEY (data_id, idx)
);
-- Uploads in progress: their chunks are invisible until a blobs row points at them.
CREATE TABLE IF NOT EXISTS uploads (
  data_id INTEGER PRIMARY KEY AUTOINCREMENT,
  started INTEGER NOT NULL        -- unix ms, to clean up after crashed writers
);
CREATE TABLE IF NOT EXISTS directories (
  digest BLOB NOT NULL UNIQUE,    -- 32-byte BLAKE3 of the canonical encoding
  data BLOB NOT NULL              -- the canonical encoding
);
CREATE TABLE IF NOT EXISTS path_infos (
  digest BLOB PRIMARY KEY,        -- 20-byte store path digest
  data BLOB NOT NULL              -- encoded tvix.store.v1.PathInfo
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nar_cache (
  node BLOB PRIMARY KEY,          -- encoded tvix.castore.v1.Node (root, name cleared)
  nar_size INTEGER NOT NULL,
  nar_sha256 BLOB NOT NULL
) WITHOUT ROWID;
`;

// Version 1 kept blobs, chunks and directories in WITHOUT ROWID tables; same columns.
const MIGRATE_FROM_V1 =
  ["blobs", "chunks", "directories"].map((t) => `ALTER TABLE ${t} RENAME TO ${t}_v1;`).join("\n") +
  SCHEMA +
  ["blobs", "chunks", "directories"].map((t) =>
    `INSERT INTO ${t} SELECT * FROM ${t}_v1; DROP TABLE ${t}_v1;`
  ).join("\n");

// Uploads older than this are from writers that died; their chunks can go.
const STALE_UPLOAD_MS = 24 * 3600 * 1000;

/** A shared, reference-counted connection to one database file. */
export interface SqliteHandle {
  /** The connection. */
  readonly db: DatabaseSync;
  /** Where it lives (`:memory:` for a private in-memory database). */
  readonly path: string;
  /**
   * Tells the handle that a transaction just committed a lot of data (a blob chunk): the WAL
   * is then checkpointed in a worker thread instead of by the next commit on this thread.
   */
  wroteBulk(): void;
  /** Drops this reference; the connection closes with the last one. */
  release(): Promise<void>;
}

interface Connection {
  db: DatabaseSync;
  refs: number;
  checkpointer: Checkpointer | null;
}

const open = new Map<string, Connection>();

// Bytes of each database file SQLite may map into memory (0: plain reads).
let mmapBytes = 0;
// Worker threads per database for reading blob chunks (0: read on the calling thread).
let readWorkers = 0;

/**
 * Tunes this process for serving reads, for every connection open now or later: database
 * files are memory-mapped (1 MiB chunk reads ~590 → ~1,000 MiB/s, measured) and blob chunks of
 * large blobs are read in `workers` threads, keeping the main thread free for the protocol it
 * serves. Meant for long-running read servers (the FUSE mount, the daemon): mapped pages count
 * toward the process's RSS, so one-shot commands leave this off.
 */
export function useReadServerMode(workers = 2, bytes = 8 * 1024 ** 3): void {
  mmapBytes = bytes;
  readWorkers = workers;
  for (const { db } of open.values()) db.exec(`PRAGMA mmap_size = ${mmapBytes}`);
}

/** Settings of {@linkcode useReadServerMode}: mapped bytes and read workers (0 when off). */
export function readServerSettings(): { mmapBytes: number; readWorkers: number } {
  return { mmapBytes, readWorkers };
}

/**
 * Opens (creating if needed) the database at `path`, or a private in-memory one for
 * `":memory:"`. Opening the same path again in this process shares the connection.
 */
export function openDatabase(path: string): SqliteHandle {
  if (path !== ":memory:") {
    const shared = open.get(path);
    if (shared) {
      shared.refs++;
      return handle(path, shared);
    }
  }
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path, { timeout: 30_000 });
    // 16 KiB pages: 1 MiB chunks write 2.5x faster than with 4 KiB pages (measured; 64 KiB is
    // no faster), while each small commit writes 4x less WAL than with 64 KiB pages.
    db.exec("PRAGMA page_size = 16384");
    if (path !== ":memory:") db.exec("PRAGMA journal_mode = WAL");
    // WAL + NORMAL: commits are atomic and durable up to the last checkpoint, without an fsync
    // per transaction.
    db.exec("PRAGMA synchronous = NORMAL");
    if (mmapBytes > 0) db.exec(`PRAGMA mmap_size = ${mmapBytes}`);
    migrate(db);
  } catch (e) {
    throw new StorageError(`cannot open SQLite database ${path}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const conn: Connection = { db, refs: 1, checkpointer: null };
  if (path !== ":memory:") open.set(path, conn);
  return handle(path, conn);
}

function handle(path: string, conn: Connection): SqliteHandle {
  let released = false;
  return {
    db: conn.db,
    path,
    wroteBulk() {
      if (path === ":memory:") return;
      if (!conn.checkpointer) {
        conn.checkpointer = new Checkpointer(path);
        // From now on the worker checkpoints; a commit here only appends to the WAL.
        conn.db.exec("PRAGMA wal_autocheckpoint = 0");
      }
      conn.checkpointer.poke();
    },
    async release() {
      if (released) return;
      released = true;
      if (open.get(path) === conn) {
        if (--conn.refs > 0) return;
        open.delete(path);
      }
      // The worker copies what is left into the database file; closing the last connection
      // then finds the WAL checkpointed and only removes it.
      await conn.checkpointer?.close();
      conn.db.close();
    },
  };
}

function migrate(db: DatabaseSync): void {
  const row = db.prepare("PRAGMA user_version").get() as { user_version: number };
  if (row.user_version > SCHEMA_VERSION) {
    throw new StorageError(
      `database schema version ${row.user_version} is newer than this nixcas (${SCHEMA_VERSION})`,
    );
  }
  if (row.user_version < SCHEMA_VERSION) {
    transaction(db, () => {
      // Read again under the write lock: another process may have migrated meanwhile.
      const { user_version: v } = db.prepare("PRAGMA user_version").get() as typeof row;
      if (v === SCHEMA_VERSION) return;
      db.exec(v === 1 ? MIGRATE_FROM_V1 : SCHEMA);
      db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    });
  }
  // Chunks of writers that crashed long ago; recent ones may belong to live writers elsewhere.
  const stale = Date.now() - STALE_UPLOAD_MS;
  transaction(db, () => {
    db.prepare(
      "DELETE FROM chunks WHERE data_id IN (SELECT data_id FROM uploads WHERE started < ?)",
    )
      .run(stale);
    db.prepare("DELETE FROM uploads WHERE started < ?").run(stale);
  });
}

/**
 * Runs `fn` in an IMMEDIATE transaction (takes the write lock up front, so concurrent writers
 * wait on the busy timeout instead of failing on upgrade), committing on success.
 */
export function transaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec("BEGIN IMMEDIATE");
  try {
    const result = fn();
    db.exec("COMMIT");
    return result;
  } catch (e) {
    try {
      db.exec("ROLLBACK");
    } catch { /* already rolled back */ }
    throw e;
  }
}

/** Wraps a database error as a {@linkcode StorageError} naming what was being done. */
export function storageError(what: string, e: unknown): StorageError {
  if (e instanceof StorageError) return e;
  return new StorageError(`${what}: ${(e as Error)?.message ?? e}`, { cause: e });
}

// Buffers returned by node:sqlite live outside the V8 heap without being reported to it, so V8
// does not collect them in time: reading a 1 GiB blob grew RSS to ~600 MiB (measured). Running
// a full GC (~12 ms) after every 64 MiB read keeps memory flat at negligible cost.
const GC_EVERY = 64 << 20;
let unaccounted = 0;
let collect: (() => void) | null | undefined;

/** Records `n` bytes handed out by SQLite; collects garbage after every {@linkcode GC_EVERY}. */
export function noteSqliteBytes(n: number): void {
  if (collect === undefined) {
    // node:v8 and node:vm load Deno's Node compatibility layer (~20 ms), so only once bytes
    // are actually read; the first collection may come one round late.
    collect = null;
    Promise.all([import("node:v8"), import("node:vm")]).then(([v8, vm]) => {
      v8.default.setFlagsFromString("--expose-gc");
      collect = vm.default.runInNewContext("gc") as () => void;
    }).catch(() => {});
  }
  unaccounted += n;
  if (unaccounted < GC_EVERY) return;
  unaccounted = 0;
  collect?.();
}
