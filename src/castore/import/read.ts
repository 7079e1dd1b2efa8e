/**
 * Reading a file's bytes exactly: a file that ends early changed under the import.
 *
 * @module
 */
import { StorageError } from "../../base/errors.ts";
import * as libc from "../../sys/libc.ts";

/**
 * Files up to this size are read with one synchronous pread: from the page cache that takes a
 * few microseconds, less than a round trip through the blocking thread pool.
 */
export const SYNC_READ_MAX = 64 * 1024;

/** Reads exactly `buf.length` bytes at `offset` on this thread; a short file changed under us. */
export function readFullSync(fd: number, buf: Uint8Array, offset: number, path: Uint8Array): void {
  for (let got = 0; got < buf.length;) {
    const n = libc.pread(fd, buf.subarray(got), offset + got, path);
    if (n === 0) throw shrank(path);
    got += n;
  }
}

/**
 * Reads exactly `buf.length` bytes at `offset`: small reads on this thread, larger ones on the
 * thread pool.
 */
export async function readFull(
  fd: number,
  buf: Uint8Array,
  offset: number,
  path: Uint8Array,
): Promise<void> {
  if (buf.length <= SYNC_READ_MAX) return readFullSync(fd, buf, offset, path);
  for (let got = 0; got < buf.length;) {
    const n = await libc.preadAsync(fd, buf.subarray(got), offset + got, path);
    if (n === 0) throw shrank(path);
    got += n;
  }
}

function shrank(path: Uint8Array): StorageError {
  return new StorageError(`file shrank while importing: ${libc.displayPath(path)}`);
}
