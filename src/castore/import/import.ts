/**
 * `importPath`: the walk, driving the small-file path, the upload pipeline, the directory
 * frames and the observer, and pacing them so that memory does not grow with the tree.
 *
 * @module
 */
import * as libc from "../../sys/libc.ts";
import type { BlobService } from "../blob_service.ts";
import type { AnyNode, SymlinkNode } from "../directory.ts";
import type { DirectoryService } from "../directory_service.ts";
import { BigFiles } from "./big_files.ts";
import { DirectoryFrames } from "./frames.ts";
import type { ImportObserver } from "./observer.ts";
import { type ImportProgress, ImportRun } from "./run.ts";
import { isSmallFile, SmallFiles } from "./small_files.ts";
import { walk, type WalkFile } from "./walk.ts";

/**
 * Options of {@linkcode importPath}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { importPath, type ImportOptions } from "@nixcas/nixcas/castore";
 * import { calculateNar, NarImportObserver } from "@nixcas/nixcas/nar";
 * const tmp = await Deno.makeTempDir();
 * await Deno.mkdir(`${tmp}/hello/bin`, { recursive: true });
 * await Deno.writeTextFile(`${tmp}/hello/bin/hello`, "#!/bin/sh\necho hi\n", { mode: 0o755 });
 * await Deno.writeTextFile(`${tmp}/hello/README`, "Hello, world!\n");
 * const nar = new NarImportObserver();
 * const opts: ImportOptions = { concurrency: 2, observer: nar };
 * const blobs = new MemoryBlobService();
 * const directories = new MemoryDirectoryService();
 * const root = await importPath(`${tmp}/hello`, blobs, directories, opts);
 * // The NAR hashed during the import is the one rendered from the stored tree.
 * assert.deepEqual(await nar.result(), await calculateNar(root, blobs, directories));
 * await Deno.remove(tmp, { recursive: true });
 * ```
 */
export interface ImportOptions {
  /**
   * How many files are uploaded at once (default 8). It also bounds memory: up to 3 MiB of
   * buffers per big-file upload, and per unit 2 MiB (or 256 files) of small files handed to
   * `blobs` and not stored yet. The result does not depend on it.
   */
  concurrency?: number;
  /**
   * Called after every chunk and every finished file, with running totals (a tree of small
   * files also lets the event loop run every few files, so a progress timer keeps firing).
   */
  onProgress?: (progress: ImportProgress) => void;
  /**
   * Also shows the tree to this observer in the same pass (files are read once): structure and
   * file contents in walk order, big files' contents through a sink each (e.g. nar/'s
   * `NarImportObserver`, which hashes the NAR).
   */
  observer?: ImportObserver;
}

// Past this many bytes the observer holds behind a big file, the walk waits for uploads.
const HELD_MAX = 32 << 20;
// Past this many bytes the observer has not processed yet (e.g. copies waiting for a hash
// thread), the walk waits.
const BACKLOG_MAX = 16 << 20;
// After this much synchronous work (file bytes, plus ENTRY_COST per entry) the walk lets the
// event loop run: the SHA-256 thread's results, batched commits and progress timers all wait
// for it, and the NAR hash's stage is this size, so each turn hands it one piece.
const TURN_BYTES = 256 << 10;
const ENTRY_COST = 4 << 10;

/**
 * Imports the file, directory or symlink at `path` into castore and returns its root node,
 * named with the basename of `path`.
 *
 * File contents are streamed into `blobs.openWrite()` in chunks of at most
 * {@linkcode CHUNK_SIZE} (memory does not grow with file size), up to `concurrency` files at once.
 * Directories go leaves first through one `directories.putMultipleStart()` putter, each distinct
 * directory once; the putter is closed (and its root digest checked) only when everything
 * succeeded. A root that is a file or symlink puts no directories.
 *
 * On error (a missing path, a FIFO, an unreadable file, a failing service) the walk stops, every
 * open blob writer is aborted, the putter is left unclosed, and the first error is thrown; it
 * names the path at fault.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { B3Digest, importPath, readBlob } from "@nixcas/nixcas/castore";
 * const tmp = await Deno.makeTempDir();
 * await Deno.mkdir(`${tmp}/hello/bin`, { recursive: true });
 * await Deno.writeTextFile(`${tmp}/hello/bin/hello`, "#!/bin/sh\necho hi\n", { mode: 0o755 });
 * await Deno.writeTextFile(`${tmp}/hello/README`, "Hello, world!\n");
 * await Deno.symlink("bin/hello", `${tmp}/hello/run`);
 *
 * const blobs = new MemoryBlobService();
 * const directories = new MemoryDirectoryService();
 * const root = await importPath(`${tmp}/hello`, blobs, directories);
 * assert(root.case === "directory");
 * assert.equal(new TextDecoder().decode(root.value.name), "hello");
 * assert.equal(root.value.size, 4); // README, bin, bin/hello and run
 * const dir = await directories.get(B3Digest.fromBytes(root.value.digest));
 * const readme = dir!.files[0];
 * const text = await readBlob(blobs, B3Digest.fromBytes(readme.digest));
 * assert.equal(new TextDecoder().decode(text), "Hello, world!\n");
 * await Deno.remove(tmp, { recursive: true });
 * ```
 */
export async function importPath(
  path: string | Uint8Array,
  blobs: BlobService,
  directories: DirectoryService,
  opts: ImportOptions = {},
): Promise<AnyNode> {
  const limit = Math.max(1, Math.floor(opts.concurrency ?? 8));
  const run = new ImportRun(blobs, opts.observer ?? null, limit, opts.onProgress);
  const importer = new Importer(run, directories);
  try {
    const node = await importer.walk(path);
    if (node) return node;
  } catch (e) {
    run.fail(e);
  }
  await importer.abandon();
  throw run.failure!.error;
}

/** One import's walk over the parts it drives. */
class Importer {
  #run: ImportRun;
  #observer: ImportObserver | null;
  #small: SmallFiles;
  #big: BigFiles;
  #frames: DirectoryFrames;
  // What the walk found so far: the totals, once it ended.
  #walked = { files: 0, bytes: 0 };
  // Synchronous work since the event loop last ran.
  #sinceTurn = 0;

  constructor(run: ImportRun, directories: DirectoryService) {
    this.#run = run;
    this.#observer = run.observer;
    this.#small = new SmallFiles(run);
    this.#big = new BigFiles(run);
    this.#frames = new DirectoryFrames(directories, run.fail);
  }

  /** Walks `path` and returns the root node, or null when a part failed meanwhile. */
  async walk(path: string | Uint8Array): Promise<AnyNode | null> {
    const run = this.#run;
    const observer = this.#observer;
    const frames = this.#frames;
    for (const e of walk(path)) {
      if (run.failure) break;
      this.#sinceTurn += ENTRY_COST;
      if (this.#sinceTurn >= TURN_BYTES) await this.#breathe();
      if (observer && e.kind !== "end" && e.depth > 0) observer.entry(e.name);
      switch (e.kind) {
        case "directory":
          observer?.directoryStart();
          frames.enter();
          break;
        case "symlink": {
          const node: SymlinkNode = {
            $typeName: "tvix.castore.v1.SymlinkNode",
            name: e.name,
            target: e.target,
          };
          observer?.symlink(e.target);
          frames.symlink(e.depth, node);
          break;
        }
        case "file":
          // The small-file path awaits nothing unless the observer holds too much: for a tree of
          // small files an await per file is a measurable share of the work.
          this.#count(e);
          if (isSmallFile(e)) {
            frames.file(e.depth, this.#small.add(e));
            this.#sinceTurn += e.size;
            // Files waiting behind a big one may be held by the observer: bound them.
            if (observer && observer.heldBytes > HELD_MAX) await this.#waitHeld();
          } else {
            const started = await this.#big.start(e);
            if (started) frames.file(e.depth, started.node);
          }
          break;
        case "end":
          observer?.directoryEnd();
          frames.leave(e.name);
          break;
      }
    }
    if (run.failure) return null;
    const progress = run.progress;
    if (progress.totalFiles === undefined) {
      progress.totalFiles = this.#walked.files;
      progress.totalBytes = this.#walked.bytes;
      run.report();
    }
    observer?.finish();
    const node = await frames.root();
    await frames.puts();
    await this.#small.stored();
    await frames.close(node);
    this.#big.drain();
    return node;
  }

  /** After a failure: lets running uploads notice it, abort their writers and close files. */
  async abandon(): Promise<void> {
    const inflight = this.#run.inflight;
    while (inflight.size > 0) await Promise.allSettled([...inflight]);
    this.#big.drain();
  }

  /** Counts a file into the walk's totals (at once for a root file). */
  #count(e: WalkFile): void {
    this.#walked.files++;
    this.#walked.bytes += e.size;
    if (e.depth === 0) {
      this.#run.progress.totalFiles = 1;
      this.#run.progress.totalBytes = e.size;
    }
  }

  /** Waits for uploads (which deliver deferred contents) while the observer holds too much. */
  async #waitHeld(): Promise<void> {
    const observer = this.#observer!;
    const inflight = this.#run.inflight;
    while (observer.heldBytes > HELD_MAX && inflight.size > 0) await Promise.race(inflight);
  }

  /**
   * Lets the event loop run, then waits while too many small files wait to be stored or too
   * many bytes for the observer: otherwise a tree of small files is read much faster than either
   * completes, and memory grows with the tree.
   */
  async #breathe(): Promise<void> {
    this.#sinceTurn = 0;
    await libc.nextTurn();
    await this.#small.bound();
    const run = this.#run;
    const observer = this.#observer;
    while (!run.failure && observer && observer.backlogBytes > BACKLOG_MAX) {
      await libc.nextTurn(); // each turn delivers the observer's finished work (a hash thread's)
    }
  }
}
