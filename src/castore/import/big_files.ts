/**
 * The importer's upload pipeline, for every file the small-file path does not take (larger than
 * {@linkcode SYNC_READ_MAX}, or not stat'ed through its descriptor): up to `limit` files at
 * once, each streamed chunk by chunk into a blob writer and, in the same read, into the
 * observer's sink for its deferred contents.
 *
 * @module
 */
import { both, quiet, type Semaphore, semaphore, track } from "../../base/async.ts";
import { InvalidRequestError, StorageError } from "../../base/errors.ts";
import { HASH_BUFFER_LEN, returnHashBuffer, takeHashBuffer } from "../../hash/blake3.ts";
import * as libc from "../../sys/libc.ts";
import type { B3Digest } from "../digest.ts";
import type { FileNode } from "../directory.ts";
import { type BlobWriter, CHUNK_SIZE } from "../blob_service.ts";
import type { ImportFileSink } from "./observer.ts";
import { readFull, readFullSync, SYNC_READ_MAX } from "./read.ts";
import { CANCELLED, type ImportRun } from "./run.ts";
import { UnsupportedFileTypeError, type WalkFile } from "./walk.ts";

// Chunks of one big file in flight at once (read, being hashed, or being stored).
const BIG_FILE_BUFFERS = 3;
// castore's FileNode.size is a uint32.
const MAX_FILE_SIZE = 0xffff_ffff;

/** Chunk buffers, reused across files: the BLAKE3 hasher's own while there are (a copy less). */
class BufferPool {
  #free: Uint8Array[] = [];
  #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  get(): Uint8Array {
    return this.#free.pop() ??
      (HASH_BUFFER_LEN === CHUNK_SIZE ? takeHashBuffer() : new Uint8Array(CHUNK_SIZE));
  }

  put(b: Uint8Array): void {
    if (this.#free.length < this.#max) this.#free.push(b);
    else returnHashBuffer(b);
  }

  /** Gives every pooled buffer back to the hasher. */
  drain(): void {
    for (const b of this.#free.splice(0)) returnHashBuffer(b);
  }
}

/** What one upload produced. */
interface Uploaded {
  digest: B3Digest;
  size: number;
  executable: boolean;
}

/** The upload pipeline of one import. */
export class BigFiles {
  #run: ImportRun;
  // Big files share `limit` permits (each holds up to BIG_FILE_BUFFERS 1 MiB buffers); small
  // ones, read in one synchronous pread, get more, so their blob commits can be batched.
  #bigPermits: Semaphore;
  #smallPermits: Semaphore;
  #pool: BufferPool;

  constructor(run: ImportRun) {
    this.#run = run;
    this.#bigPermits = semaphore(run.limit);
    this.#smallPermits = semaphore(run.limit * 8);
    this.#pool = new BufferPool(BIG_FILE_BUFFERS * run.limit);
  }

  /**
   * Waits for an upload permit, opens `e`, reserves its place with the observer, and starts
   * its upload; returns its node to come, or null when the import failed meanwhile. The
   * upload's own errors reach {@linkcode ImportRun.fail}; the node promise is quiet (whoever
   * awaits it gets the error too).
   */
  async start(e: WalkFile): Promise<{ node: Promise<FileNode> } | null> {
    const run = this.#run;
    const permits = e.size <= SYNC_READ_MAX ? this.#smallPermits : this.#bigPermits;
    await permits.acquire();
    if (run.failure) {
      permits.release();
      return null;
    }
    let fd = -1;
    let sink: ImportFileSink | null = null;
    try {
      fd = e.open();
      // The contents' place is reserved now; the upload fills it.
      if (run.observer) sink = run.observer.fileDeferred(e.executable, e.size);
    } catch (err) {
      if (fd >= 0) libc.close(fd);
      permits.release();
      throw err;
    }
    const uploading = this.#upload(fd, e.path, sink, e).finally(permits.release);
    const inflight = run.inflight;
    inflight.add(uploading);
    uploading.catch(run.fail).finally(() => inflight.delete(uploading));
    const node = quiet(uploading.then((r): FileNode => ({
      $typeName: "tvix.castore.v1.FileNode",
      name: e.name,
      digest: r.digest.bytes,
      size: r.size,
      executable: r.executable,
    })));
    return { node };
  }

  /** Gives the pooled buffers back; call when no upload runs any more. */
  drain(): void {
    this.#pool.drain();
  }

  /** Streams one open file into a new blob (and `sink`); closes `fd`. */
  async #upload(
    fd: number,
    path: Uint8Array,
    sink: ImportFileSink | null,
    walked: WalkFile,
  ): Promise<Uploaded> {
    const run = this.#run;
    const pool = this.#pool;
    let w: BlobWriter | null = null;
    const bufs: Uint8Array[] = [];
    const walkedExecutable = walked.executable;
    try {
      // Size and mode from the descriptor we read, so the node matches the blob even if the
      // path was replaced after the walk stat'ed it.
      const st = walked.statFromDescriptor ? walked : libc.fstat(fd, path);
      const kind = libc.fileKind(st.mode);
      if (kind !== "file") throw new UnsupportedFileTypeError(kind, path);
      const size = st.size;
      if (size > MAX_FILE_SIZE) {
        throw new InvalidRequestError(
          `file too large for castore (${size} bytes, at most ${MAX_FILE_SIZE}): ${
            libc.displayPath(path)
          }`,
        );
      }
      // The observer was told the walk's size and mode.
      if (sink && (size !== walked.size || ((st.mode & 0o100) !== 0) !== walkedExecutable)) {
        throw new StorageError(`file changed while importing: ${libc.displayPath(path)}`);
      }
      w = await run.blobs.openWrite();
      if (size <= CHUNK_SIZE) {
        // A small file gets its own exact buffer: many are in flight at once.
        let chunk: Uint8Array;
        if (size <= SYNC_READ_MAX) chunk = new Uint8Array(size);
        else {
          bufs.push(pool.get());
          chunk = bufs[0].subarray(0, size);
        }
        await readFull(fd, chunk, 0, path);
        if (size > 0) {
          await both(sink?.write(chunk), w.write(chunk));
          run.written(size);
        }
      } else {
        // A big file. Each chunk is read on this thread (the thread pool is busy enough with
        // the observer's hash and the blob's writes: with reads there too, its threads
        // outnumbered the cores) and hashed into the blob here, while the observer's work and
        // the write run on the pool. Neither is awaited before the next chunk: only running out
        // of buffers stops this thread, which with a wait per chunk sat idle 40% of the time.
        const free: Uint8Array[] = [];
        const busy = new Set<Promise<void>>();
        let error = null as { e: unknown } | null;
        let wake: (() => void) | null = null;
        try {
          for (let off = 0; off < size;) {
            if (run.failure) throw CANCELLED;
            let buf = free.pop();
            if (!buf && bufs.length < BIG_FILE_BUFFERS) bufs.push(buf = pool.get());
            while (!buf && !error) {
              await new Promise<void>((resolve) => wake = resolve);
              buf = free.pop();
            }
            if (error) throw error.e;
            const chunk = buf!.subarray(0, Math.min(CHUNK_SIZE, size - off));
            readFullSync(fd, chunk, off, path);
            off += chunk.length;
            const done = both(sink?.write(chunk), w.write(chunk));
            run.written(chunk.length);
            track(busy, done);
            done.then(() => free.push(buf!), (e) => error ??= { e }).finally(() => {
              wake?.();
              wake = null;
            });
          }
          await Promise.all(busy);
        } finally {
          // No buffer goes back to the pool while the pool's threads may still read it.
          await Promise.allSettled([...busy]);
        }
      }
      if (run.failure) throw CANCELLED;
      sink?.end();
      const digest = await w.close();
      w = null;
      run.progress.files++;
      run.report();
      return { digest, size, executable: (st.mode & 0o100) !== 0 };
    } catch (e) {
      if (w) await w.abort().catch(() => {});
      throw e;
    } finally {
      libc.close(fd);
      for (const b of bufs) pool.put(b);
    }
  }
}
