/**
 * A one-line progress display on stderr (files, bytes, current rate, totals once known), for
 * terminals only.
 *
 * @module
 */
import type { ImportProgress } from "../castore/import/mod.ts";

const enc = new TextEncoder();

/** How often the status line is redrawn, in milliseconds. */
export const REDRAW_MS = 100;
/** The rate shown is measured over about this many milliseconds. */
export const RATE_WINDOW_MS = 2000;

/** What {@linkcode Progress} needs from its surroundings; tests replace them. */
export interface ProgressEnv {
  /** Writes text to the terminal (default: stderr). */
  write(text: string): void;
  /** A monotonic clock in milliseconds (default: `performance.now`). */
  now(): number;
  /** Calls `fn` every `ms` milliseconds until the returned function is called. */
  every(ms: number, fn: () => void): () => void;
}

const defaultEnv: ProgressEnv = {
  write: (text) => void Deno.stderr.writeSync(enc.encode(text)),
  now: () => performance.now(),
  every: (ms, fn) => {
    const id = setInterval(fn, ms);
    return () => clearInterval(id);
  },
};

/** Sums progress of several imports and redraws one status line every {@linkcode REDRAW_MS}. */
export class Progress {
  #enabled: boolean;
  #env: ProgressEnv;
  #totals = new Map<string, ImportProgress>();
  // (time, bytes) at recent redraws, oldest first, for the current rate.
  #samples: [number, number][] = [];
  #stopTimer: (() => void) | undefined;
  #shown = "";

  /** Shows nothing unless `enabled` (stderr is a terminal and not `--quiet`). */
  constructor(enabled: boolean, env: Partial<ProgressEnv> = {}) {
    this.#enabled = enabled;
    this.#env = { ...defaultEnv, ...env };
    if (enabled) {
      this.#samples.push([this.#env.now(), 0]);
      this.#stopTimer = this.#env.every(REDRAW_MS, () => this.#draw());
    }
  }

  /** A callback recording progress for one import. */
  track(key: string): ((p: ImportProgress) => void) | undefined {
    if (!this.#enabled) return undefined;
    return (p) => void this.#totals.set(key, { ...p });
  }

  /**
   * The status line for the progress recorded so far, e.g. `120/5000 files, 3.8/156.2 MiB
   * (2%), 41.0 MiB/s`; the totals appear once every import being tracked knows its own.
   * Records a sample for the rate.
   */
  line(): string {
    let files = 0, bytes = 0, totalFiles = 0, totalBytes = 0, totalsKnown = true;
    for (const p of this.#totals.values()) {
      files += p.files;
      bytes += p.bytes;
      if (p.totalFiles === undefined || p.totalBytes === undefined) totalsKnown = false;
      else {
        totalFiles += p.totalFiles;
        totalBytes += p.totalBytes;
      }
    }
    const now = this.#env.now();
    const samples = this.#samples;
    samples.push([now, bytes]);
    while (samples.length > 2 && now - samples[1][0] >= RATE_WINDOW_MS) samples.shift();
    const [t0, b0] = samples[0];
    const rate = (bytes - b0) / Math.max((now - t0) / 1000, 0.001);
    const known = totalsKnown && this.#totals.size > 0;
    const filesText = known ? `${files}/${totalFiles}` : `${files}`;
    const bytesText = known
      ? `${mib(bytes)}/${mib(totalBytes)} MiB (${percent(bytes, totalBytes)}%)`
      : `${mib(bytes)} MiB`;
    return `${filesText} files, ${bytesText}, ${mib(rate)} MiB/s`;
  }

  #draw() {
    const line = this.line();
    this.#env.write(`\r\x1b[K${line}`);
    this.#shown = line;
  }

  /** Erases the status line (before printing a result). */
  clear(): void {
    if (this.#shown) this.#env.write("\r\x1b[K");
    this.#shown = "";
  }

  /** Stops redrawing and erases the line. */
  stop(): void {
    this.#stopTimer?.();
    this.#stopTimer = undefined;
    this.clear();
  }
}

function mib(n: number): string {
  return (n / (1 << 20)).toFixed(1);
}

function percent(done: number, total: number): string {
  return total > 0 ? Math.floor((done / total) * 100).toString() : "100";
}
