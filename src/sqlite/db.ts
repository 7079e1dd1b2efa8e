/**
 * The one SQLite schema behind all three services. A file opened by several services of one
 * process shares one connection; several processes may use the same file at once (busy
 * timeout).
 *
 * The data of large blobs (1 MiB chunk rows) lives in a second file beside the database,
 * `<file>-chunks`, on a second connection (an attached file made each insert ~30% slower).
 * The main file is in WAL mode, so readers never wait for writers; but through a WAL every
 * byte is written twice (WAL, then checkpoint), and with its frame checksums a 64 MiB blob cost
 * ~110-125 ms of inserts and checkpoints. The chunk file uses a rollback journal: rows appended
 * past the end of the file need no journal content, so each byte is written once (~45 ms for
 * the same blob, measured on tmpfs; on disk equal to the WAL even with a full sync per commit).
 * Chunk rows are only reachable through a committed `blobs` row, so the two files never need
 * one atomic commit: chunks are committed first, the `blobs` row last.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { StorageError } from "../castore/errors.ts";

/** Schema version stored in `PRAGMA user_version` of the main file. */
export const SCHEMA_VERSION = 3;

// Tables holding bytes are rowid tables with a separate unique index on the digest: in a
// WITHOUT ROWID table every row sits in the key's B-tree, so rows of kilobytes made random
// inserts split pages constantly (5,000 small blobs: 133-186 ms vs 33 ms; 1 MiB chunk rows:
// 2.3-3 ms vs 1.2 ms each, measured).
const SCHEMA = `
CREATE TABLE IF NOT EXISTS blobs (
  digest BLOB NOT NULL UNIQUE,    -- 32-byte BLAKE3 of the contents
  size INTEGER NOT NULL,
  data BLOB,                      -- the contents of a blob of at most one chunk (1 MiB), else NULL
  data_id INTEGER                 -- else: the data_id of its rows in the chunk file
);
CREATE INDEX IF NOT EXISTS blobs_by_data_id ON blobs (data_id) WHERE data_id IS NOT NULL;
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

// The chunk file. Its uploads table hands out data ids.
const BULK_SCHEMA = `
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
`;

// Versions 1 and 2 kept chunks and uploads in the main file (version 1 also kept blobs and
// directories in WITHOUT ROWID tables, same columns).
const REBUILD_V1 =
  ["blobs", "directories"].map((t) => `ALTER TABLE ${t} RENAME TO ${t}_v1;`).join("\n") +
  SCHEMA +
  ["blobs", "directories"].map((t) => `INSERT INTO ${t} SELECT * FROM ${t}_v1; DROP TABLE ${t}_v1;`)
    .join("\n");

// Uploads older than this are from writers that died; their chunks can go.
const STALE_UPLOAD_MS = 24 * 3600 * 1000;

/** A shared, reference-counted connection to one database file (and its chunk file). */
export interface SqliteHandle {
  /** The connection to the main file. */
  readonly db: DatabaseSync;
  /** The connection to the chunk file (tables `chunks` and `uploads`). */
  readonly bulk: DatabaseSync;
  /** Where it lives (`:memory:` for a private in-memory database). */
  readonly path: string;
  /** Drops this reference; the connection closes with the last one. */
  release(): Promise<void>;
}

interface Connection {
  db: DatabaseSync;
  bulk: DatabaseSync;
  refs: number;
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
  for (const { db, bulk } of open.values()) {
    db.exec(`PRAGMA mmap_size = ${mmapBytes}`);
    bulk.exec(`PRAGMA mmap_size = ${mmapBytes}`);
  }
}

/** Settings of {@linkcode useReadServerMode}: mapped bytes and read workers (0 when off). */
export function readServerSettings(): { mmapBytes: number; readWorkers: number } {
  return { mmapBytes, readWorkers };
}

/** The chunk file beside the database at `path` (`:memory:` stays in memory). */
export function chunkFilePath(path: string): string {
  return path === ":memory:" ? ":memory:" : `${path}-chunks`;
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
  let db: DatabaseSync | undefined;
  let bulk: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(path, { timeout: 30_000 });
    // 16 KiB pages: small commits write 4x less WAL than with 64 KiB pages.
    db.exec("PRAGMA page_size = 16384");
    if (path !== ":memory:") db.exec("PRAGMA journal_mode = WAL");
    // WAL + NORMAL: commits are atomic and durable up to the last checkpoint, without an fsync
    // per transaction.
    db.exec("PRAGMA synchronous = NORMAL");
    bulk = new DatabaseSync(path === ":memory:" ? ":memory:" : chunkFilePath(path), {
      timeout: 30_000,
    });
    // 64 KiB pages: fewer, larger writes for 1 MiB rows (1.2x faster than 16 KiB here).
    bulk.exec("PRAGMA page_size = 65536");
    if (path !== ":memory:") bulk.exec("PRAGMA journal_mode = PERSIST");
    // A rollback journal is only safe from corruption on power loss with full syncs; commits
    // are whole chunks, so the syncs are few.
    bulk.exec("PRAGMA synchronous = FULL");
    if (mmapBytes > 0) {
      db.exec(`PRAGMA mmap_size = ${mmapBytes}`);
      bulk.exec(`PRAGMA mmap_size = ${mmapBytes}`);
    }
    migrate(db, bulk, path);
  } catch (e) {
    for (const c of [bulk, db]) {
      try {
        c?.close();
      } catch { /* not open */ }
    }
    throw new StorageError(`cannot open SQLite database ${path}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const conn: Connection = { db, bulk, refs: 1 };
  if (path !== ":memory:") open.set(path, conn);
  return handle(path, conn);
}

function handle(path: string, conn: Connection): SqliteHandle {
  let released = false;
  return {
    db: conn.db,
    bulk: conn.bulk,
    path,
    release() {
      if (released) return Promise.resolve();
      released = true;
      if (open.get(path) === conn) {
        if (--conn.refs > 0) return Promise.resolve();
        open.delete(path);
      }
      conn.bulk.close();
      conn.db.close();
      return Promise.resolve();
    },
  };
}

function version(db: DatabaseSync): number {
  return (db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version;
}

function hasTable(db: DatabaseSync, name: string): boolean {
  return db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?").get(name) !==
    undefined;
}

function migrate(db: DatabaseSync, bulk: DatabaseSync, path: string): void {
  const v = version(db);
  if (v > SCHEMA_VERSION) {
    throw new StorageError(
      `database schema version ${v} is newer than this nixcas (${SCHEMA_VERSION})`,
    );
  }
  if (!hasTable(bulk, "uploads")) transaction(bulk, () => bulk.exec(BULK_SCHEMA));
  if (v < SCHEMA_VERSION) {
    if (path !== ":memory:" && hasTable(db, "chunks")) moveChunks(bulk, path);
    // Then the main file: new tables, old ones dropped, the version raised.
    transaction(db, () => {
      const now = version(db); // again under the write lock: another process may have done it
      if (now === SCHEMA_VERSION) return;
      db.exec(now === 1 ? REBUILD_V1 : SCHEMA);
      db.exec("DROP TABLE IF EXISTS chunks; DROP TABLE IF EXISTS uploads;");
      db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    });
  }
  // Chunks of writers that crashed long ago; recent ones may belong to live writers elsewhere.
  // An upload whose blobs row was committed just before a crash is only forgotten.
  const stale = Date.now() - STALE_UPLOAD_MS;
  const dead = bulk.prepare("SELECT data_id FROM uploads WHERE started < ?").all(stale);
  if (dead.length > 0) {
    const used = db.prepare("SELECT 1 FROM blobs WHERE data_id = ?");
    const dropChunks = bulk.prepare("DELETE FROM chunks WHERE data_id = ?");
    const dropUpload = bulk.prepare("DELETE FROM uploads WHERE data_id = ?");
    transaction(bulk, () => {
      for (const { data_id: id } of dead) {
        if (!used.get(id as number)) dropChunks.run(id as number);
        dropUpload.run(id as number);
      }
    });
  }
}

/**
 * Copies the chunks and uploads of a version 1 or 2 file into the chunk file, committing that
 * alone: repeated after a crash, the copy is harmless (the same rows), and the originals stay
 * in place until the main file's migration drops them.
 */
function moveChunks(bulk: DatabaseSync, path: string): void {
  bulk.prepare("ATTACH DATABASE ? AS old").run(path);
  try {
    transaction(bulk, () => {
      // Again under the write lock: another process may have migrated meanwhile.
      const gone = !bulk.prepare("SELECT 1 FROM old.sqlite_schema WHERE name = 'chunks'").get();
      if (gone) return;
      bulk.exec(`
        INSERT OR IGNORE INTO chunks SELECT data_id, idx, data FROM old.chunks;
        INSERT OR IGNORE INTO uploads SELECT data_id, started FROM old.uploads;`);
      // New uploads must get ids above every id in use, finished uploads' included.
      const { top } = bulk.prepare(`SELECT max(
          coalesce((SELECT max(data_id) FROM old.blobs), 0),
          coalesce((SELECT seq FROM old.sqlite_sequence WHERE name = 'uploads'), 0),
          coalesce((SELECT max(data_id) FROM uploads), 0)) AS top`).get() as { top: number };
      bulk.prepare("INSERT INTO uploads (data_id, started) VALUES (?, 0)").run(top + 1);
      bulk.prepare("DELETE FROM uploads WHERE data_id = ?").run(top + 1);
    });
  } finally {
    bulk.exec("DETACH DATABASE old");
  }
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
