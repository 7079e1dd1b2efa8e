/**
 * WAL checkpoints in a worker thread. A checkpoint copies committed pages from the WAL into the
 * database file; for large blobs that is as much work as the inserts themselves (64 MiB: ~50 ms
 * of inserts, ~40–55 ms of checkpoints, measured), so a writer hands it to a second core and
 * keeps inserting. PASSIVE checkpoints never block writers or readers.
 *
 * @module
 */
import { StorageError } from "../castore/errors.ts";

// Plain JavaScript from a string, so it runs from a single-file bundle or a URL import too.
const WORKER_SOURCE = `
import { DatabaseSync } from "node:sqlite";
let db;
self.onmessage = (e) => {
  const m = e.data;
  try {
    if (m.open) {
      db = new DatabaseSync(m.open, { timeout: 30000 });
      return;
    }
    db.prepare("PRAGMA wal_checkpoint(PASSIVE)").get();
    if (m.close) {
      db.close();
      db = null;
    }
    self.postMessage({ ok: true });
  } catch (err) {
    try { if (m.close && db) db.close(); } catch {}
    self.postMessage({ error: String(err && err.message || err) });
  }
};`;

let workerUrl: string | null = null;

/** Runs PASSIVE checkpoints of one database file in a worker, one at a time, on demand. */
export class Checkpointer {
  #worker: Worker;
  #busy = false;
  #again = false;
  #closing: PromiseWithResolvers<void> | null = null;
  #closeSent = false;
  #failed: string | null = null;

  /** Starts the worker on the database file at `path`. */
  constructor(path: string) {
    workerUrl ??= URL.createObjectURL(
      new Blob([WORKER_SOURCE], { type: "application/javascript" }),
    );
    this.#worker = new Worker(workerUrl, { type: "module" });
    this.#worker.onmessage = (e: MessageEvent) => {
      const { error } = e.data as { ok?: boolean; error?: string };
      if (error !== undefined) this.#failed = error;
      this.#busy = false;
      if (this.#closing) return this.#closeSent ? this.#done() : this.#sendClose();
      if (this.#again) {
        this.#again = false;
        this.poke();
      }
    };
    this.#worker.onerror = (e) => {
      e.preventDefault();
      this.#failed = e.message;
      this.#busy = false;
      if (this.#closing) this.#done();
    };
    this.#worker.postMessage({ open: path });
  }

  /** Asks for a checkpoint of what has been committed so far (coalesced while one runs). */
  poke(): void {
    if (this.#closing || this.#failed !== null) return;
    if (this.#busy) {
      this.#again = true;
      return;
    }
    this.#busy = true;
    this.#worker.postMessage({});
  }

  /**
   * Runs a last checkpoint and stops the worker. Never throws: a failed checkpoint loses
   * nothing (the pages stay in the WAL, and the last connection to close checkpoints them).
   */
  close(): Promise<void> {
    if (this.#closing) return this.#closing.promise;
    this.#closing = Promise.withResolvers<void>();
    // A checkpoint still running sends its answer first; the closing one follows it.
    if (!this.#busy) this.#sendClose();
    return this.#closing.promise;
  }

  /** The error of the last failed checkpoint, if any (for diagnostics). */
  get failure(): StorageError | null {
    return this.#failed === null ? null : new StorageError(`WAL checkpoint: ${this.#failed}`);
  }

  #sendClose(): void {
    this.#closeSent = true;
    this.#busy = true;
    this.#worker.postMessage({ close: true });
  }

  #done(): void {
    this.#worker.terminate();
    this.#closing!.resolve();
  }
}
