/**
 * The SQLite schema: what a new file gets, where the bytes of large blobs go (the pack file),
 * and that files written by schema versions 1 to 3 are migrated in place without losing a byte.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { blake3 } from "../../src/castore/digest.ts";
import { SqliteBlobService } from "../../src/backends/sqlite/blob.ts";
import { SqliteDirectoryService } from "../../src/backends/sqlite/directory.ts";
import { readBlob } from "../../src/castore/blob_util.ts";
import { directoryDigest, encodeDirectory, makeDirectory } from "../../src/castore/directory.ts";
import { chunkFilePath, openDatabase, SCHEMA_VERSION } from "../../src/backends/sqlite/db.ts";
import { encodePositions, packFilePath } from "../../src/backends/sqlite/pack.ts";
import { StorageError } from "../../src/base/errors.ts";

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

function usedPack(db: DatabaseSync): number {
  return (db.prepare("SELECT used FROM pack").get() as { used: number }).used;
}

function columns(db: DatabaseSync, table: string): string[] {
  return db.prepare(`PRAGMA table_info(${table})`).all().map((r) => r.name as string);
}

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
    const tables = h.db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").all()
      .map((r) => r.name as string).sort();
    assert.deepEqual(tables, [
      "blobs",
      "directories",
      "nar_cache",
      "pack",
      "pack_free",
      "path_infos",
    ]);
    assert.equal(usedPack(h.db), 0);
    assert.ok((await Deno.stat(packFilePath(`${dir}/s.db`))).isFile);
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
    assert.deepEqual(columns(check, "blobs"), ["digest", "size", "data", "chunks", "parts", "cvs"]);
    // The big blob, then the new one, each written once into the pack.
    assert.equal(usedPack(check), big.length + 1500000);
    check.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a version 1 database opened for reading only is upgraded first, then read", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/v1.db`;
  try {
    const big = pattern(1024 * 1024 + 99, 9);
    const old = new DatabaseSync(path);
    old.exec(SCHEMA_V1);
    old.prepare("INSERT INTO blobs (digest, size, data_id) VALUES (?, ?, ?)")
      .run(blake3(big).bytes, big.length, 1);
    const chunk = old.prepare("INSERT INTO chunks (data_id, idx, data) VALUES (?, ?, ?)");
    chunk.run(1, 0, big.subarray(0, 1048576));
    chunk.run(1, 1, big.subarray(1048576));
    old.close();
    const blobs = new SqliteBlobService(path, { readOnly: true });
    try {
      assert.deepEqual(await readBlob(blobs, blake3(big)), big);
    } finally {
      await blobs.close();
    }
    const check = new DatabaseSync(path);
    const v = check.prepare("PRAGMA user_version").get() as { user_version: number };
    assert.equal(v.user_version, SCHEMA_VERSION);
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

Deno.test("large blobs go to the pack file, written once", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/bulk.db`;
  try {
    const blobs = new SqliteBlobService(path);
    const data = pattern(24 * 1024 * 1024 + 5, 4);
    const w = await blobs.openWrite();
    for (let o = 0; o < data.length; o += 1 << 20) await w.write(data.subarray(o, o + (1 << 20)));
    const digest = await w.close();
    assert.equal((await Deno.stat(packFilePath(path))).size, data.length);
    const wal = await Deno.stat(`${path}-wal`).then((s) => s.size, () => 0);
    assert.ok(wal < 1 << 20, `the WAL holds ${wal} bytes`);
    await blobs.close();
    const again = new SqliteBlobService(path);
    try {
      assert.deepEqual(await readBlob(again, digest), data);
    } finally {
      await again.close();
    }
    const check = new DatabaseSync(path);
    assert.equal(usedPack(check), data.length);
    check.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an aborted upload and a second copy of a blob give their pack space back", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/space.db`;
  try {
    const blobs = new SqliteBlobService(path);
    const data = pattern(3 * 1024 * 1024 + 3, 5);
    const other = pattern(1536 * 1024, 6);
    try {
      for (const d of [data, data]) {
        const w = await blobs.openWrite();
        await w.write(d);
        await w.close();
      }
      const aborted = await blobs.openWrite();
      await aborted.write(pattern(2 * 1024 * 1024, 7));
      await aborted.abort();
      // The space of the copy and of the aborted upload is reused, not overwritten in use.
      const w = await blobs.openWrite();
      await w.write(other);
      await w.close();
      assert.deepEqual(await readBlob(blobs, blake3(data)), data);
      assert.deepEqual(await readBlob(blobs, blake3(other)), other);
    } finally {
      await blobs.close();
    }
    const check = new DatabaseSync(path);
    assert.equal(usedPack(check), data.length + other.length);
    check.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a version 4 database gets the free list of pack space", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/v4.db`;
  try {
    const data = pattern(2 * 1024 * 1024 + 9, 8);
    let blobs = new SqliteBlobService(path);
    const w = await blobs.openWrite();
    await w.write(data);
    const digest = await w.close();
    await blobs.close();
    // What version 4 had: the same, without pack_free.
    const old = new DatabaseSync(path);
    old.exec("DROP TABLE pack_free; PRAGMA user_version = 4");
    old.close();
    blobs = new SqliteBlobService(path);
    try {
      assert.deepEqual(await readBlob(blobs, digest), data);
      const copy = await blobs.openWrite();
      await copy.write(data);
      await copy.close();
    } finally {
      await blobs.close();
    }
    const check = new DatabaseSync(path);
    assert.equal(
      (check.prepare("PRAGMA user_version").get() as { user_version: number }).user_version,
      SCHEMA_VERSION,
    );
    assert.equal(usedPack(check), data.length);
    check.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a pack file cut short: reading names the pack file, the store stays usable", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/cut.db`;
  try {
    const blobs = new SqliteBlobService(path);
    const data = pattern(2 * 1024 * 1024 + 100, 7);
    const w = await blobs.openWrite();
    await w.write(data);
    const digest = await w.close();
    await Deno.truncate(packFilePath(path), 1024 * 1024);
    await assert.rejects(
      () => readBlob(blobs, digest),
      (e) => e instanceof StorageError && e.message.includes(packFilePath(path)),
    );
    assert.deepEqual(await readBlob(blobs, blake3(pattern(10, 1))).catch(() => null), null);
    await blobs.close();
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

Deno.test("a version 2 database: chunks move to the pack file", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/v2.db`;
  try {
    const big = pattern(2 * 1024 * 1024 + 9, 8);
    const old = new DatabaseSync(path);
    old.exec("PRAGMA journal_mode = WAL");
    old.exec(SCHEMA_V2);
    // A finished upload with id 40, and an upload in progress with id 41 (an old nixcas that
    // crashed: nothing points at its chunk, so it is not carried over).
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
    assert.equal(
      (check.prepare("PRAGMA user_version").get() as { user_version: number }).user_version,
      SCHEMA_VERSION,
    );
    for (const gone of ["chunks", "uploads"]) {
      assert.equal(
        check.prepare("SELECT 1 FROM sqlite_schema WHERE name = ?").get(gone),
        undefined,
      );
    }
    assert.equal(usedPack(check), big.length + 1048576 * 3 + 5);
    check.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// What version 3 created: chunk rows in a second SQLite file beside the main one.
const SCHEMA_V3 = `
CREATE TABLE blobs (digest BLOB NOT NULL UNIQUE, size INTEGER NOT NULL, data BLOB,
  data_id INTEGER);
CREATE INDEX blobs_by_data_id ON blobs (data_id) WHERE data_id IS NOT NULL;
CREATE TABLE directories (digest BLOB NOT NULL UNIQUE, data BLOB NOT NULL);
CREATE TABLE path_infos (digest BLOB PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE nar_cache (node BLOB PRIMARY KEY, nar_size INTEGER NOT NULL,
  nar_sha256 BLOB NOT NULL) WITHOUT ROWID;
PRAGMA user_version = 3;
`;
const CHUNK_FILE_V3 = `
CREATE TABLE chunks (data_id INTEGER NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL,
  PRIMARY KEY (data_id, idx));
CREATE TABLE uploads (data_id INTEGER PRIMARY KEY AUTOINCREMENT, started INTEGER NOT NULL);
`;

Deno.test("a version 3 database: the chunk file moves into the pack file and goes", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/v3.db`;
  try {
    const bigs = [pattern(2 * 1024 * 1024 + 11, 11), pattern(1024 * 1024 + 1, 12)];
    const small = pattern(777, 13);
    const old = new DatabaseSync(path);
    old.exec("PRAGMA journal_mode = WAL");
    old.exec(SCHEMA_V3);
    old.prepare("INSERT INTO blobs (digest, size, data) VALUES (?, ?, ?)")
      .run(blake3(small).bytes, small.length, small);
    const bulk = new DatabaseSync(chunkFilePath(path));
    bulk.exec("PRAGMA journal_mode = PERSIST");
    bulk.exec(CHUNK_FILE_V3);
    const chunk = bulk.prepare("INSERT INTO chunks (data_id, idx, data) VALUES (?, ?, ?)");
    bigs.forEach((big, k) => {
      old.prepare("INSERT INTO blobs (digest, size, data_id) VALUES (?, ?, ?)")
        .run(blake3(big).bytes, big.length, k + 1);
      for (let i = 0; i * 1048576 < big.length; i++) {
        chunk.run(k + 1, i, big.subarray(i * 1048576, (i + 1) * 1048576));
      }
    });
    bulk.close();
    old.close();

    const blobs = new SqliteBlobService(path);
    try {
      for (const b of [...bigs, small]) assert.deepEqual(await readBlob(blobs, blake3(b)), b);
    } finally {
      await blobs.close();
    }
    await assert.rejects(() => Deno.stat(chunkFilePath(path)), Deno.errors.NotFound);
    await assert.rejects(() => Deno.stat(`${chunkFilePath(path)}-journal`), Deno.errors.NotFound);
    const check = new DatabaseSync(path);
    assert.equal(usedPack(check), bigs[0].length + bigs[1].length);
    assert.deepEqual(columns(check, "blobs"), ["digest", "size", "data", "chunks", "parts", "cvs"]);
    check.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a version 5 database: its big blobs are read as they are, and chunked once read", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/v5.db`;
  try {
    await new SqliteBlobService(path).close();
    // What version 5 stored for a 3 MiB blob: its 1 MiB pieces' pack positions, no `parts`.
    const data = pattern(3 * 1024 * 1024 + 17, 9);
    const digest = blake3(data);
    await Deno.writeFile(packFilePath(path), data);
    const old = new DatabaseSync(path);
    old.prepare("INSERT INTO blobs (digest, size, chunks) VALUES (?, ?, ?)")
      .run(digest.bytes, data.length, encodePositions([0, 1 << 20, 2 << 20, 3 << 20]));
    old.exec(`UPDATE pack SET used = ${data.length}`);
    old.exec("ALTER TABLE blobs DROP COLUMN parts; PRAGMA user_version = 5");
    old.close();
    // Read as it is by a read-only connection.
    const reader = new SqliteBlobService(path, { readOnly: true });
    try {
      assert.deepEqual(await readBlob(reader, digest), data);
      // Derived for this process only: a version 5 file read-only has nowhere to keep them.
      const sizes = (await reader.chunks(digest))!.map((c) => c.size);
      assert.deepEqual(sizes, [1 << 20, 1 << 20, 1 << 20, 17]);
    } finally {
      await reader.close();
    }
    const blobs = new SqliteBlobService(path);
    try {
      assert.deepEqual(await readBlob(blobs, digest), data);
      const chunks = (await blobs.chunks(digest))!;
      assert.equal(chunks.length, 4);
      for (const c of chunks) assert.ok(await blobs.has(c.digest), "each chunk a blob of its own");
      const fresh = new Uint8Array(6 << 20);
      for (let o = 0; o < fresh.length; o += 65536) {
        crypto.getRandomValues(fresh.subarray(o, o + 65536));
      }
      const w = await blobs.openWrite();
      await w.write(fresh);
      const d = await w.close();
      assert.equal((await blobs.chunks(d))!.length, 6);
      assert.deepEqual(await readBlob(blobs, d), fresh);
    } finally {
      await blobs.close();
    }
    const check = new DatabaseSync(path);
    assert.equal(
      (check.prepare("PRAGMA user_version").get() as { user_version: number }).user_version,
      SCHEMA_VERSION,
    );
    assert.ok(columns(check, "blobs").includes("parts"));
    // Both blobs' chunk lists are stored now.
    const listed = check.prepare("SELECT count(*) AS n FROM blobs WHERE parts IS NOT NULL").get();
    assert.deepEqual({ ...listed }, { n: 2 });
    check.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
