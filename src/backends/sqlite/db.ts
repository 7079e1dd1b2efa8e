/**
 * The one SQLite schema behind all three services. A file opened by several services of one
 * process shares one connection; several processes may use the same file at once (busy
 * timeout).
 *
 * The bytes of large blobs live in the pack file beside the database (`<file>-pack`, see
 * `pack.ts`), at positions handed out by the `pack` table; each `blobs` row lists its chunks'
 * positions. Version 3 kept them as 1 MiB rows of a second SQLite file, where storing a 64 MiB
 * blob cost ~100 ms of this thread (copying each chunk into pages and writing them); a `pwrite`
 * on the thread pool costs it nothing. Pack space no blob keeps (copies of stored blobs, aborted
 * uploads) goes to a free list and is handed out again (see {@linkcode PackSpace}). The main
 * file is in WAL mode, so readers never wait for writers.
 *
 * Commands that only read open the file read-only ({@linkcode OpenOptions}): they never create
 * a store and can read one on a read-only filesystem.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { StorageError } from "../../base/errors.ts";
import { encodePositions, openPack, type Pack, packFilePath } from "./pack.ts";

/** Schema version stored in `PRAGMA user_version` of the main file. */
export const SCHEMA_VERSION = 7;

// Tables holding bytes are rowid tables with a separate unique index on the digest: in a
// WITHOUT ROWID table every row sits in the key's B-tree, so rows of kilobytes made random
// inserts split pages constantly (5,000 small blobs: 133-186 ms vs 33 ms, measured).
const DIRECTORIES = `
CREATE TABLE IF NOT EXISTS directories (
  digest BLOB NOT NULL UNIQUE,    -- 32-byte BLAKE3 of the canonical encoding
  data BLOB NOT NULL              -- the canonical encoding
);`;
// Version 5: pack space given back below `used` (blobs stored already, unused rests of
// extents), handed out again before the pack grows. Ranges never touch (they are merged).
const PACK_FREE = `
CREATE TABLE IF NOT EXISTS pack_free (
  pos INTEGER PRIMARY KEY,
  length INTEGER NOT NULL
);`;
const SCHEMA = `
CREATE TABLE IF NOT EXISTS blobs (
  digest BLOB NOT NULL UNIQUE,    -- 32-byte BLAKE3 of the contents
  size INTEGER NOT NULL,
  data BLOB,                      -- the contents of a blob of at most one chunk (1 MiB), else NULL
  chunks BLOB,                    -- else: its bytes' positions in the pack file, 8 bytes LE per MiB
  parts BLOB                      -- and (version 6) for a blob of more than one chunk: its chunks,
                                  -- each also a row of its own, 36 bytes each: BLAKE3 digest, size
                                  -- (4 bytes LE); NULL for big blobs stored before (unchunked)
  cvs BLOB                        -- and (version 7) for such a blob: the BLAKE3 chaining value of
                                  -- each whole 1 MiB piece (32 bytes each) in the blob's hash tree,
                                  -- which readers check each piece against; NULL if stored before
);
${DIRECTORIES}
CREATE TABLE IF NOT EXISTS path_infos (
  digest BLOB PRIMARY KEY,        -- 20-byte store path digest
  data BLOB NOT NULL              -- encoded tvix.store.v1.PathInfo
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nar_cache (
  node BLOB PRIMARY KEY,          -- encoded tvix.castore.v1.Node (root, name cleared)
  nar_size INTEGER NOT NULL,
  nar_sha256 BLOB NOT NULL
) WITHOUT ROWID;
-- Bytes of the pack file handed out so far. Space held by a process that crashed is not
-- reused; bytes past this point are garbage.
CREATE TABLE IF NOT EXISTS pack (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  used INTEGER NOT NULL
);
INSERT OR IGNORE INTO pack (id, used) VALUES (1, 0);
${PACK_FREE}
`;

// Version 1 kept blobs and directories in WITHOUT ROWID tables (same columns); versions 1 and
// 2 kept the chunks of large blobs in the main file (table chunks), version 3 in the chunk file;
// version 4 had no free list of pack space.
const REBUILD_V1 = `
ALTER TABLE blobs RENAME TO blobs_v1;
ALTER TABLE directories RENAME TO directories_v1;
CREATE TABLE blobs (digest BLOB NOT NULL UNIQUE, size INTEGER NOT NULL, data BLOB, data_id INTEGER);
${DIRECTORIES}
INSERT INTO blobs SELECT * FROM blobs_v1;
DROP TABLE blobs_v1;
INSERT INTO directories SELECT * FROM directories_v1;
DROP TABLE directories_v1;
`;

/** A range of pack file bytes: position and length. */
export type PackRange = [pos: number, length: number];

/**
 * Hands out pack file space to the writers of one process. Space is taken from the database
 * about {@linkcode EXTENT} bytes at a time (one commit, instead of one per 1 MiB chunk): free
 * ranges big enough for the request (`pack_free`, lowest position first), else a new extent at
 * the end (`pack.used`). Space a writer did not keep (a blob stored already, an aborted upload,
 * what is left when the process closes the store) goes back: to the range being handed out
 * when it was the last taken from it, else to the free list; free space at the end lowers
 * `used` and cuts the file. Only space held by a process that died is lost (at most what it had
 * taken and not used: about one extent).
 */
export class PackSpace {
  #db: DatabaseSync;
  #pack: Pack;
  #sql: Record<string, StatementSync> = {};
  // The range being handed out now, and more taken with it that come next.
  #next = 0;
  #end = 0;
  #queue: PackRange[] = [];
  // Rests of ranges too small for a request, freed with the next commit.
  #leftovers: PackRange[] = [];

  /** Space in `pack`, the pack of the database `db`. */
  constructor(db: DatabaseSync, pack: Pack) {
    this.#db = db;
    this.#pack = pack;
  }

  #stmt(sql: string): StatementSync {
    return this.#sql[sql] ??= this.#db.prepare(sql);
  }

  /** The position of `length` new bytes. */
  take(length: number): number {
    while (this.#end - this.#next < length) {
      if (this.#next < this.#end) this.#leftovers.push([this.#next, this.#end - this.#next]);
      const r = this.#queue.shift();
      if (r) [this.#next, this.#end] = [r[0], r[0] + r[1]];
      else {
        this.#next = this.#end = 0;
        this.#reserve(length);
      }
    }
    const pos = this.#next;
    this.#next += length;
    return pos;
  }

  /** Gives back space taken earlier and not used for any stored blob. */
  free(ranges: PackRange[]): void {
    const rest: PackRange[] = [];
    // Newest first: what was taken last from the current range goes back to it, no commit.
    for (const [pos, length] of [...ranges].sort((a, b) => b[0] - a[0])) {
      if (length === 0) continue;
      // (The range is ours, so it may even end where the current range starts.)
      if (pos + length === this.#next) this.#next = pos;
      else rest.push([pos, length]);
    }
    if (rest.length === 0) return;
    transaction(this.#db, () => {
      for (const r of coalesce(rest)) this.#freeRange(r);
      this.#trim(true);
    });
  }

  /** Returns all space held and unused to the database (when closing). */
  close(): void {
    const rest = [...this.#leftovers, ...this.#queue];
    if (this.#next < this.#end) rest.push([this.#next, this.#end - this.#next]);
    this.#next = this.#end = 0;
    this.#queue = [];
    this.#leftovers = [];
    if (rest.length === 0) return;
    transaction(this.#db, () => {
      for (const r of coalesce(rest)) this.#freeRange(r);
      this.#trim(true);
    });
  }

  /**
   * Takes about {@linkcode EXTENT} bytes from the database, in ranges of at least `length`:
   * free ones first (several in one commit: a free list fragmented into 1 MiB holes would
   * otherwise cost a commit per chunk), else from the end. Leftovers are freed meanwhile.
   */
  #reserve(length: number): void {
    const leftovers = this.#leftovers;
    this.#leftovers = [];
    const want = Math.max(length, EXTENT);
    const got = transaction(this.#db, (): PackRange[] => {
      if (leftovers.length > 0) {
        for (const r of coalesce(leftovers)) this.#freeRange(r);
        this.#trim(false); // the file is about to be written again
      }
      const holes = this.#stmt(
        "SELECT pos, length FROM pack_free WHERE length >= ? ORDER BY pos LIMIT 256",
      ).all(length) as { pos: number; length: number }[];
      const out: PackRange[] = [];
      let total = 0;
      for (const h of holes) {
        if (total >= want) break;
        const n = Math.min(h.length, want - total);
        if (n < length) break;
        if (n === h.length) this.#stmt("DELETE FROM pack_free WHERE pos = ?").run(h.pos);
        else {
          this.#stmt("UPDATE pack_free SET pos = pos + ?1, length = length - ?1 WHERE pos = ?2")
            .run(n, h.pos);
        }
        out.push([h.pos, n]);
        total += n;
      }
      if (out.length > 0) return out;
      const used = (this.#stmt("UPDATE pack SET used = used + ? WHERE id = 1 RETURNING used")
        .get(want) as { used: number }).used;
      return [[used - want, want]];
    }, () => {
      this.#leftovers = leftovers; // not freed: still ours
    });
    const [first, ...more] = got;
    [this.#next, this.#end] = [first[0], first[0] + first[1]];
    this.#queue = more;
  }

  /** Adds a range to the free list, merged with free neighbours (inside a transaction). */
  #freeRange([pos, length]: PackRange): void {
    let start = pos;
    let end = pos + length;
    const before = this.#stmt(
      "SELECT pos, length FROM pack_free WHERE pos < ? ORDER BY pos DESC LIMIT 1",
    ).get(pos) as { pos: number; length: number } | undefined;
    const after = this.#stmt(
      "SELECT pos, length FROM pack_free WHERE pos >= ? ORDER BY pos LIMIT 1",
    ).get(pos) as { pos: number; length: number } | undefined;
    // Giving back space that is free already would later hand it out twice.
    if ((before && before.pos + before.length > start) || (after && after.pos < end)) {
      throw new Error(`pack bytes ${pos}..${end} were given back twice`);
    }
    const drop = this.#stmt("DELETE FROM pack_free WHERE pos = ?");
    if (before && before.pos + before.length === start) {
      start = before.pos;
      drop.run(before.pos);
    }
    if (after && after.pos === end) {
      end += after.length;
      drop.run(after.pos);
    }
    this.#stmt("INSERT INTO pack_free (pos, length) VALUES (?, ?)").run(start, end - start);
    this.#pack.discard(pos, length);
  }

  /** Free space at the end of the pack lowers `used`; with `cut`, the file is cut there too. */
  #trim(cut: boolean): void {
    const { used } = this.#stmt("SELECT used FROM pack WHERE id = 1").get() as { used: number };
    const last = this.#stmt("SELECT pos, length FROM pack_free ORDER BY pos DESC LIMIT 1")
      .get() as { pos: number; length: number } | undefined;
    let end = used;
    if (last && last.pos + last.length === used) {
      this.#stmt("DELETE FROM pack_free WHERE pos = ?").run(last.pos);
      this.#stmt("UPDATE pack SET used = ? WHERE id = 1").run(last.pos);
      end = last.pos;
    }
    // Under the write lock: nobody can be handed the bytes past `used` meanwhile.
    if (cut && this.#pack.size() > end) this.#pack.truncate(end);
  }
}

/** Sorted ranges with touching neighbours merged. */
function coalesce(ranges: PackRange[]): PackRange[] {
  const out: PackRange[] = [];
  for (const [pos, length] of [...ranges].sort((a, b) => a[0] - b[0])) {
    const last = out[out.length - 1];
    if (last && last[0] + last[1] === pos) last[1] += length;
    else out.push([pos, length]);
  }
  return out;
}

/** Pack space is taken from the database this much at a time. */
export const EXTENT = 16 << 20;

/** A shared, reference-counted connection to one database file and its pack file. */
export interface SqliteHandle {
  /** The connection to the database file. */
  readonly db: DatabaseSync;
  /** The pack file holding the bytes of large blobs. */
  readonly pack: Pack;
  /** Space in the pack file for this process's writers. */
  readonly space: PackSpace;
  /** Where it lives (`:memory:` for a private in-memory database). */
  readonly path: string;
  /** False for a connection opened read-only: writes fail. */
  readonly writable: boolean;
  /** Drops this reference; the connection closes with the last one. */
  release(): Promise<void>;
}

/**
 * How an SQLite store is opened.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type OpenOptions, SqliteBlobService } from "@nixcas/nixcas/backends";
 * const options: OpenOptions = { readOnly: true };
 * // Reading never creates a store:
 * assert.throws(() => new SqliteBlobService("/nonexistent/store.db", options), /no store at/);
 * ```
 */
export interface OpenOptions {
  /**
   * Only read (default false): a missing file is an error instead of a new store, and a store
   * on a read-only filesystem can be read.
   */
  readOnly?: boolean;
  /**
   * Tune the connection for a long-running read server (the FUSE mount, the daemon; default
   * false): the database file is memory-mapped. Mapped pages count toward the process's RSS,
   * so one-shot commands leave this off. Connections to one file are shared in a process: one
   * opened so maps it for all. A blob service opened so also lists each big blob's chunks as
   * it writes it, where native BLAKE3 is loaded: the daemon's clients ask for them (`Stat` with
   * chunks); elsewhere the list is derived when it is first asked for.
   */
  readServer?: boolean;
}

interface Connection {
  db: DatabaseSync;
  pack: Pack;
  space: PackSpace;
  writable: boolean;
  refs: number;
}

// Shared connections: read-write ones by path, read-only ones by path + READER.
const open = new Map<string, Connection>();
const READER = "\0read-only";

// Bytes of a database file SQLite maps into memory for a read server.
const READ_SERVER_MMAP = 1024 ** 3;

function mapForReadServer(db: DatabaseSync): void {
  db.exec(`PRAGMA mmap_size = ${READ_SERVER_MMAP}`);
}

/** The chunk file of version 3 databases, beside the database at `path`. */
export function chunkFilePath(path: string): string {
  return `${path}-chunks`;
}

/**
 * Opens the database at `path`, or a private in-memory one for `":memory:"`: for writing
 * (created if missing), or with `readOnly` for reading only (a missing file is an error naming
 * it). Opening the same path again in this process shares the connection; a reader shares a
 * writer's.
 */
export function openDatabase(path: string, options: OpenOptions = {}): SqliteHandle {
  const readOnly = (options.readOnly ?? false) && path !== ":memory:";
  if (path !== ":memory:") {
    const key = open.has(path) || !readOnly ? path : path + READER;
    const shared = open.get(key);
    if (shared) {
      shared.refs++;
      if (options.readServer) mapForReadServer(shared.db);
      return handle(key, path, shared);
    }
  }
  const conn = readOnly ? openForReading(path) : openForWriting(path);
  if (options.readServer) mapForReadServer(conn.db);
  const key = conn.writable ? path : path + READER;
  if (path !== ":memory:") open.set(key, conn);
  return handle(key, path, conn);
}

function openForWriting(path: string): Connection {
  let db: DatabaseSync | undefined;
  let pack: Pack | undefined;
  try {
    // The pack first: it fails with the reason (EROFS, EACCES) where SQLite would open the
    // database read-only without a word, or say only "unable to open database file".
    pack = openPack(path);
    db = new DatabaseSync(path, { timeout: 30_000 });
    // 16 KiB pages: small commits write 4x less WAL than with 64 KiB pages.
    db.exec("PRAGMA page_size = 16384");
    if (path !== ":memory:") db.exec("PRAGMA journal_mode = WAL");
    // WAL + NORMAL: commits are atomic and durable up to the last checkpoint, without an fsync
    // per transaction.
    db.exec("PRAGMA synchronous = NORMAL");
    migrate(db, pack, path);
  } catch (e) {
    closeQuietly(db, pack);
    throw new StorageError(
      `cannot open SQLite database ${path} for writing: ${(e as Error).message}`,
      { cause: e },
    );
  }
  return { db, pack, space: new PackSpace(db, pack), writable: true, refs: 1 };
}

// Page cache of a read-only connection, in KiB (SQLite's default is 2,000).
const READ_CACHE_KIB = 32 * 1024;

// Schema versions a read-only connection can read as they are; older ones need a migration.
const READABLE_SINCE = 4;

function openForReading(path: string): Connection {
  try {
    Deno.statSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new StorageError(`no store at ${path} (nothing has been imported there yet)`, {
        cause: e,
      });
    }
    throw new StorageError(`cannot open SQLite database ${path}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  let db: DatabaseSync | undefined;
  let pack: Pack | undefined;
  try {
    db = openReadOnly(path);
    // A reader looks digests up at random (a NAR's blobs, in name order): a page cache that
    // holds the digest index (≈45 bytes a blob) saves a read of a 16 KiB page per lookup.
    // Pages are only taken as they are read.
    db.exec(`PRAGMA cache_size = -${READ_CACHE_KIB}`);
    const v = version(db);
    if (v > SCHEMA_VERSION) {
      throw new Error(`database schema version ${v} is newer than this nixcas (${SCHEMA_VERSION})`);
    }
    if (v === 0 && !hasTable(db, "blobs")) throw new Error("not a nixcas store (no tables)");
    pack = openPack(path, { readOnly: true });
    if (v < READABLE_SINCE) {
      closeQuietly(db, pack);
      db = pack = undefined;
      // Migrating an old store is the one write a reader does: its schema cannot be read.
      try {
        return openForWriting(path);
      } catch (e) {
        throw new StorageError(
          `the store ${path} has schema version ${v}, which must be upgraded before it can be ` +
            `read, and upgrading failed: ${(e as Error).message}`,
          { cause: e },
        );
      }
    }
  } catch (e) {
    closeQuietly(db, pack);
    if (e instanceof StorageError) throw e;
    throw new StorageError(`cannot open SQLite database ${path}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  return { db, pack, space: new PackSpace(db, pack), writable: false, refs: 1 };
}

/**
 * A read-only connection. A WAL database on a read-only filesystem cannot be opened as usual
 * when its `-shm` index file is missing (SQLite needs to create it); nobody can write there
 * either, so it is then opened as immutable — unless a write-ahead log there holds commits not
 * yet in the file. (A writer reaching the same file through another, writable mount while it
 * is open this way goes unseen: a read-only bind mount of a live store needs its `-shm`.)
 */
function openReadOnly(path: string): DatabaseSync {
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(path, { readOnly: true, timeout: 30_000 });
    version(db); // SQLite opens the WAL index only when first reading
    return db;
  } catch (e) {
    closeQuietly(db, undefined);
    if (!onReadOnlyFilesystem(path)) throw e;
    let wal = 0;
    try {
      wal = Deno.statSync(`${path}-wal`).size;
    } catch { /* no log */ }
    if (wal > 0) {
      throw new Error(
        `${path}-wal holds commits not yet in the database and the filesystem is read-only: ` +
          `open the store once where it is writable`,
      );
    }
    const url = new URL("file:///");
    url.pathname = path;
    url.search = "immutable=1";
    return new DatabaseSync(url, { readOnly: true });
  }
}

// Asked of the pack file: opening the database file itself would drop SQLite's POSIX locks on
// it held by this process.
function onReadOnlyFilesystem(path: string): boolean {
  try {
    Deno.openSync(packFilePath(path), { write: true }).close();
    return false;
  } catch (e) {
    return (e as { code?: string }).code === "EROFS";
  }
}

function closeQuietly(db: DatabaseSync | undefined, pack: Pack | undefined): void {
  try {
    pack?.close();
  } catch { /* not open */ }
  try {
    db?.close();
  } catch { /* not open */ }
}

function handle(key: string, path: string, conn: Connection): SqliteHandle {
  let released = false;
  return {
    db: conn.db,
    pack: conn.pack,
    space: conn.space,
    path,
    writable: conn.writable,
    release() {
      if (released) return Promise.resolve();
      released = true;
      if (open.get(key) === conn) {
        if (--conn.refs > 0) return Promise.resolve();
        open.delete(key);
      }
      try {
        if (conn.writable) conn.space.close();
      } finally {
        conn.db.close();
        conn.pack.close();
      }
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

/** Whether `table` has the column `name` (a read-only connection reads older versions as they are). */
export function hasColumn(db: DatabaseSync, table: string, name: string): boolean {
  return db.prepare(`SELECT 1 FROM pragma_table_info('${table}') WHERE name = ?`).get(name) !==
    undefined;
}

function migrate(db: DatabaseSync, pack: Pack, path: string): void {
  const v = version(db);
  if (v > SCHEMA_VERSION) {
    throw new StorageError(
      `database schema version ${v} is newer than this nixcas (${SCHEMA_VERSION})`,
    );
  }
  if (v === SCHEMA_VERSION) return;
  let moved = false;
  transaction(db, () => {
    // Again under the write lock: another process may have done it meanwhile.
    const now = version(db);
    if (now === SCHEMA_VERSION) return;
    if (now === 0 && !hasTable(db, "blobs")) {
      db.exec(SCHEMA);
    } else if (now >= 4) {
      db.exec(PACK_FREE);
    } else {
      if (now === 1) db.exec(REBUILD_V1);
      moved = moveChunksToPack(db, pack, path);
      db.exec(`
        DROP INDEX IF EXISTS blobs_by_data_id;
        ALTER TABLE blobs DROP COLUMN data_id;
        DROP TABLE IF EXISTS chunks;
        DROP TABLE IF EXISTS uploads;`);
    }
    // Version 6: big blobs list their chunks. Big blobs stored before stay unchunked.
    if (!hasColumn(db, "blobs", "parts")) db.exec("ALTER TABLE blobs ADD COLUMN parts BLOB");
    // Version 7: big blobs keep their pieces' chaining values.
    if (!hasColumn(db, "blobs", "cvs")) db.exec("ALTER TABLE blobs ADD COLUMN cvs BLOB");
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
  });
  if (moved) {
    for (const f of [chunkFilePath(path), `${chunkFilePath(path)}-journal`]) {
      try {
        Deno.removeSync(f);
      } catch { /* not there */ }
    }
  }
}

/**
 * Moves the chunk rows of an older database (version 1 or 2: table `chunks` of the main file;
 * version 3: the chunk file) into the pack file, inside the caller's transaction: the bytes are
 * written and synced first, then the rows point at them. A pack written by a migration that
 * crashed is garbage, so it starts empty. Returns whether a version 3 chunk file was read.
 */
function moveChunksToPack(db: DatabaseSync, pack: Pack, path: string): boolean {
  db.exec(`${SCHEMA}
    ALTER TABLE blobs ADD COLUMN chunks BLOB;`);
  let source: DatabaseSync | null = null;
  let fromFile = false;
  if (hasTable(db, "chunks")) source = db;
  else if (path !== ":memory:") {
    try {
      Deno.statSync(chunkFilePath(path));
      source = new DatabaseSync(chunkFilePath(path), { readOnly: true });
      fromFile = true;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  pack.truncate(0);
  try {
    if (!source) return false;
    const big = db.prepare("SELECT rowid, size, data_id FROM blobs WHERE data_id IS NOT NULL")
      .all() as { rowid: number; size: number; data_id: number }[];
    const chunk = source.prepare("SELECT data FROM chunks WHERE data_id = ? AND idx = ?");
    const set = db.prepare("UPDATE blobs SET chunks = ? WHERE rowid = ?");
    let used = 0;
    for (const b of big) {
      const positions: number[] = [];
      for (let idx = 0, stored = 0; stored < b.size; idx++) {
        const row = chunk.get(b.data_id, idx) as { data: Uint8Array } | undefined;
        if (!row) throw new Error(`chunk ${idx} of a ${b.size}-byte blob is missing`);
        pack.writeSync(used, row.data);
        noteSqliteBytes(row.data.length);
        positions.push(used);
        used += row.data.length;
        stored += row.data.length;
      }
      set.run(encodePositions(positions), b.rowid);
    }
    pack.syncSync();
    db.prepare("UPDATE pack SET used = ? WHERE id = 1").run(used);
    return fromFile;
  } finally {
    if (fromFile) source?.close();
  }
}

/**
 * Runs `fn` in an IMMEDIATE transaction (takes the write lock up front, so concurrent writers
 * wait on the busy timeout instead of failing on upgrade), committing on success; `onRollback`
 * runs when it fails.
 */
export function transaction<T>(db: DatabaseSync, fn: () => T, onRollback?: () => void): T {
  try {
    db.exec("BEGIN IMMEDIATE");
  } catch (e) {
    onRollback?.();
    throw e;
  }
  try {
    const result = fn();
    db.exec("COMMIT");
    return result;
  } catch (e) {
    try {
      db.exec("ROLLBACK");
    } catch { /* already rolled back */ }
    onRollback?.();
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
  unaccounted += n;
  if (unaccounted < GC_EVERY / 2) return;
  if (collect === undefined) {
    // node:v8 and node:vm load Deno's Node compatibility layer (~20 ms: a tenth of a small
    // closure copy), so only once half a round's bytes were read.
    collect = null;
    Promise.all([import("node:v8"), import("node:vm")]).then(([v8, vm]) => {
      v8.default.setFlagsFromString("--expose-gc");
      collect = vm.default.runInNewContext("gc") as () => void;
    }).catch(() => {});
  }
  if (unaccounted < GC_EVERY) return;
  unaccounted = 0;
  collect?.();
}
