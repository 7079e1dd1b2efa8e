/**
 * The small-file path of the importer: a file the walk stat'ed through its open descriptor and
 * no larger than {@linkcode SYNC_READ_MAX} is read with one synchronous pread, hashed and handed
 * to the blob service without awaiting anything, which for trees of small files is most of the
 * work. What is handed over and not stored yet is bounded in bytes and files.
 *
 * @module
 */
import { putSmallBlob } from "../blob_util.ts";
import type { FileNode } from "../directory.ts";
import * as libc from "../../sys/libc.ts";
import { readFullSync, SYNC_READ_MAX } from "./read.ts";
import type { ImportRun } from "./run.ts";
import type { WalkFile } from "./walk.ts";

// Small files are handed to the blob service without awaiting each one; per upload permit,
// this many bytes and files may be handed over and not stored yet before the walk waits.
const SMALL_BYTES_PER_PERMIT = 2 << 20;
const SMALL_FILES_PER_PERMIT = 256;

/** Whether `e` takes the small-file path. */
export function isSmallFile(e: WalkFile): boolean {
  return e.statFromDescriptor && e.size <= SYNC_READ_MAX;
}

/** Small files of one import: reads them and keeps count of those not stored yet. */
export class SmallFiles {
  #run: ImportRun;
  // Small blobs being stored (backends batch them, so many share one promise).
  #storing = new Set<Promise<void>>();
  // Small files handed to the blob service and not stored yet: their contents are held (by a
  // backend's batch, or a queue of requests) until then, so the walk bounds them.
  #unstored = { bytes: 0, files: 0 };
  #max: { bytes: number; files: number };

  constructor(run: ImportRun) {
    this.#run = run;
    this.#max = {
      bytes: run.limit * SMALL_BYTES_PER_PERMIT,
      files: run.limit * SMALL_FILES_PER_PERMIT,
    };
  }

  /**
   * Reads, hashes and queues for storage a file for which {@linkcode isSmallFile} holds, and
   * shows it to the observer. Its contents are owned, so the observer may keep them without a
   * copy.
   */
  add(e: WalkFile): FileNode {
    const run = this.#run;
    const fd = e.open();
    const data = new Uint8Array(e.size);
    try {
      readFullSync(fd, data, 0, e.path);
    } finally {
      libc.close(fd);
    }
    const observer = run.observer;
    if (observer) {
      observer.fileStart(e.executable, e.size);
      observer.fileChunk(data);
      observer.fileEnd();
    }
    const { digest, stored } = putSmallBlob(run.blobs, data);
    const storing = this.#storing;
    if (!storing.has(stored)) {
      storing.add(stored);
      stored.then(() => storing.delete(stored), run.fail);
    }
    const unstored = this.#unstored;
    unstored.bytes += e.size;
    unstored.files++;
    const done = () => {
      unstored.bytes -= e.size;
      unstored.files--;
    };
    stored.then(done, done);
    run.progress.files++;
    run.written(e.size);
    return {
      $typeName: "tvix.castore.v1.FileNode",
      name: e.name,
      digest: digest.bytes,
      size: e.size,
      executable: e.executable,
    };
  }

  /** Waits while too many small files wait to be stored (until the import failed). */
  async bound(): Promise<void> {
    const run = this.#run;
    const storing = this.#storing;
    const unstored = this.#unstored;
    const max = this.#max;
    while (
      !run.failure && storing.size > 0 &&
      (unstored.bytes > max.bytes || unstored.files > max.files)
    ) {
      await Promise.race(storing).catch(() => {}); // its error reaches `failure` through fail
    }
  }

  /** Resolves when every small file handed over is stored; rejects when one failed. */
  async stored(): Promise<void> {
    await Promise.all(this.#storing);
  }
}
