/**
 * BlobService in an SQLite file: a small blob is a row in `blobs`; a large one is a row listing
 * the positions of its 1 MiB pieces in the pack file beside the database, so neither writing
 * nor reading holds a whole blob in memory. Each piece becomes a chunk, with a digest and a row
 * of its own, the first time the blob's chunks are asked for (every verified read asks): one
 * pass that checks the whole blob's digest as well, so that later reads check a chunk at a time.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { B3Digest, blake3 } from "../../castore/digest.ts";
import { CorruptDataError, InvalidRequestError } from "../../base/errors.ts";
import { concat } from "../../base/bytes.ts";
import { Blake3, subtreeCV } from "../../hash/blake3.ts";
import { nativeBlake3 } from "../../hash/blake3_native.ts";
import {
  hasColumn,
  noteSqliteBytes,
  openDatabase,
  type OpenOptions,
  type PackRange,
  type SqliteHandle,
  storageError,
  transaction,
} from "./db.ts";
import { decodePositions, encodePositions } from "./pack.ts";
import * as libc from "../../sys/libc.ts";
import { bufferReader } from "../../castore/blob_util.ts";
import { checkDigest, chunkedReader, windowedReader } from "../../castore/verify.ts";
import {
  type BlobReader,
  type BlobService,
  type BlobWriter,
  CHUNK_SIZE,
  type ChunkMeta,
  type ReadSmallHooks,
  type SmallBlobPut,
  type SmallRead,
} from "../../castore/blob_service.ts";

export type { OpenOptions } from "./db.ts";

// A batch of small blobs is committed once it holds this many rows or bytes, even before the
// event loop turns: memory stays bounded when a caller stores thousands without yielding.
const BATCH_ROWS = 4096;
const BATCH_BYTES = 16 << 20;
// Stored batches are committed together up to this many rows or bytes, or this old: below what
// callers bound (the importer waits once 2,048 files or 16 MiB are not stored yet).
const GROUP_ROWS = 1024;
const GROUP_BYTES = 8 << 20;
const GROUP_AGE_MS = 20;
// Blobs up to this size live in their row; the bytes of bigger ones go to the pack file. A row
// of kilobytes is written twice (the write-ahead log, then the checkpoint into the database)
// and checksummed on this thread, where a pack write runs on the thread pool.
export const INLINE_MAX = 4096;
// Single-chunk pack blobs up to this size are read on this thread: one pread from the page
// cache costs less than a round trip through the thread pool.
const SYNC_READ_MAX = 256 << 10;
// A big blob's chunks are its 1 MiB pieces, each a whole BLAKE3 subtree of the blob: one pass
// gives the chunks' digests and checks the blob's from their chaining values. Hashing them as
// the blob is written made importing a 64 MiB file 17-20% slower (docs/decisions/chunking.md).
const PIECE_CHUNKS = CHUNK_SIZE / 1024;
// Bytes per entry of a blob's `parts`: a chunk digest, then its size (u32 LE).
const PART_LEN = 36;
// Pieces read ahead while the chunk digests of a blob are derived.
const DERIVE_AHEAD = 3;
// Chunks fetched ahead of a sequential reader (checked meanwhile): more than one made sequential
// reads slower, not faster (docs/performance.md).
const READ_AHEAD = 1;
// Chunk lists derived by a connection that cannot store them, kept for the process.
const DERIVED_MAX = 4096;

/** A `blobs` row as `readSmall` reads it: size, inline bytes, pack positions. */
type BlobRow = [size: number, data: Uint8Array | null, chunks: Uint8Array | null];

/** A small blob waiting to be committed: inline (`data`), or at `pos` in the pack. */
interface SmallRow {
  digest: Uint8Array;
  size: number;
  data: Uint8Array | null;
  pos: number;
}

/** Small blobs waiting to be committed together. */
interface SmallBatch {
  rows: SmallRow[];
  bytes: number;
  /** Pack space its rows took (given back if they are not committed). */
  ranges: PackRange[];
  done: Promise<void>;
  resolve(): void;
  reject(e: unknown): void;
  commit(): void;
}

/**
 * Blobs in SQLite (`sqlite:///abs/path.db`). A blob becomes visible in one transaction when its
 * writer closes; writing a blob that already exists stores nothing new.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SqliteBlobService } from "@nixcas/nixcas/backends";
 * import { putBlob, readBlob } from "@nixcas/nixcas/castore";
 * const dir = await Deno.makeTempDir();
 * const blobs = new SqliteBlobService(`${dir}/blobs.db`);
 * const digest = await putBlob(blobs, new TextEncoder().encode("Hello, world!\n"));
 * await blobs.close();
 * // Reopened, the database still has the blob.
 * const again = new SqliteBlobService(`${dir}/blobs.db`);
 * assert.equal(new TextDecoder().decode(await readBlob(again, digest)), "Hello, world!\n");
 * await again.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class SqliteBlobService implements BlobService {
  #h: SqliteHandle;
  #has: StatementSync;
  #meta: StatementSync;
  #inline: StatementSync;
  #row: StatementSync;
  #rowArrays: boolean;
  #insertInline: StatementSync;
  #insertBlob: StatementSync;
  #chunkRow: StatementSync;
  /** Inserts a big blob's row with its windows' chaining values (null: the store has none). */
  #insertWindowed: StatementSync | null;
  /** Null where the store has no chunk lists (read-only, older than version 6). */
  #setParts: StatementSync | null;
  /** Whether the store has chunk lists (version 6; a read-only connection reads older ones). */
  #hasParts: boolean;
  // Chunk lists being derived (concurrent readers share the pass), and those derived by a
  // connection that cannot store them.
  #deriving = new Map<string, Promise<ChunkMeta[]>>();
  /** Whether writers list a big blob's chunks as they write it (read servers). */
  #eagerChunks: boolean;
  #derived = new Map<string, ChunkMeta[]>();

  /**
   * Opens the database at `path` (`:memory:` for a private in-memory one), created if missing
   * unless `options.readOnly`.
   */
  constructor(path: string, options: OpenOptions = {}) {
    this.#h = openDatabase(path, options);
    this.#eagerChunks = options.readServer ?? false;
    const db = this.#h.db;
    this.#has = db.prepare("SELECT 1 FROM blobs WHERE digest = ?");
    const parts = hasColumn(db, "blobs", "parts");
    const cvs = hasColumn(db, "blobs", "cvs");
    this.#meta = db.prepare(
      `SELECT size, chunks, ${parts ? "parts" : "NULL AS parts"}, ${
        cvs ? "cvs" : "NULL AS cvs"
      } FROM blobs WHERE digest = ?`,
    );
    this.#insertWindowed = cvs
      ? db.prepare("INSERT OR IGNORE INTO blobs (digest, size, chunks, cvs) VALUES (?, ?, ?, ?)")
      : null;
    this.#inline = db.prepare("SELECT data FROM blobs WHERE digest = ?");
    this.#row = db.prepare("SELECT size, data, chunks FROM blobs WHERE digest = ?");
    // Rows as arrays where the binding can: no object with named properties built per blob.
    const arrays = this.#row as unknown as { setReturnArrays?(on: boolean): void };
    this.#rowArrays = typeof arrays.setReturnArrays === "function";
    if (this.#rowArrays) arrays.setReturnArrays!(true);
    this.#insertInline = db.prepare(
      "INSERT OR IGNORE INTO blobs (digest, size, data) VALUES (?, ?, ?)",
    );
    this.#insertBlob = db.prepare(INSERT_PACKED);
    this.#chunkRow = db.prepare(
      `SELECT size, chunks, ${parts ? "parts" : "NULL AS parts"} FROM blobs WHERE digest = ?`,
    );
    this.#hasParts = parts;
    this.#setParts = parts ? db.prepare(SET_PARTS) : null;
  }

  /**
   * The {@linkcode BlobService} method of the same name: a blob of more than one 1 MiB piece
   * lists them, each a blob of its own; `[]` for a blob of one chunk. The first call for a big
   * blob reads it once to derive the list, failing with {@linkcode CorruptDataError} unless its
   * bytes hash to `digest`, and stores the list and the chunks' rows.
   */
  chunks(digest: B3Digest): Promise<ChunkMeta[] | null> {
    let row: { size: number; chunks: Uint8Array | null; parts: Uint8Array | null } | undefined;
    try {
      row = this.#chunkRow.get(digest.bytes) as typeof row;
      if (!row) return Promise.resolve(null);
      if (row.parts) return Promise.resolve(decodeParts(row.parts, row.size, digest));
    } catch (e) {
      return Promise.reject(e instanceof CorruptDataError ? e : storageError(`blob ${digest}`, e));
    }
    if (row.chunks === null || row.size <= CHUNK_SIZE) return Promise.resolve([]);
    const key = digest.key;
    const known = this.#derived.get(key);
    if (known) return Promise.resolve(known);
    let p = this.#deriving.get(key);
    if (!p) {
      p = this.#derive(digest, row.size, decodePositions(row.chunks));
      this.#deriving.set(key, p);
      const done = () => this.#deriving.delete(key);
      p.then(done, done);
    }
    return p;
  }

  /** Reads a big blob once: its pieces' digests, checked to make up `digest`, then stored. */
  async #derive(digest: B3Digest, size: number, positions: number[]): Promise<ChunkMeta[]> {
    const pieces = Math.ceil(size / CHUNK_SIZE);
    if (positions.length < pieces) {
      throw storageError(`blob ${digest}`, `piece ${positions.length} of ${pieces} is missing`);
    }
    // Native BLAKE3 where the program loaded it (servers, `nar` and `cat` of big files).
    const native = nativeBlake3();
    const pack = this.#h.pack;
    const whole = new Blake3();
    const chunks: ChunkMeta[] = [];
    const ahead: Promise<Uint8Array>[] = [];
    let next = 0;
    for (let i = 0; i < pieces; i++) {
      for (; next < pieces && ahead.length < DERIVE_AHEAD; next++) {
        const q = pack.read(positions[next], Math.min(CHUNK_SIZE, size - next * CHUNK_SIZE));
        q.catch(() => {}); // awaited in order below
        ahead.push(q);
      }
      let data: Uint8Array;
      try {
        data = await ahead.shift()!;
      } catch (e) {
        throw storageError(`blob ${digest}`, e);
      }
      if (data.length === CHUNK_SIZE) {
        const counter = i * PIECE_CHUNKS;
        const cv = native ? native.windowCV(data, counter) : subtreeCV(data, counter);
        whole.pushSubtree(cv, PIECE_CHUNKS);
      } else whole.update(data); // the last piece
      chunks.push({ digest: blake3(data), size: data.length });
    }
    const got = B3Digest.fromBytes(whole.digest());
    if (!got.equals(digest)) {
      throw new CorruptDataError(
        digest.toString(),
        `blob ${digest} is corrupt: its bytes hash to ${got}`,
      );
    }
    if (!this.#storeParts(digest, positions, chunks)) {
      if (this.#derived.size >= DERIVED_MAX) {
        this.#derived.delete(this.#derived.keys().next().value!);
      }
      this.#derived.set(digest.key, chunks);
    }
    return chunks;
  }

  /**
   * Stores a derived chunk list and a row per chunk (pointing at the blob's own piece; a chunk
   * stored already keeps its row). A read-only connection (`nar`, `cat`, a mount) stores it
   * through a connection of its own when the file can be written: every later reader gains.
   * False when it cannot be stored.
   */
  #storeParts(digest: B3Digest, positions: number[], chunks: ChunkMeta[]): boolean {
    if (!this.#hasParts) return false;
    let own: DatabaseSync | null = null;
    try {
      let set = this.#setParts;
      let insert = this.#insertBlob;
      if (!set || !this.#h.writable) {
        own = new DatabaseSync(this.#h.path, { timeout: 5_000 });
        set = own.prepare(SET_PARTS);
        insert = own.prepare(INSERT_PACKED);
      }
      transaction(own ?? this.#h.db, () => storeChunkRows(set!, insert, digest, positions, chunks));
      return true;
    } catch {
      return false; // read-only file or busy: the list serves this process
    } finally {
      own?.close();
    }
  }

  /** The {@linkcode BlobService} method of the same name. */
  has(digest: B3Digest): Promise<boolean> {
    try {
      return Promise.resolve(this.#has.get(digest.bytes) !== undefined);
    } catch (e) {
      return Promise.reject(storageError(`looking up blob ${digest}`, e));
    }
  }

  /** Readers check every blob and chunk against its digest before handing out its bytes. */
  readonly verifiesReads = true;

  /**
   * The {@linkcode BlobService} method of the same name. A blob of one chunk is read whole and
   * checked when first used; a big blob is read chunk by chunk (each checked, the next fetched
   * ahead of a sequential reader, a few kept), its chunk list derived first if it has none yet.
   */
  openRead(digest: B3Digest): Promise<BlobReader | null> {
    let row: {
      size: number;
      chunks: Uint8Array | null;
      parts: Uint8Array | null;
      cvs: Uint8Array | null;
    } | undefined;
    try {
      row = this.#meta.get(digest.bytes) as typeof row;
    } catch (e) {
      return Promise.reject(storageError(`looking up blob ${digest}`, e));
    }
    if (!row) return Promise.resolve(null);
    const size = row.size;
    const pack = this.#h.pack;
    const fail = (e: unknown) => {
      throw e instanceof CorruptDataError ? e : storageError(`blob ${digest}`, e);
    };
    if (row.chunks === null) {
      // Small blobs live inline in their blobs row.
      const r = this.#inline.get(digest.bytes) as { data: Uint8Array } | undefined;
      if (!r) return Promise.resolve(null);
      noteSqliteBytes(r.data.length);
      return Promise.resolve(checkedReader(digest, size, () => Promise.resolve(r.data)));
    }
    const positions = decodePositions(row.chunks);
    if (size <= CHUNK_SIZE) {
      return Promise.resolve(checkedReader(digest, size, () => {
        if (positions.length !== 1) throw new Error(`${positions.length} pack positions`);
        return size <= SYNC_READ_MAX
          ? Promise.resolve(pack.readSync(positions[0], size))
          : pack.read(positions[0], size);
      }, fail));
    }
    if (row.cvs && !row.parts && !this.#derived.has(digest.key)) {
      // No chunk list (stored without native BLAKE3): each window is checked against its
      // chaining value, as the blob's hash tree has it; the last bytes are read and checked now.
      const windows = Math.floor(size / CHUNK_SIZE);
      const tailLen = size - windows * CHUNK_SIZE;
      const cvs = row.cvs;
      if (positions.length < windows + (tailLen > 0 ? 1 : 0)) {
        return Promise.reject(
          new CorruptDataError(digest.toString(), `blob ${digest} is corrupt: pieces are missing`),
        );
      }
      const tail = tailLen > 0 ? pack.read(positions[windows], tailLen) : null;
      return (tail ?? Promise.resolve(new Uint8Array(0))).catch(fail).then((t) =>
        windowedReader(
          digest,
          size,
          cvs,
          t,
          (i) => pack.read(positions[i], CHUNK_SIZE).catch(fail),
          {
            readahead: READ_AHEAD,
            loadInto: (i, into) => pack.readInto(positions[i], into).catch(fail),
          },
        )
      );
    }
    return this.chunks(digest).then((chunks) => {
      if (!chunks) return null;
      // Chunk i is piece i.
      const aligned = chunks.length <= positions.length &&
        chunks.every((c, i) => c.size === Math.min(CHUNK_SIZE, size - i * CHUNK_SIZE));
      if (!aligned) {
        throw new CorruptDataError(
          digest.toString(),
          `blob ${digest} is corrupt: its chunk list does not match its pieces`,
        );
      }
      return chunkedReader(
        digest,
        chunks,
        (c, i) => pack.read(positions[i], c.size).catch(fail),
        {
          readahead: READ_AHEAD,
          loadInto: (_c, i, into) => pack.readInto(positions[i], into).catch(fail),
        },
      );
    });
  }

  /**
   * The {@linkcode BlobService} method of the same name: one lookup per blob, all in one read
   * transaction (alone, each takes and drops a lock on the write-ahead log index), and one read
   * per run of blobs that are neighbours in the pack file (the importer stores a directory's
   * files in order, so most runs are a whole directory); long runs are read on the thread pool.
   */
  readSmall(
    requests: readonly SmallRead[],
    into: Uint8Array,
    options: ReadSmallHooks = {},
  ): Promise<boolean[]> {
    const found: boolean[] = new Array(requests.length).fill(false);
    // Runs of pack bytes to read: [pack position, offset in `into`, length].
    const runs: [number, number, number][] = [];
    const db = this.#h.db;
    const own = !db.isTransaction;
    try {
      if (own) db.exec("BEGIN");
      try {
        let at = 0;
        for (let i = 0; i < requests.length; at += requests[i].size, i++) {
          const { digest, size } = requests[i];
          if (size > CHUNK_SIZE) continue;
          let row = this.#row.get(digest.bytes) as BlobRow | undefined;
          if (row && !this.#rowArrays) {
            const o = row as unknown as { size: number; data: Uint8Array; chunks: Uint8Array };
            row = [o.size, o.data, o.chunks];
          }
          if (!row || row[0] !== size) continue;
          const data = row[1];
          if (data !== null) {
            if (data.length !== size) continue; // openRead tells what is wrong
            into.set(data, at);
            noteSqliteBytes(size);
            found[i] = true;
            continue;
          }
          const c = row[2];
          if (c === null || c.length !== 8) continue;
          // One position, 8 bytes little-endian (decodePositions, without an array per blob).
          const pos = (c[0] | c[1] << 8 | c[2] << 16) + c[3] * 0x100_0000 +
            ((c[4] | c[5] << 8 | c[6] << 16) + c[7] * 0x100_0000) * 0x1_0000_0000;
          const last = runs[runs.length - 1];
          if (last && last[0] + last[2] === pos && last[1] + last[2] === at) last[2] += size;
          else runs.push([pos, at, size]);
          found[i] = true;
        }
      } finally {
        if (own) db.exec("COMMIT");
      }
    } catch (e) {
      return Promise.reject(storageError("looking up small blobs", e));
    }
    const pack = this.#h.pack;
    const read = async (list: [number, number, number][]) => {
      try {
        for (const [pos, at, n] of list) await pack.readInto(pos, into.subarray(at, at + n));
      } catch (e) {
        throw storageError("reading small blobs", e);
      }
    };
    if (options.deferRead && pack.fd >= 0 && runs.length > 0) {
      options.deferRead({
        fd: pack.fd,
        runs: new Float64Array(runs.flat()),
        retry: () => read(runs),
      });
      return Promise.resolve(found);
    }
    const slow: [number, number, number][] = [];
    try {
      for (const r of runs) {
        if (r[2] <= SYNC_READ_MAX) pack.readIntoSync(r[0], into.subarray(r[1], r[1] + r[2]));
        else slow.push(r);
      }
    } catch (e) {
      return Promise.reject(storageError("reading small blobs", e));
    }
    if (slow.length === 0) return Promise.resolve(found);
    return read(slow).then(() => found);
  }

  /** The {@linkcode BlobService} method of the same name. */
  putSmall(data: Uint8Array): SmallBlobPut {
    if (data.length > CHUNK_SIZE) {
      throw new InvalidRequestError(`putSmall takes at most ${CHUNK_SIZE} bytes`);
    }
    const digest = blake3(data);
    const stored = this.#commitInline(digest.bytes, data.length, data);
    return { digest, stored };
  }

  /** The {@linkcode BlobService} method of the same name. */
  openWrite(): Promise<BlobWriter> {
    // Each whole 1 MiB piece is hashed as it is stored: its chaining value (kept with the blob:
    // readers check each piece against it) makes up the blob's digest. A server with native
    // BLAKE3 loaded hashes the piece alone too, as the chunk it becomes, for its clients' `Stat`;
    // elsewhere the chunk list is derived when it is first asked for (a second hash of every
    // piece cost a 256 MiB NAR ingest 10-15%).
    const eagerChunks = this.#eagerChunks;
    const whole = new Blake3();
    const cvs: Uint8Array[] = [];
    const parts: (Uint8Array | null)[] = [];
    let pending: Uint8Array[] = [];
    let pendingLen = 0;
    let size = 0;
    // Pack positions of the chunks stored so far, and their writes still in flight.
    const positions: number[] = [];
    const lengths: number[] = [];
    const inFlight = new Set<Promise<void>>();
    let result: B3Digest | null = null;
    let aborted = false;
    const pack = this.#h.pack;

    const take = (n: number): Uint8Array => {
      if (pending.length === 1 && pending[0].length === n) {
        const only = pending[0];
        pending = [];
        pendingLen = 0;
        return only;
      }
      const out = new Uint8Array(n);
      let o = 0;
      while (o < n) {
        const p = pending[0];
        const k = Math.min(p.length, n - o);
        out.set(p.subarray(0, k), o);
        o += k;
        if (k === p.length) pending.shift();
        else pending[0] = p.subarray(k);
      }
      pendingLen -= n;
      return out;
    };
    /** Hands out pack space for `data` and starts writing it there. */
    const store = (data: Uint8Array): Promise<void> => {
      let pos: number;
      try {
        pos = this.#h.space.take(data.length);
      } catch (e) {
        return Promise.reject(storageError("reserving pack space", e));
      }
      positions.push(pos);
      lengths.push(data.length);
      const p = pack.write(pos, data).catch((e) => {
        throw storageError(`writing a blob chunk to ${pack.path}`, e);
      });
      inFlight.add(p);
      p.then(() => inFlight.delete(p), () => inFlight.delete(p));
      if (data.length === CHUNK_SIZE) {
        // Hashed here while the write runs on the thread pool (the tail is hashed by close).
        const counter = parts.length * PIECE_CHUNKS;
        const native = nativeBlake3();
        const cv = native ? native.windowCV(data, counter) : subtreeCV(data, counter);
        whole.pushSubtree(cv, PIECE_CHUNKS);
        cvs.push(cv);
        // The first piece may be the whole blob, whose digest is then its own.
        parts.push((native && eagerChunks) || parts.length === 0 ? blake3(data).bytes : null);
      }
      return p;
    };
    /** Waits for every write in flight; the first failure is thrown after all settled. */
    const settle = async () => {
      const results = await Promise.allSettled([...inFlight]);
      const failed = results.find((r) => r.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
    };
    /** Gives our space back: the blob is stored already, or the upload was abandoned. */
    const release = () => {
      const ranges = positions.map((p, i): PackRange => [p, lengths[i]]);
      positions.length = 0;
      lengths.length = 0;
      this.#h.space.free(ranges);
    };

    return Promise.resolve({
      write: async (data) => {
        if (result || aborted) throw new InvalidRequestError("blob writer is already closed");
        size += data.length;
        // Writes start first: they run on the thread pool while this thread hashes.
        if (pendingLen === 0 && data.length === CHUNK_SIZE) {
          // A whole chunk: written from the caller's buffer, which is why this waits.
          await store(data);
          return;
        }
        // Copy: callers may reuse their buffer once write() resolves.
        pending.push(data.slice());
        pendingLen += data.length;
        const stores: Promise<void>[] = [];
        while (pendingLen >= CHUNK_SIZE) stores.push(store(take(CHUNK_SIZE)));
        await Promise.all(stores);
      },
      close: async () => {
        if (aborted) throw new InvalidRequestError("blob writer was aborted");
        if (result) return result;
        const rest = take(pendingLen);
        let digest: B3Digest;
        if (positions.length === 0) digest = blake3(rest);
        else {
          if (rest.length > 0) {
            whole.update(rest);
            parts.push(blake3(rest).bytes);
          }
          // One whole piece alone is the blob: its own digest.
          digest = B3Digest.fromBytes(parts.length === 1 ? parts[0]! : whole.digest());
        }
        try {
          if (positions.length === 0) {
            // Everything is still in memory (at most one chunk): one row, committed together
            // with the rows of other writers closing at the same time.
            await this.#commitInline(digest.bytes, size, rest);
          } else if (this.#has.get(digest.bytes) === undefined) {
            const tail = rest.length > 0 ? store(rest) : Promise.resolve();
            tail.catch(() => {}); // thrown below, after every write settled
            await settle();
            await tail;
            // The bytes are durable before the row that makes them reachable.
            await pack.sync();
            const list = positions.length > 1 && parts.every((d) => d !== null)
              ? parts.map((d, i) => ({ digest: B3Digest.fromBytes(d!), size: lengths[i] }))
              : null;
            if (!this.#insertBig(digest, size, positions, list, concat(cvs))) release();
          } else {
            await settle(); // already stored: ours is not needed
            release();
          }
        } catch (e) {
          // Nothing points at the chunks written: their space goes back.
          aborted = true;
          pending = [];
          await settle().catch(() => {});
          try {
            release();
          } catch { /* leaks that space, the error below is what matters */ }
          throw storageError(`storing blob ${digest}`, e);
        }
        pending = [];
        result = digest;
        return digest;
      },
      abort: async () => {
        if (result || aborted) return;
        aborted = true;
        pending = [];
        try {
          await settle();
        } catch { /* a failed write is what made the caller abort */ }
        try {
          release();
        } catch (e) {
          throw storageError("discarding blob upload", e);
        }
      },
    });
  }

  /**
   * Commits a big blob's row and, with its chunk list, the list and a row per chunk (each
   * pointing at the blob's own piece; a chunk stored already keeps its row); false when the
   * blob was stored meanwhile (nothing written).
   */
  #insertBig(
    digest: B3Digest,
    size: number,
    positions: number[],
    chunks: ChunkMeta[] | null,
    cvs: Uint8Array,
  ): boolean {
    const row = encodePositions(positions);
    const insert = () =>
      (this.#insertWindowed
        ? this.#insertWindowed.run(digest.bytes, size, row, cvs)
        : this.#insertBlob.run(digest.bytes, size, row)).changes > 0;
    const setParts = this.#setParts;
    if (!chunks || !setParts) return insert();
    return transaction(this.#h.db, () => {
      if (!insert()) return false;
      storeChunkRows(setParts, this.#insertBlob, digest, positions, chunks);
      return true;
    });
  }

  // Small blobs closing together share one transaction: every commit writes at least one WAL
  // frame, so a commit per small file dominated importing many files.
  #batch: SmallBatch | null = null;
  // Batches whose pack bytes are written (or that have none), waiting to be committed as one
  // group; whether a turn is awaited to see if more come, and whether a group is being synced
  // and committed.
  #written: SmallBatch[] = [];
  #groupRows = 0;
  #groupBytes = 0;
  #groupSince = 0;
  #armed = false;
  #flushing = false;
  // Batches not committed yet (close waits for them).
  #unsettled = new Set<Promise<void>>();

  #commitInline(digest: Uint8Array, size: number, data: Uint8Array): Promise<void> {
    const batch = this.#batch ??= this.#newBatch();
    batch.rows.push({ digest, size, data, pos: -1 });
    batch.bytes += data.length;
    // A caller storing many blobs without yielding gets them committed every few MiB.
    if (batch.rows.length >= BATCH_ROWS || batch.bytes >= BATCH_BYTES) batch.commit();
    return batch.done;
  }

  #newBatch(): SmallBatch {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    promise.catch(() => {}); // each caller sees the error through its own await
    const batch: SmallBatch = {
      rows: [],
      bytes: 0,
      ranges: [],
      done: promise,
      resolve,
      reject,
      commit: () => {
        if (this.#batch !== batch) return; // already committed
        this.#batch = null;
        this.#store(batch);
      },
    };
    this.#unsettled.add(promise);
    const forget = () => this.#unsettled.delete(promise);
    promise.then(forget, forget);
    // After the current burst of I/O callbacks: writers that finish together join the batch.
    libc.nextTurn().then(batch.commit, batch.commit);
    return batch;
  }

  /**
   * Stores a batch: rows of tiny blobs are committed at once; bigger blobs' bytes are written to
   * the pack first (one write per run of neighbouring positions), then synced together with
   * those of other batches written meanwhile, and only then are their rows committed — a
   * committed row never points at bytes that are not on disk.
   */
  #store(batch: SmallBatch): void {
    const packed: SmallRow[] = [];
    try {
      // A blob stored already (or twice in this batch) is not written again; looked up in one
      // read transaction (alone, each lookup takes and drops a lock on the WAL index).
      const seen = new Set<string>();
      const db = this.#h.db;
      db.exec("BEGIN");
      try {
        for (const r of batch.rows) {
          if (r.size <= INLINE_MAX) continue;
          const key = String.fromCharCode(...r.digest);
          if (seen.has(key) || this.#has.get(r.digest) !== undefined) {
            r.data = null; // nothing to store: its row is skipped
            continue;
          }
          seen.add(key);
          packed.push(r);
        }
      } finally {
        db.exec("COMMIT");
      }
      for (const r of packed) {
        r.pos = this.#h.space.take(r.size);
        batch.ranges.push([r.pos, r.size]);
      }
    } catch (e) {
      this.#fail([batch], e);
      return;
    }
    if (packed.length === 0) {
      this.#ready(batch);
      return;
    }
    const writes: Promise<void>[] = [];
    for (let i = 0; i < packed.length;) {
      // Space is handed out in order, so most rows of a batch are neighbours.
      const parts = [packed[i].data!];
      let end = packed[i].pos + packed[i].size;
      let j = i + 1;
      for (; j < packed.length && packed[j].pos === end; j++) {
        parts.push(packed[j].data!);
        end += packed[j].size;
      }
      writes.push(this.#h.pack.writeParts(packed[i].pos, parts));
      i = j;
    }
    Promise.allSettled(writes).then((results) => {
      const failed = results.find((r) => r.status === "rejected");
      if (failed) {
        this.#fail([batch], (failed as PromiseRejectedResult).reason);
        return;
      }
      for (const r of packed) r.data = null; // in the pack now: memory goes back
      this.#ready(batch);
    });
  }

  /**
   * Adds a stored batch to the group to commit. Every commit writes each index page it touched
   * to the write-ahead log, and digests land on random pages, so a commit of ten rows cost
   * nearly what one of a hundred did: the group is committed once it is big, once it has
   * waited {@linkcode GROUP_AGE_MS}, or once a turn of the event loop brought no more (the
   * caller is waiting for it).
   */
  #ready(batch: SmallBatch): void {
    if (this.#written.length === 0) this.#groupSince = performance.now();
    this.#written.push(batch);
    this.#groupRows += batch.rows.length;
    this.#groupBytes += batch.bytes;
    if (this.#groupRows >= GROUP_ROWS || this.#groupBytes >= GROUP_BYTES) this.#flush();
    else this.#arm();
  }

  #arm(): void {
    if (this.#armed || this.#flushing) return;
    this.#armed = true;
    const seen = this.#written.length;
    libc.nextTurn().then(() => {
      this.#armed = false;
      const more = this.#written.length > seen;
      if (more && performance.now() - this.#groupSince < GROUP_AGE_MS) this.#arm();
      else this.#flush();
    }, () => {
      this.#armed = false;
      this.#flush();
    });
  }

  /** Syncs the pack for the batches of the group (when they wrote to it), then commits them. */
  #flush(): void {
    if (this.#flushing || this.#written.length === 0) return;
    this.#flushing = true;
    const group = this.#written.splice(0);
    this.#groupRows = this.#groupBytes = 0;
    const synced = group.some((b) => b.ranges.length > 0) ? this.#h.pack.sync() : Promise.resolve();
    synced.then(
      () => this.#commitRows(group),
      (e) => this.#fail(group, e),
    ).finally(() => {
      this.#flushing = false;
      if (this.#written.length === 0) return;
      this.#groupSince = performance.now();
      if (this.#groupRows >= GROUP_ROWS || this.#groupBytes >= GROUP_BYTES) this.#flush();
      else this.#arm();
    });
  }

  #commitRows(group: SmallBatch[]): void {
    const unused: PackRange[] = [];
    try {
      transaction(this.#h.db, () => {
        unused.length = 0;
        for (const batch of group) {
          for (const r of batch.rows) {
            if (r.pos >= 0) {
              const row = encodePositions([r.pos]);
              if (this.#insertBlob.run(r.digest, r.size, row).changes === 0) {
                unused.push([r.pos, r.size]); // another writer stored it meanwhile
              }
            } else if (r.data) this.#insertInline.run(r.digest, r.size, r.data);
          }
        }
      });
    } catch (e) {
      this.#fail(group, e);
      return;
    }
    for (const batch of group) batch.resolve();
    if (unused.length > 0) {
      try {
        this.#h.space.free(unused);
      } catch { /* leaks that space; the blobs are stored */ }
    }
  }

  /** Fails every caller of the batches and gives back their pack space. */
  #fail(group: SmallBatch[], e: unknown): void {
    const rows = group.reduce((n, b) => n + b.rows.length, 0);
    const err = storageError(`storing ${rows} small blobs`, e);
    try {
      this.#h.space.free(group.flatMap((b) => b.ranges));
    } catch { /* leaks that space, the error below is what matters */ }
    for (const batch of group) batch.reject(err);
  }

  /** The {@linkcode BlobService} method of the same name. */
  async close(): Promise<void> {
    // Small blobs handed over before closing are stored (or fail) first.
    this.#batch?.commit();
    await Promise.allSettled([...this.#unsettled]);
    await this.#h.release();
  }
}

const INSERT_PACKED = "INSERT OR IGNORE INTO blobs (digest, size, chunks) VALUES (?, ?, ?)";
const SET_PARTS = "UPDATE blobs SET parts = ? WHERE digest = ? AND parts IS NULL";

/**
 * Stores a big blob's chunk list and a row per chunk (each pointing at the blob's own piece; a
 * chunk stored already keeps its row), unless the blob has its list already. In a transaction.
 */
function storeChunkRows(
  setParts: StatementSync,
  insertPacked: StatementSync,
  digest: B3Digest,
  positions: number[],
  chunks: ChunkMeta[],
): void {
  if (setParts.run(encodeParts(chunks), digest.bytes).changes === 0) return;
  chunks.forEach((c, i) => {
    insertPacked.run(c.digest.bytes, c.size, encodePositions([positions[i]]));
  });
}

/** A blob's chunk list as stored in `parts` (see {@linkcode PART_LEN}). */
function encodeParts(chunks: ChunkMeta[]): Uint8Array {
  const out = new Uint8Array(chunks.length * PART_LEN);
  const view = new DataView(out.buffer);
  chunks.forEach((c, i) => {
    out.set(c.digest.bytes, i * PART_LEN);
    view.setUint32(i * PART_LEN + 32, c.size, true);
  });
  return out;
}

/** The chunk list in `parts`, checked to add up to the blob's `size`. */
function decodeParts(parts: Uint8Array, size: number, digest: B3Digest): ChunkMeta[] {
  const out: ChunkMeta[] = [];
  const view = new DataView(parts.buffer, parts.byteOffset, parts.byteLength);
  let total = 0;
  for (let o = 0; o + PART_LEN <= parts.length; o += PART_LEN) {
    const n = view.getUint32(o + 32, true);
    out.push({ digest: B3Digest.fromBytes(parts.slice(o, o + 32)), size: n });
    total += n;
  }
  if (parts.length % PART_LEN !== 0 || total !== size) {
    throw new CorruptDataError(
      digest.toString(),
      `blob ${digest} is corrupt: its chunk list covers ${total} of ${size} bytes`,
    );
  }
  return out;
}

/**
 * A reader of a blob of one chunk: its bytes loaded and checked against `digest` (and `size`)
 * on first use, so that a corrupt blob fails the read that meets it, naming it.
 */
function checkedReader(
  digest: B3Digest,
  size: number,
  load: () => Promise<Uint8Array>,
  fail: (e: unknown) => never = (e) => {
    throw e;
  },
): BlobReader {
  let ready: Promise<BlobReader> | null = null;
  const get = () =>
    ready ??= Promise.resolve().then(load).catch(fail).then((data) => {
      checkDigest(data, digest, "blob", size);
      return bufferReader(data);
    });
  return {
    readAt: async (offset, length) => (await get()).readAt(offset, length),
    async *chunks(offset) {
      yield* (await get()).chunks(offset);
    },
    close: () => Promise.resolve(),
  };
}
