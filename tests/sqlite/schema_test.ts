/**
 * The SQLite schema: what a new file gets, and that a file written by schema version 1
 * (WITHOUT ROWID tables) is migrated in place without losing a byte.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { blake3 } from "../../src/castore/digest.ts";
import { SqliteBlobService } from "../../src/castore/blob/sqlite.ts";
import { SqliteDirectoryService } from "../../src/castore/directory/sqlite.ts";
import { readBlob } from "../../src/castore/blob/util.ts";
import { directoryDigest, encodeDirectory, makeDirectory } from "../../src/castore/directory.ts";
import { chunkFilePath, openDatabase, SCHEMA_VERSION } from "../../src/sqlite/db.ts";
import { StorageError } from "../../src/castore/errors.ts";

// The schema nixcas 0.1.0 created (version 1), verbatim.
const SCHEMA_V1 = `
CREATE TABLE blobs (digest BLOB PRIMARY KEY, size INTEGER NOT NULL, data BLOB, data_id INTEGER)
  WITHOUT ROWID;
CREATE TABLE chunks (data_id INTEGER NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL,
  PRIMARY KEY (data_id, idx)) WITHOUT ROWID;
CREATE TABLE uploads (data_id INTEGER PRIMARY KEY AUTOINCREMENT, started INTEGER NOT NULL);
CREATE TABLE directories (digest BLOB PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE path_infos (digest BLOB PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE nar_cache (node BLOB PRIMARY KEY, nar_size INTEGER NOT NULL,
  nar_sha256 BLOB NOT NULL) WITHOUT ROWID;
PRAGMA user_version = 1;
`;

function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed + (i >> 10)) & 0xff;
  return out;
}

Deno.test("a new database gets the current schema version with rowid blob tables", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const h = openDatabase(`${dir}/s.db`);
    const v = h.db.prepare("PRAGMA user_version").get() as { user_version: number };
    assert.deepEqual(v.user_version, SCHEMA_VERSION);
    const sql = h.db.prepare("SELECT sql FROM sqlite_schema WHERE name = 'blobs'").get() as {
      sql: string;
    };
    assert.deepEqual(/WITHOUT ROWID/i.test(sql.sql), false);
    // Chunk rows live in the chunk file, not in the main one.
    const inBulk = h.bulk.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").all()
      .map((r) => r.name).sort();
    assert.deepEqual(inBulk, ["chunks", "sqlite_sequence", "uploads"]);
    const inMain = h.db.prepare("SELECT 1 FROM main.sqlite_schema WHERE name = 'chunks'").get();
    assert.equal(inMain, undefined);
    await h.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a version 1 database is migrated with every blob, chunk and directory intact", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/v1.db`;
  try {
    const small = pattern(5000, 1);
    const big = pattern(2 * 1024 * 1024 + 17, 2);
    const dirMsg = makeDirectory({
      files: [{
        $typeName: "tvix.castore.v1.FileNode",
        executable: false,
        name: new TextEncoder().encode("a"),
        digest: blake3(small).bytes,
        size: 5000,
      }],
    });
    const old = new DatabaseSync(path);
    old.exec("PRAGMA journal_mode = WAL");
    old.exec(SCHEMA_V1);
    old.prepare("INSERT INTO blobs (digest, size, data) VALUES (?, ?, ?)")
      .run(blake3(small).bytes, small.length, small);
    old.prepare("INSERT INTO blobs (digest, size, data_id) VALUES (?, ?, ?)")
      .run(blake3(big).bytes, big.length, 7);
    const chunk = old.prepare("INSERT INTO chunks (data_id, idx, data) VALUES (?, ?, ?)");
    for (let i = 0; i * 1048576 < big.length; i++) {
      chunk.run(7, i, big.subarray(i * 1048576, (i + 1) * 1048576));
    }
    old.prepare("INSERT INTO directories (digest, data) VALUES (?, ?)")
      .run(directoryDigest(dirMsg).bytes, encodeDirectory(dirMsg));
    old.close();

    const blobs = new SqliteBlobService(path);
    const dirs = new SqliteDirectoryService(path);
    try {
      assert.deepEqual(await readBlob(blobs, blake3(small)), small);
      assert.deepEqual(await readBlob(blobs, blake3(big)), big);
      const got = await dirs.get(directoryDigest(dirMsg));
      assert.deepEqual(got && directoryDigest(got).toString(), directoryDigest(dirMsg).toString());
      // New writes land next to the migrated rows.
      const more = pattern(1500000, 3);
      const w = await blobs.openWrite();
      await w.write(more);
      assert.deepEqual((await w.close()).toString(), blake3(more).toString());
      assert.deepEqual(await readBlob(blobs, blake3(more)), more);
    } finally {
      await blobs.close();
      await dirs.close();
    }
    const check = new DatabaseSync(path);
    const v = check.prepare("PRAGMA user_version").get() as { user_version: number };
    assert.deepEqual(v.user_version, SCHEMA_VERSION);
    const leftovers = check.prepare("SELECT name FROM sqlite_schema WHERE name LIKE '%_v1'").all();
    assert.deepEqual(leftovers, []);
    check.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a database from a newer nixcas is refused with its version named", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const db = new DatabaseSync(`${dir}/new.db`);
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    assert.throws(
      () => openDatabase(`${dir}/new.db`),
      (e) =>
        e instanceof StorageError && e.message.includes(`version ${SCHEMA_VERSION + 1} is newer`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("large blobs go to the chunk file, written once through a rollback journal", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/bulk.db`;
  try {
    const blobs = new SqliteBlobService(path);
    const data = pattern(24 * 1024 * 1024 + 5, 4);
    const w = await blobs.openWrite();
    for (let o = 0; o < data.length; o += 1 << 20) await w.write(data.subarray(o, o + (1 << 20)));
    const digest = await w.close();
    // Committed chunk by chunk straight into the chunk file: no WAL holds them.
    assert.ok((await Deno.stat(chunkFilePath(path))).size > data.length);
    const wal = await Deno.stat(`${path}-wal`).then((s) => s.size, () => 0);
    assert.ok(wal < 1 << 20, `the WAL holds ${wal} bytes`);
    await blobs.close();
    const again = new SqliteBlobService(path);
    try {
      assert.deepEqual(await readBlob(again, digest), data);
    } finally {
      await again.close();
    }
    const check = new DatabaseSync(chunkFilePath(path));
    // A rollback journal kept for reuse (PERSIST), and no WAL beside the chunk file.
    assert.ok((await Deno.stat(`${chunkFilePath(path)}-journal`)).isFile);
    await assert.rejects(() => Deno.stat(`${chunkFilePath(path)}-wal`), Deno.errors.NotFound);
    assert.equal((check.prepare("SELECT count(*) AS n FROM uploads").get() as { n: number }).n, 0);
    check.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a writer that died: its chunks go after a day, a blob it finished stays", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/crash.db`;
  try {
    const blobs = new SqliteBlobService(path);
    const kept = pattern(2 * 1024 * 1024 + 1, 6);
    const w = await blobs.openWrite();
    await w.write(kept);
    const keptDigest = await w.close();
    await blobs.close();
    // Simulate two crashed writers of two days ago: one died before its blob row (orphan
    // chunks), one right after it (the blob is complete, only the upload row is left).
    const db = new DatabaseSync(path);
    db.prepare("ATTACH DATABASE ? AS bulk").run(chunkFilePath(path));
    const { data_id: keptId } = db.prepare("SELECT data_id FROM blobs WHERE digest = ?")
      .get(keptDigest.bytes) as { data_id: number };
    const old = Date.now() - 2 * 24 * 3600 * 1000;
    db.prepare("INSERT INTO bulk.uploads (data_id, started) VALUES (?, ?)").run(keptId, old);
    const orphan = Number(
      db.prepare("INSERT INTO bulk.uploads (started) VALUES (?)").run(old).lastInsertRowid,
    );
    db.prepare("INSERT INTO bulk.chunks (data_id, idx, data) VALUES (?, 0, ?)")
      .run(orphan, pattern(1000, 7));
    db.close();

    const again = new SqliteBlobService(path);
    try {
      assert.deepEqual(await readBlob(again, keptDigest), kept);
    } finally {
      await again.close();
    }
    const check = new DatabaseSync(chunkFilePath(path));
    const left = check.prepare("SELECT count(*) AS n FROM chunks WHERE data_id = ?").get(orphan);
    assert.equal((left as { n: number }).n, 0);
    assert.equal((check.prepare("SELECT count(*) AS n FROM uploads").get() as { n: number }).n, 0);
    check.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// The schema version 2 created, verbatim (chunks and uploads still in the main file).
const SCHEMA_V2 = `
CREATE TABLE blobs (digest BLOB NOT NULL UNIQUE, size INTEGER NOT NULL, data BLOB,
  data_id INTEGER);
CREATE TABLE chunks (data_id INTEGER NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL,
  PRIMARY KEY (data_id, idx));
CREATE TABLE uploads (data_id INTEGER PRIMARY KEY AUTOINCREMENT, started INTEGER NOT NULL);
CREATE TABLE directories (digest BLOB NOT NULL UNIQUE, data BLOB NOT NULL);
CREATE TABLE path_infos (digest BLOB PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE nar_cache (node BLOB PRIMARY KEY, nar_size INTEGER NOT NULL,
  nar_sha256 BLOB NOT NULL) WITHOUT ROWID;
PRAGMA user_version = 2;
`;

Deno.test("a version 2 database: chunks move to the chunk file, new ids stay unique", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/v2.db`;
  try {
    const big = pattern(2 * 1024 * 1024 + 9, 8);
    const old = new DatabaseSync(path);
    old.exec("PRAGMA journal_mode = WAL");
    old.exec(SCHEMA_V2);
    // A finished upload with id 40 (its uploads row is gone, as after a normal close), and an
    // upload in progress with id 41.
    old.prepare("INSERT INTO uploads (data_id, started) VALUES (41, ?)").run(Date.now());
    old.prepare("INSERT INTO blobs (digest, size, data_id) VALUES (?, ?, 40)")
      .run(blake3(big).bytes, big.length);
    const chunk = old.prepare("INSERT INTO chunks (data_id, idx, data) VALUES (?, ?, ?)");
    for (let i = 0; i * 1048576 < big.length; i++) {
      chunk.run(40, i, big.subarray(i * 1048576, (i + 1) * 1048576));
    }
    chunk.run(41, 0, pattern(1048576, 9));
    old.close();

    const blobs = new SqliteBlobService(path);
    try {
      assert.deepEqual(await readBlob(blobs, blake3(big)), big);
      const more = pattern(1048576 * 3 + 5, 10);
      const w = await blobs.openWrite();
      await w.write(more);
      await w.close();
      assert.deepEqual(await readBlob(blobs, blake3(more)), more);
      assert.deepEqual(await readBlob(blobs, blake3(big)), big);
    } finally {
      await blobs.close();
    }
    const check = new DatabaseSync(path);
    check.prepare("ATTACH DATABASE ? AS bulk").run(chunkFilePath(path));
    const v = check.prepare("PRAGMA user_version").get() as { user_version: number };
    assert.equal(v.user_version, SCHEMA_VERSION);
    assert.equal(
      check.prepare("SELECT 1 FROM main.sqlite_schema WHERE name = 'chunks'").get(),
      undefined,
    );
    const ids = check.prepare("SELECT data_id FROM blobs WHERE data_id IS NOT NULL ORDER BY 1")
      .all()
      .map((r) => r.data_id);
    assert.equal(ids[0], 40);
    assert.ok((ids[1] as number) > 41, `new upload got id ${ids[1]}`);
    // The upload in progress kept its chunk (a live writer elsewhere may still finish it).
    const n = check.prepare("SELECT count(*) AS n FROM bulk.chunks WHERE data_id = 41").get();
    assert.equal((n as { n: number }).n, 1);
    check.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
