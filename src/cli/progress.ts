/**
 * A one-line progress display on stderr (files, bytes, rate), for terminals only.
 *
 * @module
 */
import type { ImportProgress } from "../castore/import.ts";

const enc = new TextEncoder();

/** Sums progress of several imports and redraws one status line at most 10 times a second. */
export class Progress {
  #enabled: boolean;
  #totals = new Map<string, ImportProgress>();
  #start = performance.now();
  #timer: ReturnType<typeof setInterval> | undefined;
  #shown = false;

  /** Shows nothing unless `enabled` (stderr is a terminal and not `--quiet`). */
  constructor(enabled: boolean) {
    this.#enabled = enabled;
    if (enabled) this.#timer = setInterval(() => this.#draw(), 100);
  }

  /** A callback recording progress for one import. */
  track(key: string): ((p: ImportProgress) => void) | undefined {
    if (!this.#enabled) return undefined;
    return (p) => void this.#totals.set(key, { ...p });
  }

  #draw() {
    let files = 0, bytes = 0;
    for (const p of this.#totals.values()) {
      files += p.files;
      bytes += p.bytes;
    }
    const secs = (performance.now() - this.#start) / 1000;
    const line = `\r\x1b[K${files} files, ${mib(bytes)} MiB, ${
      mib(bytes / Math.max(secs, 0.001))
    } MiB/s`;
    Deno.stderr.writeSync(enc.encode(line));
    this.#shown = true;
  }

  /** Erases the status line (before printing a result). */
  clear(): void {
    if (this.#shown) Deno.stderr.writeSync(enc.encode("\r\x1b[K"));
    this.#shown = false;
  }

  /** Stops redrawing and erases the line. */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.clear();
  }
}

function mib(n: number): string {
  return (n / (1 << 20)).toFixed(1);
}
