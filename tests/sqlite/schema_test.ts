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
import { openDatabase, SCHEMA_VERSION } from "../../src/sqlite/db.ts";
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
    const sql = h.db.prepare("SELECT sql FROM sqlite_schema WHERE name = 'chunks'").get() as {
      sql: string;
    };
    assert.deepEqual(/WITHOUT ROWID/i.test(sql.sql), false);
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

Deno.test("bulk writes are checkpointed in a worker: data is in the database file at close", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/bulk.db`;
  try {
    const blobs = new SqliteBlobService(path);
    const data = pattern(24 * 1024 * 1024 + 5, 4);
    const w = await blobs.openWrite();
    for (let o = 0; o < data.length; o += 1 << 20) await w.write(data.subarray(o, o + (1 << 20)));
    const digest = await w.close();
    // This connection no longer checkpoints; the worker does, while we go on.
    const probe = openDatabase(path);
    const auto = probe.db.prepare("PRAGMA wal_autocheckpoint").get() as Record<string, number>;
    assert.equal(Object.values(auto)[0], 0);
    await probe.release();
    const deadline = Date.now() + 10_000;
    while ((await Deno.stat(path)).size < 16 << 20) {
      assert.ok(Date.now() < deadline, "the worker never checkpointed");
      await new Promise((r) => setTimeout(r, 20));
    }
    // A second writer while the checkpointer may still be busy.
    const more = pattern(3 * 1024 * 1024, 5);
    const w2 = await blobs.openWrite();
    await w2.write(more);
    await w2.close();
    await blobs.close();
    // The last connection is closed: the WAL is gone and every page is in the main file.
    await assert.rejects(() => Deno.stat(`${path}-wal`), Deno.errors.NotFound);
    assert.ok((await Deno.stat(path)).size > data.length + more.length);
    const again = new SqliteBlobService(path);
    try {
      assert.deepEqual(await readBlob(again, digest), data);
      assert.deepEqual(await readBlob(again, blake3(more)), more);
    } finally {
      await again.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
