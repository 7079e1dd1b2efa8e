/**
 * Renders a castore node (and everything below it) as a NAR stream, reading blobs and
 * directories from the services as it goes. Memory use is bounded by a few batches of small
 * files, one blob chunk and one directory per level, whatever the size of the tree or its files.
 *
 * @module
 */
import {
  type BlobReader,
  type BlobService,
  CHUNK_SIZE,
  type SmallRead,
} from "../castore/blob_service.ts";
import { B3Digest } from "../castore/digest.ts";
import {
  type BatchChecker,
  openVerifiedRead,
  readSmallBlobs,
  type SmallBlobs,
  VERIFY_BUFFER_LIMIT,
} from "../castore/verify.ts";
import {
  type AnyNode,
  type Directory,
  directoryNodes,
  type FileNode,
} from "../castore/directory.ts";
import { displayName } from "../base/bytes.ts";
import type { DirectoryService } from "../castore/directory_service.ts";
import { NotFoundError, StorageError } from "../base/errors.ts";
import { largeBuffer } from "../sys/libc.ts";
import { type NarSink, NarWriter, type NarWriterOptions } from "./writer.ts";

/**
 * Receives a NAR in order, in lists of byte arrays. It may hold on to `parts` until the promise
 * it returns settles (a write on another thread); after that, with `recycle`, the renderer
 * reuses their memory. Returning nothing means they were consumed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { type AnyNode } from "@nixcas/nixcas/castore";
 * import { type NarOutput, streamNar } from "./render.ts";
 * const root: AnyNode = {
 *   case: "symlink",
 *   value: {
 *     $typeName: "tvix.castore.v1.SymlinkNode",
 *     name: new TextEncoder().encode("hosts"),
 *     target: new TextEncoder().encode("/etc/hosts"),
 *   },
 * };
 * let size = 0;
 * const count: NarOutput = (parts) => {
 *   for (const p of parts) size += p.length;
 * };
 * await streamNar(root, new MemoryBlobService(), new MemoryDirectoryService(), count);
 * assert.equal(size, 128);
 * ```
 */
export type NarOutput = (parts: Uint8Array[]) => void | Promise<void>;

/** Options of {@linkcode streamNar}. */
export interface StreamNarOptions {
  /**
   * Reuse the buffers small files were read into once the output call that carried them has
   * settled (default false: every array handed out stays valid for good).
   */
  recycle?: boolean;
  /**
   * Checks the batches of small files off this thread (their buffers, and so the arrays handed
   * to the output, are then views of `SharedArrayBuffer`s).
   */
  checker?: BatchChecker;
}

// Files up to this size are read in batches (where the backend can: BlobService.readSmall),
// into buffers of BATCH_BYTES; BATCHES_AHEAD batches are read ahead of the one being written,
// and the walk runs at most EVENTS_AHEAD steps ahead. Output goes out in lists of about
// FLUSH_BYTES, one at a time.
const SMALL_MAX = CHUNK_SIZE;
const BATCH_BYTES = 4 << 20;
const BATCH_FILES = 2048;
const BATCHES_AHEAD = 3;
const EVENTS_AHEAD = 8192;
const FLUSH_BYTES = 4 << 20;
const FLUSH_PARTS = 1000;
// Reads of a big file in flight, each of BATCH_BYTES.
const READS_AHEAD = 3;

/** One step of the NAR, in order. */
type NarEvent =
  | { k: "entry"; name: Uint8Array }
  | { k: "symlink"; target: Uint8Array }
  | { k: "file"; node: FileNode; batch: Batch | null; index: number }
  | { k: "dirStart" }
  | { k: "dirEnd" }
  | { k: "error"; error: unknown };

/** Small files read together. */
interface Batch {
  requests: SmallRead[];
  bytes: number;
  buf: Uint8Array | null;
  result: Promise<SmallBlobs> | null;
  ready: boolean;
  taken: number;
  /** The output list that carries its last file: its buffer is free once that was written. */
  lastSeq: number;
}

/**
 * Writes the NAR of `root` to `out`, reading blobs and directories from the services: small
 * files in batches read ahead of the output (one lookup and one read for a run of them where
 * the backend has {@linkcode BlobService.readSmall}), each checked against its digest before
 * any of its bytes is handed out, larger ones through {@linkcode openVerifiedRead}. Memory is
 * bounded (a few batches of 4 MiB, a bounded look-ahead), whatever the size of the tree.
 * Returns the NAR size.
 *
 * Throws {@linkcode NotFoundError} when a blob or directory is missing,
 * {@linkcode StorageError} when a blob's length differs from its node's size, and
 * {@linkcode CorruptDataError} for corrupt stored bytes; output stops before the fault.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SqliteBlobService, SqliteDirectoryService } from "@nixcas/nixcas/backends";
 * import { directoryNodeFor, makeDirectory, putBlob } from "@nixcas/nixcas/castore";
 * import { streamNar } from "./render.ts";
 * const blobs = new SqliteBlobService(":memory:");
 * const directories = new SqliteDirectoryService(":memory:");
 * const data = new TextEncoder().encode("Hello, world!\n");
 * const dir = makeDirectory({
 *   files: [{
 *     $typeName: "tvix.castore.v1.FileNode",
 *     name: new TextEncoder().encode("hello.txt"),
 *     digest: (await putBlob(blobs, data)).bytes,
 *     size: data.length,
 *     executable: false,
 *   }],
 * });
 * await directories.put(dir);
 * const root = { case: "directory", value: directoryNodeFor(new Uint8Array(), dir) } as const;
 * const chunks: Uint8Array[] = [];
 * // The parts stay valid: no recycling asked for.
 * const size = await streamNar(root, blobs, directories, (parts) => void chunks.push(...parts));
 * assert.equal(size, chunks.reduce((n, c) => n + c.length, 0));
 * await blobs.close();
 * await directories.close();
 * ```
 */
export function streamNar(
  root: AnyNode,
  blobs: BlobService,
  directories: DirectoryService,
  out: NarOutput,
  options: StreamNarOptions = {},
): Promise<number> {
  return new NarStreamer(root, blobs, directories, out, options).run();
}

class NarStreamer {
  #blobs: BlobService;
  #directories: DirectoryService;
  #out: NarOutput;
  #recycle: boolean;
  #checker: BatchChecker | undefined;
  #writer: NarWriter;
  // The walk: the next node to emit, and the entry iterators of the open directories.
  #node: AnyNode | null;
  #stack: Iterator<AnyNode>[] = [];
  #walked = false;
  // Steps walked but not written yet.
  #queue: NarEvent[] = [];
  #head = 0;
  // Batches of small files: the one being filled, and how many are read or being read.
  #building: Batch | null = null;
  #ahead = 0;
  #pool: Uint8Array[] = [];
  #retiring: Batch[] = [];
  // Output: the list being gathered (number #seq), and the write in flight (number #seq - 1).
  #parts: Uint8Array[] = [];
  #pending = 0;
  #seq = 0;
  #inflight: Promise<void> | null = null;

  constructor(
    root: AnyNode,
    blobs: BlobService,
    directories: DirectoryService,
    out: NarOutput,
    options: StreamNarOptions,
  ) {
    this.#node = root;
    this.#blobs = blobs;
    this.#directories = directories;
    this.#out = out;
    this.#recycle = options.recycle ?? false;
    this.#checker = options.checker;
    this.#writer = new NarWriter((b) => {
      this.#parts.push(b);
      this.#pending += b.length;
    });
  }

  async run(): Promise<number> {
    try {
      await this.#fill();
      for (;;) {
        if (this.#head === this.#queue.length) {
          if (this.#walked) break;
          await this.#fill();
          continue;
        }
        const ev = this.#queue[this.#head++];
        switch (ev.k) {
          case "entry":
            this.#writer.entry(ev.name);
            break;
          case "symlink":
            this.#writer.symlink(ev.target);
            break;
          case "dirStart":
            this.#writer.directoryStart();
            break;
          case "dirEnd":
            this.#writer.directoryEnd();
            break;
          case "file":
            await this.#file(ev.node, ev.batch, ev.index);
            break;
          case "error":
            throw ev.error;
        }
        if (
          !this.#walked && this.#ahead < BATCHES_AHEAD &&
          this.#queue.length - this.#head < EVENTS_AHEAD / 2
        ) {
          await this.#fill();
        }
        if (this.#pending >= FLUSH_BYTES || this.#parts.length >= FLUSH_PARTS) await this.#flush();
      }
      this.#writer.finish();
      await this.#flush();
      await this.#settle();
      return this.#writer.bytesWritten;
    } finally {
      // Whatever happened, no write may still be using our buffers when this returns.
      await this.#inflight?.catch(() => {});
    }
  }

  /** Walks on, queueing steps, until far enough ahead (or a directory cannot be had). */
  async #fill(): Promise<void> {
    if (this.#head > 4096 && this.#head * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#head);
      this.#head = 0;
    }
    const q = this.#queue;
    while (
      !this.#walked && q.length - this.#head < EVENTS_AHEAD &&
      (this.#ahead < BATCHES_AHEAD || q.length === this.#head)
    ) {
      const node = this.#node;
      if (node) {
        this.#node = null;
        switch (node.case) {
          case "symlink":
            q.push({ k: "symlink", target: node.value.target });
            break;
          case "file":
            q.push(this.#fileEvent(node.value));
            break;
          case "directory": {
            const digest = B3Digest.fromBytes(node.value.digest);
            let dir: Directory | null;
            try {
              dir = await this.#directories.get(digest);
              if (!dir) {
                throw new NotFoundError(
                  `directory ${digest} not found, referred to by ${displayName(node.value.name)}`,
                );
              }
            } catch (error) {
              // Raised when the output gets there, after everything before it.
              q.push({ k: "error", error });
              this.#walked = true;
              break;
            }
            q.push({ k: "dirStart" });
            this.#stack.push(directoryNodes(dir));
            break;
          }
        }
        continue;
      }
      const top = this.#stack.at(-1);
      if (!top) {
        this.#walked = true;
        break;
      }
      const next = top.next();
      if (next.done) {
        this.#stack.pop();
        q.push({ k: "dirEnd" });
      } else {
        q.push({ k: "entry", name: next.value.value.name });
        this.#node = next.value;
      }
    }
    // Nothing more will join the last batch.
    if (this.#walked && this.#building) this.#issue(this.#building);
  }

  #fileEvent(node: FileNode): NarEvent {
    const size = Number(node.size);
    if (!this.#blobs.readSmall || size > SMALL_MAX || size === 0) {
      return { k: "file", node, batch: null, index: 0 };
    }
    let b = this.#building;
    if (b && (b.bytes + size > BATCH_BYTES || b.requests.length >= BATCH_FILES)) {
      this.#issue(b);
      b = null;
    }
    b ??= this.#building = {
      requests: [],
      bytes: 0,
      buf: null,
      result: null,
      ready: false,
      taken: 0,
      lastSeq: -1,
    };
    b.requests.push({ digest: B3Digest.fromBytes(node.digest), size });
    b.bytes += size;
    return { k: "file", node, batch: b, index: b.requests.length - 1 };
  }

  /** Starts reading a batch. */
  #issue(b: Batch): void {
    if (b.result) return;
    if (this.#building === b) this.#building = null;
    this.#ahead++;
    // Not recycled, a batch gets an exact array: huge pages for a buffer used once cost their
    // zeroing and a 2 MiB margin.
    b.buf = this.#recycle
      ? this.#pool.pop() ?? this.#newBuffer(BATCH_BYTES)
      : this.#checker
      ? this.#newBuffer(b.bytes)
      : new Uint8Array(b.bytes);
    b.result = readSmallBlobs(this.#blobs, b.requests, b.buf, { checker: this.#checker });
    b.result.then(() => b.ready = true, () => b.ready = true);
  }

  async #file(node: FileNode, batch: Batch | null, index: number): Promise<void> {
    const w = this.#writer;
    const size = Number(node.size);
    if (batch) {
      this.#issue(batch);
      if (!batch.ready) this.#kick(); // the output need not wait for the read
      const data = await (await batch.result!).get(index);
      if (data) {
        w.fileStart(node.executable, size);
        w.fileChunk(data);
        w.fileEnd();
      }
      if (++batch.taken === batch.requests.length) this.#retire(batch);
      if (data) return;
      // Absent, or not stored as a small blob: the general path says why, or reads it.
    }
    const digest = B3Digest.fromBytes(node.digest);
    const name = displayName(node.name);
    const reader = await openVerifiedRead(this.#blobs, digest);
    if (!reader) throw new NotFoundError(`blob ${digest} not found, referred to by ${name}`);
    try {
      w.fileStart(node.executable, size);
      // (Up to the verify buffer a blob is in memory after its check: chunks() hands out views.)
      if (this.#recycle && reader.readInto && size > VERIFY_BUFFER_LIMIT) {
        await this.#fileInto(reader, size, `blob ${digest} (${name})`);
        w.fileEnd();
        return;
      }
      let got = 0;
      for await (const chunk of reader.chunks()) {
        if (got + chunk.length > size) {
          throw new StorageError(
            `blob ${digest} (${name}) is longer than the size ${size} recorded in its node`,
          );
        }
        got += chunk.length;
        w.fileChunk(chunk);
        if (this.#pending >= FLUSH_BYTES) await this.#flush();
        else this.#kick();
      }
      if (got !== size) {
        throw new StorageError(`blob ${digest} (${name}) has ${got} bytes, its node says ${size}`);
      }
      w.fileEnd();
    } finally {
      await reader.close();
    }
  }

  /**
   * A big file's bytes read into recycled buffers, a few reads ahead of the output (no fresh
   * array per chunk: page faults on new memory cost more than the read).
   */
  async #fileInto(reader: BlobReader, size: number, what: string): Promise<void> {
    const reads: { buf: Uint8Array; at: number; n: number; done: Promise<number> }[] = [];
    let offset = 0;
    try {
      while (offset < size || reads.length > 0) {
        while (offset < size && reads.length < READS_AHEAD) {
          const buf = this.#pool.pop() ?? this.#newBuffer(BATCH_BYTES);
          const n = Math.min(BATCH_BYTES, size - offset);
          const done = reader.readInto!(offset, buf.subarray(0, n));
          done.catch(() => {}); // awaited in order below
          reads.push({ buf, at: offset, n, done });
          offset += n;
        }
        const r = reads[0];
        this.#kick();
        const got = await r.done;
        reads.shift();
        if (got !== r.n) {
          throw new StorageError(`${what} has ${r.at + got} bytes, its node says ${size}`);
        }
        this.#writer.fileChunk(r.buf.subarray(0, got));
        this.#retireBuffer(r.buf);
        if (this.#pending >= FLUSH_BYTES) await this.#flush();
      }
    } finally {
      // Reads still running keep their buffers (dropped, not recycled).
      await Promise.allSettled(reads.map((r) => r.done));
    }
    if ((await reader.readInto!(size, new Uint8Array(1))) !== 0) {
      throw new StorageError(`${what} is longer than the size ${size} recorded in its node`);
    }
  }

  #newBuffer(size: number): Uint8Array {
    return largeBuffer(size, this.#checker !== undefined);
  }

  /** A buffer that is in the output: free once that is written. */
  #retireBuffer(buf: Uint8Array): void {
    this.#retiring.push({
      requests: [],
      bytes: 0,
      buf,
      result: null,
      ready: true,
      taken: 0,
      lastSeq: this.#seq,
    });
  }

  /** A batch whose files are all in the output: its buffer is free once that is written. */
  #retire(b: Batch): void {
    this.#ahead--;
    if (!this.#recycle) return;
    b.lastSeq = this.#seq;
    this.#retiring.push(b);
  }

  /** Output list `seq` was written: buffers it carried can be reused. */
  #written(seq: number): void {
    if (this.#retiring.length === 0) return;
    const keep: Batch[] = [];
    for (const b of this.#retiring) {
      if (b.lastSeq <= seq && b.buf) {
        if (b.buf.length === BATCH_BYTES) this.#pool.push(b.buf);
        b.buf = null;
      } else keep.push(b);
    }
    this.#retiring = keep;
  }

  /** Starts writing what is gathered if no write is in flight (does not wait). */
  #kick(): void {
    if (this.#inflight || this.#parts.length === 0) return;
    this.#send();
  }

  /** Hands what is gathered to the output, after the write in flight. */
  async #flush(): Promise<void> {
    await this.#settle();
    if (this.#parts.length > 0) this.#send();
  }

  async #settle(): Promise<void> {
    if (this.#inflight) await this.#inflight;
  }

  #send(): void {
    const parts = this.#parts;
    const seq = this.#seq++;
    this.#parts = [];
    this.#pending = 0;
    const r = this.#out(parts);
    if (!r) {
      this.#written(seq);
      return;
    }
    const p: Promise<void> = r.then(() => {
      if (this.#inflight === p) this.#inflight = null;
      this.#written(seq);
    });
    this.#inflight = p;
    // A failed write is thrown by the next flush (or run's end); never unobserved.
    p.catch(() => {});
  }
}

/**
 * The NAR of `root` as a stream of byte arrays (each valid after it was yielded: the consumer
 * may keep it). Pulls data only as fast as the consumer reads.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { directoryNodeFor, makeDirectory } from "@nixcas/nixcas/castore";
 * import { renderNar } from "@nixcas/nixcas/nar";
 * const directories = new MemoryDirectoryService();
 * const dir = makeDirectory({
 *   symlinks: [{
 *     $typeName: "tvix.castore.v1.SymlinkNode",
 *     name: new TextEncoder().encode("hosts"),
 *     target: new TextEncoder().encode("/etc/hosts"),
 *   }],
 * });
 * await directories.put(dir);
 * const node = { case: "directory", value: directoryNodeFor(new Uint8Array(), dir) } as const;
 * const tmp = await Deno.makeTempDir();
 * const file = await Deno.open(`${tmp}/out.nar`, { write: true, create: true });
 * const nar = renderNar(node, new MemoryBlobService(), directories);
 * await ReadableStream.from(nar).pipeTo(file.writable); // closes the file
 * assert.equal((await Deno.stat(`${tmp}/out.nar`)).size, 296);
 * await Deno.remove(tmp, { recursive: true });
 * ```
 */
export async function* renderNar(
  root: AnyNode,
  blobs: BlobService,
  directories: DirectoryService,
): AsyncGenerator<Uint8Array> {
  // streamNar pushes, the consumer pulls: each output list waits until it was taken.
  let queue: Uint8Array[] = [];
  let taken = null as (() => void) | null;
  let wake = null as (() => void) | null;
  let done = false;
  let failed = false;
  let error: unknown;
  let stopped = false;
  const out: NarOutput = (parts) => {
    if (stopped) return Promise.reject(new Error("NAR consumer stopped"));
    queue.push(...parts);
    wake?.();
    return new Promise<void>((resolve) => taken = resolve);
  };
  streamNar(root, blobs, directories, out).then(
    () => done = true,
    (e) => {
      failed = done = true;
      error = e;
    },
  ).finally(() => wake?.());
  try {
    for (;;) {
      if (queue.length > 0) {
        const items = queue;
        queue = [];
        const t = taken;
        taken = null;
        yield* items;
        t?.();
        continue;
      }
      if (done) {
        if (failed) throw error;
        return;
      }
      await new Promise<void>((resolve) => wake = resolve);
      wake = null;
    }
  } finally {
    // Stopped early: the renderer's next output fails, which ends it.
    stopped = true;
    taken?.();
  }
}

/**
 * Writes the NAR of `root` to a synchronous sink (a hasher, a counter). With `reuseBuffer`
 * the sink must consume each array before returning. Returns the NAR size.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createHash } from "node:crypto";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { type AnyNode } from "@nixcas/nixcas/castore";
 * import { writeNar } from "@nixcas/nixcas/nar";
 * const root: AnyNode = {
 *   case: "symlink",
 *   value: {
 *     $typeName: "tvix.castore.v1.SymlinkNode",
 *     name: new TextEncoder().encode("hosts"),
 *     target: new TextEncoder().encode("/etc/hosts"),
 *   },
 * };
 * const sha256 = createHash("sha256");
 * const size = await writeNar(
 *   (bytes) => sha256.update(bytes),
 *   root,
 *   new MemoryBlobService(),
 *   new MemoryDirectoryService(),
 *   { reuseBuffer: true },
 * );
 * assert.equal(size, 128);
 * assert.equal(
 *   sha256.digest("hex"),
 *   "fdd8918e938e42eac4186842e30a5d8f0f6fa4f292afff46a30b90787be0e135",
 * );
 * ```
 */
export async function writeNar(
  sink: NarSink,
  root: AnyNode,
  blobs: BlobService,
  directories: DirectoryService,
  options: NarWriterOptions = {},
): Promise<number> {
  return await streamNar(root, blobs, directories, (parts) => {
    for (const p of parts) sink(p);
  }, { recycle: options.reuseBuffer ?? false });
}
