/**
 * What the parts of one import share: the services, the observer, the first failure, the
 * progress totals and the uploads in flight.
 *
 * @module
 */
import type { BlobService } from "../blob_service.ts";
import type { ImportObserver } from "./observer.ts";

/**
 * Running totals reported by {@linkcode ImportOptions.onProgress}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { importPath, type ImportProgress } from "@nixcas/nixcas/castore";
 * const tmp = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${tmp}/README`, "Hello, world!\n");
 * await Deno.writeFile(`${tmp}/data.bin`, new Uint8Array(3 << 20)); // 3 MiB
 * const seen: ImportProgress[] = [];
 * await importPath(tmp, new MemoryBlobService(), new MemoryDirectoryService(), {
 *   onProgress: (p) => seen.push(p),
 * });
 * const total = (3 << 20) + 14;
 * assert.deepEqual(seen.at(-1), { files: 2, bytes: total, totalFiles: 2, totalBytes: total });
 * assert(seen.length > 2); // big files report after every chunk
 * await Deno.remove(tmp, { recursive: true });
 * ```
 */
export interface ImportProgress {
  /** Files completely uploaded so far. */
  files: number;
  /** File content bytes uploaded so far. */
  bytes: number;
  /** All files to upload, once known: at once for a single file, else when the walk ended. */
  totalFiles?: number;
  /** All file content bytes to upload, known when `totalFiles` is. */
  totalBytes?: number;
}

/** Thrown inside uploads that stop because another part of the import failed. */
export const CANCELLED = new Error("import cancelled");

/** The state one import's parts share; each part keeps the rest of its state itself. */
export class ImportRun {
  /** Uploads at once (the `concurrency` option, at least 1); other bounds scale with it. */
  readonly limit: number;
  /** Receives file contents. */
  readonly blobs: BlobService;
  /** Sees the tree in walk order, when the caller attached one. */
  readonly observer: ImportObserver | null;
  /** The first error of any part; once set, every part stops. */
  failure: { error: unknown } | null = null;
  /** Progress totals, reported after every chunk and every finished file. */
  readonly progress: ImportProgress = { files: 0, bytes: 0 };
  /** Uploads in flight (their errors reach {@linkcode ImportRun.fail} themselves). */
  readonly inflight: Set<Promise<unknown>> = new Set();
  /** Calls the caller's progress callback with a copy of the totals. */
  readonly report: () => void;

  constructor(
    blobs: BlobService,
    observer: ImportObserver | null,
    limit: number,
    onProgress?: (progress: ImportProgress) => void,
  ) {
    this.blobs = blobs;
    this.observer = observer;
    this.limit = limit;
    this.report = onProgress ? () => onProgress({ ...this.progress }) : () => {};
  }

  /** Records the first failure (later ones are consequences); a callback, hence a field. */
  readonly fail = (error: unknown): void => {
    this.failure ??= { error };
  };

  /** `n` more content bytes uploaded. */
  written(n: number): void {
    this.progress.bytes += n;
    this.report();
  }
}
