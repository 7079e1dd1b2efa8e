/** An SQLite store's rows, read and shaped by the tests. */
import { DatabaseSync } from "node:sqlite";
import { decodePositions } from "../../src/backends/sqlite/pack.ts";

const MiB = 1 << 20;

/**
 * Bytes of the pack file that stored rows point at, each range once: a big blob's pieces are
 * also the chunks' rows, so summing row sizes would count them twice.
 */
export function livePackBytes(db: DatabaseSync): number {
  const ranges = new Map<number, number>();
  const rows = db.prepare("SELECT size, chunks FROM blobs WHERE chunks IS NOT NULL").all() as {
    size: number;
    chunks: Uint8Array;
  }[];
  for (const { size, chunks } of rows) {
    decodePositions(chunks).forEach((pos, i) => {
      ranges.set(pos, Math.max(ranges.get(pos) ?? 0, Math.min(MiB, size - i * MiB)));
    });
  }
  let live = 0;
  for (const n of ranges.values()) live += n;
  return live;
}

/**
 * Makes a store hold `keep` (a big blob) as an import without native BLAKE3 leaves it: its
 * pieces not yet chunks (no chunk list, no chunk rows), whatever this process has loaded.
 */
export function forgetChunks(path: string, keep: Uint8Array): void {
  const db = new DatabaseSync(path);
  try {
    db.prepare("DELETE FROM blobs WHERE digest != ?").run(keep);
    db.exec("UPDATE blobs SET parts = NULL");
  } finally {
    db.close();
  }
}
