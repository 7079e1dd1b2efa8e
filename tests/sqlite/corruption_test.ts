/**
 * Corrupt bytes in an SQLite store (its pack file, an inline blob row, a directory row) are
 * caught before any of them reaches a caller: the library readers throw CorruptDataError naming
 * the digest, `cat` and `nar` exit 1 with at most a true prefix of the right output, and a
 * random byte flipped anywhere in the store never yields a wrong NAR.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { openStore } from "../../src/backends/open.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import { decodePositions, packFilePath } from "../../src/backends/sqlite/pack.ts";
import { putBlob, readBlob } from "../../src/castore/blob_util.ts";
import { SqliteBlobService } from "../../src/backends/sqlite/blob.ts";
import { B3Digest, blake3 } from "../../src/castore/digest.ts";
import { type AnyNode, makeDirectory } from "../../src/castore/directory.ts";
import { blobChunks, openVerifiedRead } from "../../src/castore/verify.ts";
import { concat } from "../../src/base/bytes.ts";
import { CorruptDataError } from "../../src/base/errors.ts";
import { importStorePath } from "../../src/store/import.ts";
import { renderNar } from "../../src/nar/render.ts";
import { nixcas } from "../prereq.ts";
import { forgetChunks } from "./rows.ts";
import { bytes } from "../fixtures.ts";

// In the pack file; past 4 MiB, which `cat` reads a piece of at a time.
const BIG = bytes(9 << 20, 1);
const MID = bytes(20 << 10, 2); // in the pack file, read on the calling thread
const SMALL = new TextEncoder().encode("inline blob row\n"); // in its blobs row

interface Fixture {
  tmp: string;
  db: string;
  storePath: string;
  pathDigest: Uint8Array;
  nar: Uint8Array;
  subdir: B3Digest;
}

/** A store with a big, a mid-sized and an inline file and a few directories, closed. */
async function fixture(): Promise<Fixture> {
  const tmp = await Deno.makeTempDir({ prefix: "nixcas-corrupt-" });
  const tree = `${tmp}/tree`;
  await Deno.mkdir(`${tree}/sub/deeper`, { recursive: true });
  await Deno.writeFile(`${tree}/big`, BIG);
  await Deno.writeFile(`${tree}/sub/mid`, MID);
  await Deno.writeFile(`${tree}/sub/deeper/small`, SMALL);
  await Deno.symlink("../big", `${tree}/sub/link`);
  const db = `${tmp}/store/store.db`;
  await Deno.mkdir(`${tmp}/store`);
  const store = await openStore(`sqlite://${db}`);
  try {
    const { storePath, pathInfo } = await importStorePath(tree, store);
    const nar = concat(
      await Array.fromAsync(
        renderNar(pathInfo.node!.node as AnyNode, store.blobs, store.directories),
      ),
    );
    const root = pathInfo.node!.node;
    assert.equal(root.case, "directory");
    const top = (await store.directories.get(digestOf(root.value.digest)))!;
    const sub = top.directories.find((d) => new TextDecoder().decode(d.name) === "sub")!;
    return {
      tmp,
      db,
      storePath: storePath.absolute,
      pathDigest: storePath.digest,
      nar,
      subdir: digestOf(sub.digest),
    };
  } finally {
    await store.close();
  }
}

function digestOf(b: Uint8Array): B3Digest {
  return B3Digest.fromBytes(b);
}

const isCorrupt = (digest: B3Digest) => (e: unknown) => {
  assert.ok(e instanceof CorruptDataError, String(e));
  // A chunked blob's reader names the chunk at fault, and the blob.
  if (e.digest !== digest.toString()) assert.ok(e.message.includes(`of blob ${digest}`), e.message);
  assert.ok(e.message.includes(digest.toString()), e.message);
  return true;
};

/** Flips one bit of the file at `pos`. */
async function flipFile(path: string, pos: number) {
  const f = await Deno.open(path, { read: true, write: true });
  try {
    const b = new Uint8Array(1);
    await f.seek(pos, Deno.SeekMode.Start);
    await f.read(b);
    b[0] ^= 0x10;
    await f.seek(pos, Deno.SeekMode.Start);
    await f.write(b);
  } finally {
    f.close();
  }
}

/** Flips one bit of the first byte of a BLOB column through SQLite. */
function flipColumn(db: string, table: string, digest: B3Digest, at = 0) {
  const conn = new DatabaseSync(db);
  try {
    const row = conn.prepare(`SELECT data FROM ${table} WHERE digest = ?`).get(digest.bytes) as {
      data: Uint8Array;
    };
    const data = row.data.slice();
    data[at] ^= 0x10;
    conn.prepare(`UPDATE ${table} SET data = ? WHERE digest = ?`).run(data, digest.bytes);
  } finally {
    conn.close();
  }
}

/** The pack position of byte `offset` of pack blob `digest`. */
function packOffset(db: string, digest: B3Digest, offset: number): number {
  const conn = new DatabaseSync(db, { readOnly: true });
  try {
    const row = conn.prepare("SELECT chunks FROM blobs WHERE digest = ?").get(digest.bytes) as {
      chunks: Uint8Array;
    };
    const positions = decodePositions(row.chunks);
    const chunk = 1 << 20;
    return positions[Math.floor(offset / chunk)] + (offset % chunk);
  } finally {
    conn.close();
  }
}

async function cli(f: Fixture, args: string[]) {
  const out = await nixcas(args, { env: { NIXCAS_DIR: `${f.tmp}/store` } });
  return { code: out.code, stdout: out.stdout, stderr: out.stderr };
}

/** `cat` and `nar` exit 1 naming `digest`, with at most a true prefix of the right output. */
async function cliFails(f: Fixture, catPath: string, want: Uint8Array, digest: B3Digest) {
  for (const [args, good] of [[["cat", catPath], want], [["nar", f.storePath], f.nar]] as const) {
    const out = await cli(f, [...args]);
    assert.equal(out.code, 1, `${args.join(" ")}: ${out.stderr}`);
    assert.equal(out.stderr.trim().split("\n").length, 1, out.stderr);
    assert.ok(out.stderr.includes(digest.toString()), out.stderr);
    assert.deepEqual(out.stdout, good.subarray(0, out.stdout.length), "a prefix of the truth");
  }
}

for (const listed of [false, true]) {
  // Imported without native BLAKE3, a big blob has no chunk list until one is asked for: its
  // windows are checked against the chaining values stored with it.
  const how = listed ? "with its chunk list" : "checked by its windows' chaining values";
  Deno.test(`sqlite: a flipped byte of a big blob in the pack file is caught by every reader (${how})`, async () => {
    const f = await fixture();
    try {
      const digest = blake3(BIG);
      const at = (6 << 20) + 12345; // in cat's second piece
      if (listed) {
        const s = await openStore(`sqlite://${f.db}`);
        assert.equal((await blobChunks(s.blobs, digest))!.length, 9);
        await s.close();
      }
      await flipFile(packFilePath(f.db), packOffset(f.db, digest, at));
      const store = await openStore(`sqlite://${f.db}`);
      try {
        await assert.rejects(readBlob(store.blobs, digest), isCorrupt(digest));
        const r = (await openVerifiedRead(store.blobs, digest))!;
        // The chunk holding the flipped byte fails, the chunks before it are fine.
        await assert.rejects(r.readAt(at - 5, 10), isCorrupt(digest));
        assert.deepEqual(await r.readAt(0, 10), BIG.subarray(0, 10));
        await r.close();
        if (listed) {
          // The chunk is a blob of its own, as corrupt when read by its digest.
          const third = (await blobChunks(store.blobs, digest))![6];
          await assert.rejects(readBlob(store.blobs, third.digest), isCorrupt(third.digest));
        } else {
          // No chunk list can be derived from corrupt bytes.
          await assert.rejects(blobChunks(store.blobs, digest), isCorrupt(digest));
        }
      } finally {
        await store.close();
      }
      await cliFails(f, `${f.storePath}/big`, BIG, digest);
    } finally {
      await Deno.remove(f.tmp, { recursive: true });
    }
  });
}

Deno.test("sqlite: a flipped byte of a small blob in the pack file is caught", async () => {
  const f = await fixture();
  try {
    const digest = blake3(MID);
    await flipFile(packFilePath(f.db), packOffset(f.db, digest, 777));
    const store = await openStore(`sqlite://${f.db}`);
    try {
      await assert.rejects(readBlob(store.blobs, digest), isCorrupt(digest));
      const r = (await openVerifiedRead(store.blobs, digest))!;
      await assert.rejects(r.readAt(700, 10), isCorrupt(digest));
      await r.close();
    } finally {
      await store.close();
    }
  } finally {
    await Deno.remove(f.tmp, { recursive: true });
  }
});

Deno.test("sqlite: a flipped byte of an inline blob row is caught by every reader", async () => {
  const f = await fixture();
  try {
    const digest = blake3(SMALL);
    flipColumn(f.db, "blobs", digest, 3);
    const store = await openStore(`sqlite://${f.db}`);
    try {
      await assert.rejects(readBlob(store.blobs, digest), isCorrupt(digest));
      const r = (await openVerifiedRead(store.blobs, digest))!;
      await assert.rejects(r.readAt(0, 1), isCorrupt(digest));
      await r.close();
    } finally {
      await store.close();
    }
    await cliFails(f, `${f.storePath}/sub/deeper/small`, SMALL, digest);
  } finally {
    await Deno.remove(f.tmp, { recursive: true });
  }
});

Deno.test("sqlite: a flipped byte of a directory row is a CorruptDataError naming it", async () => {
  const f = await fixture();
  try {
    // The last byte: inside the last entry's name or size, which still decodes.
    const conn = new DatabaseSync(f.db, { readOnly: true });
    const { n } = conn.prepare("SELECT length(data) AS n FROM directories WHERE digest = ?")
      .get(f.subdir.bytes) as { n: number };
    conn.close();
    flipColumn(f.db, "directories", f.subdir, n - 1);
    const store = await openStore(`sqlite://${f.db}`);
    try {
      await assert.rejects(store.directories.get(f.subdir), isCorrupt(f.subdir));
      const pathInfo = (await store.pathInfos.get(f.pathDigest))!;
      const root = pathInfo.node!.node;
      assert.equal(root.case, "directory");
      await assert.rejects(
        Array.fromAsync(store.directories.getRecursive(digestOf(root.value.digest))),
        isCorrupt(f.subdir),
      );
    } finally {
      await store.close();
    }
    await cliFails(f, `${f.storePath}/sub/mid`, MID, f.subdir);
  } finally {
    await Deno.remove(f.tmp, { recursive: true });
  }
});

Deno.test("memory: a directory whose stored bytes changed is a CorruptDataError naming it", async () => {
  const dirs = new MemoryDirectoryService();
  const digest = await dirs.put(makeDirectory({}));
  const d = await dirs.put(makeDirectory({
    directories: [{
      $typeName: "tvix.castore.v1.DirectoryNode",
      name: new TextEncoder().encode("empty"),
      digest: digest.bytes,
      size: 0,
    }],
  }));
  const stored = dirs.storedBytes(d)!;
  stored[stored.length - 1] ^= 1; // the size: still decodes
  await assert.rejects(dirs.get(d), isCorrupt(d));
});

/** A small xorshift generator: the trials are the same on every run. */
function rng(seed: number) {
  let x = seed | 0 || 1;
  return (n: number) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}

Deno.test("sqlite: 50 random flipped bytes in the pack or the database never give a wrong NAR", async () => {
  const f = await fixture();
  const random = rng(20261203);
  const conn = new DatabaseSync(f.db, { readOnly: true });
  const { used } = conn.prepare("SELECT used FROM pack WHERE id = 1").get() as { used: number };
  conn.close();
  const dbSize = (await Deno.stat(f.db)).size;
  const files = [...Deno.readDirSync(`${f.tmp}/store`)].map((e) => e.name);
  let loud = 0;
  let right = 0;
  try {
    for (let trial = 0; trial < 50; trial++) {
      const dir = `${f.tmp}/trial`;
      await Deno.mkdir(dir);
      for (const name of files) await Deno.copyFile(`${f.tmp}/store/${name}`, `${dir}/${name}`);
      const inPack = random(2) === 0;
      const pos = inPack ? random(used) : random(dbSize);
      await flipFile(inPack ? `${dir}/store.db-pack` : `${dir}/store.db`, pos);
      let out: Uint8Array | null = null;
      let error: unknown = null;
      try {
        const store = await openStore(`sqlite://${dir}/store.db`, {}, { readOnly: true });
        try {
          const info = await store.pathInfos.get(f.pathDigest);
          if (!info) throw new Error("path info gone");
          out = concat(
            await Array.fromAsync(
              renderNar(info.node!.node as AnyNode, store.blobs, store.directories),
            ),
          );
        } finally {
          await store.close();
        }
      } catch (e) {
        error = e;
      }
      if (error) loud++;
      else {
        assert.deepEqual(out, f.nar, `trial ${trial}: ${inPack ? "pack" : "db"} byte ${pos}`);
        right++;
      }
      await Deno.remove(dir, { recursive: true });
    }
  } finally {
    console.log(`random flips: ${loud} failed loudly, ${right} gave the right NAR`);
    await Deno.remove(f.tmp, { recursive: true });
  }
});

Deno.test("sqlite: a big blob flipped before its first read: no chunk list is derived or stored", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "nixcas-corrupt-" });
  const db = `${tmp}/store.db`;
  try {
    const blobs = new SqliteBlobService(db);
    const digest = await putBlob(blobs, BIG);
    await blobs.close();
    forgetChunks(db, digest.bytes); // as an import leaves it
    const at = packOffset(db, digest, (1 << 20) + 99);
    await flipFile(packFilePath(db), at);
    const again = new SqliteBlobService(db);
    try {
      await assert.rejects(again.chunks(digest), isCorrupt(digest));
      await assert.rejects(readBlob(again, digest), isCorrupt(digest));
      const check = new DatabaseSync(db, { readOnly: true });
      const rows = check.prepare("SELECT count(*) AS n FROM blobs").get();
      const listed = check.prepare("SELECT count(*) AS n FROM blobs WHERE parts IS NOT NULL").get();
      check.close();
      assert.deepEqual([{ ...rows }, { ...listed }], [{ n: 1 }, { n: 0 }], "no chunk rows");
      // Repaired, the same connection derives the list.
      await flipFile(packFilePath(db), at);
      assert.equal((await again.chunks(digest))!.length, 9);
      assert.deepEqual(await readBlob(again, digest), BIG);
    } finally {
      await again.close();
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
