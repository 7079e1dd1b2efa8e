/**
 * The importer's observer hook: what else wants to see a tree while it is imported, in the same
 * pass that reads each file once (nar/ hashes the NAR through it; castore itself knows nothing
 * of what an observer does).
 *
 * @module
 */

/**
 * Where the contents of one deferred file go (see {@linkcode ImportObserver.fileDeferred}).
 * The importer writes the file's chunks in order as it reads them, then calls `end`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ImportFileSink } from "@nixcas/nixcas/castore";
 * // A sink that counts bytes and checks the size it was promised.
 * function counting(size: number): ImportFileSink & { got: number } {
 *   return {
 *     got: 0,
 *     write(bytes) {
 *       this.got += bytes.length;
 *       return Promise.resolve();
 *     },
 *     end() {
 *       if (this.got !== size) throw new Error(`file has ${this.got} bytes, ${size} expected`);
 *     },
 *   };
 * }
 * const sink = counting(6);
 * await sink.write(new TextEncoder().encode("hello\n"));
 * sink.end();
 * assert.equal(sink.got, 6);
 * ```
 */
export interface ImportFileSink {
  /**
   * The next chunk of the file. `bytes` must not change until the promise resolves and may be
   * reused by the importer afterwards (copy what is kept). Calls may overlap: chunks count in
   * call order. The importer stops reading the file while this is the slowest of its pipeline.
   */
  write(bytes: Uint8Array): Promise<void>;
  /** Every chunk was written; throws when the file did not have the size announced. */
  end(): void;
}

/**
 * Sees the tree an import walks, in walk order: parents before children, each directory's
 * entries in byte-wise name order. For each node: `directoryStart`, its `entry` + node calls,
 * `directoryEnd`; `symlink`; a file either whole (`fileStart`, `fileChunk`…, `fileEnd`) or
 * deferred (`fileDeferred`, whose contents arrive later through the returned sink, while the walk
 * goes on, several files at once). `finish` follows the last node. Throwing from any method
 * fails the import with that error.
 *
 * The two byte counts let the importer bound memory: it waits for its uploads while
 * `heldBytes` is large, and lets the event loop run while `backlogBytes` is large.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { type ImportFileSink, type ImportObserver, importPath } from "@nixcas/nixcas/castore";
 * const tmp = await Deno.makeTempDir();
 * await Deno.mkdir(`${tmp}/hello/bin`, { recursive: true });
 * await Deno.writeTextFile(`${tmp}/hello/bin/hello`, "#!/bin/sh\necho hi\n", { mode: 0o755 });
 * await Deno.writeFile(`${tmp}/hello/data.bin`, new Uint8Array(3 << 20)); // 3 MiB
 * await Deno.symlink("bin/hello", `${tmp}/hello/run`);
 *
 * // Lists what the import saw, like `ls -RF`, and counts every file's bytes.
 * const dec = new TextDecoder();
 * const seen: string[] = [];
 * let bytes = 0;
 * const sink: ImportFileSink = {
 *   write: (b) => Promise.resolve(void (bytes += b.length)),
 *   end: () => {},
 * };
 * const observer: ImportObserver = {
 *   directoryStart: () => seen.push("("),
 *   entry: (name) => seen.push(dec.decode(name)),
 *   symlink: (target) => seen.push(`-> ${dec.decode(target)}`),
 *   fileStart: (executable, size) => seen.push(`${executable ? "*" : ""}${size}`),
 *   fileChunk: (b) => void (bytes += b.length),
 *   fileEnd: () => {},
 *   fileDeferred: (_executable, size) => (seen.push(`later ${size}`), sink),
 *   directoryEnd: () => seen.push(")"),
 *   finish: () => seen.push("."),
 *   heldBytes: 0,
 *   backlogBytes: 0,
 * };
 * await importPath(`${tmp}/hello`, new MemoryBlobService(), new MemoryDirectoryService(), {
 *   observer,
 * });
 * assert.deepEqual(seen, [
 *   "(", "bin", "(", "hello", "*18", ")", "data.bin", `later ${3 << 20}`, "run", "-> bin/hello",
 *   ")", ".",
 * ]);
 * assert.equal(bytes, 18 + (3 << 20));
 * await Deno.remove(tmp, { recursive: true });
 * ```
 */
export interface ImportObserver {
  /** A directory node begins (the root, or the node of the last `entry`). */
  directoryStart(): void;
  /** The next entry of the current directory, named `name`; its node follows. */
  entry(name: Uint8Array): void;
  /** A symlink node with this raw target. */
  symlink(target: Uint8Array): void;
  /** A file node of `size` bytes whose contents follow at once in `fileChunk` calls. */
  fileStart(executable: boolean, size: number): void;
  /**
   * The next contents of the current file. `bytes` belong to the observer from now on: the
   * importer never reuses them, so they may be kept without a copy.
   */
  fileChunk(bytes: Uint8Array): void;
  /** The current file's contents are complete. */
  fileEnd(): void;
  /**
   * A file node of `size` bytes whose contents come later, through the returned sink, while
   * the walk goes on (its place among the nodes is here; the order in which deferred files'
   * contents arrive is not the walk order).
   */
  fileDeferred(executable: boolean, size: number): ImportFileSink;
  /** The current directory node has no more entries. */
  directoryEnd(): void;
  /** The walk is over (deferred contents may still be arriving). */
  finish(): void;
  /**
   * Bytes the observer keeps because deferred contents before them have not arrived yet: past
   * a bound, the importer waits for its uploads (which deliver those contents) before reading on.
   */
  readonly heldBytes: number;
  /**
   * Bytes handed to the observer and not processed yet (including `heldBytes`): past a bound,
   * the importer lets the event loop run until the observer has caught up.
   */
  readonly backlogBytes: number;
}
