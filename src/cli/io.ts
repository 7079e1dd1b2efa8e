/**
 * Output helpers for subcommands.
 *
 * @module
 */
import { LibcError, type WriteProgress, writevAllAsync } from "../sys/libc.ts";

/** Writes all of `bytes` to stdout. */
export async function writeStdout(bytes: Uint8Array): Promise<void> {
  for (let o = 0; o < bytes.length;) o += await Deno.stdout.write(bytes.subarray(o));
}

const enc = new TextEncoder();

/** Writes a text line to stdout. */
export function printLine(text: string): Promise<void> {
  return writeStdout(enc.encode(text + "\n"));
}

/**
 * Writes `parts` to stdout in order with `writev` on the thread pool (a NAR's many small pieces
 * in one system call, while this thread prepares the next), the parts untouched until it
 * settles. Where that cannot be used (no FFI, a full non-blocking stdout), or fails, the rest
 * goes through {@linkcode writeStdout}, which reports a closed pipe as usual.
 */
export async function writeStdoutParts(parts: Uint8Array[]): Promise<void> {
  const at: WriteProgress = { part: 0, offset: 0 };
  if (useWritev) {
    try {
      await writevAllAsync(1, parts, undefined, at);
      return;
    } catch (e) {
      if (!(e instanceof LibcError || e instanceof Deno.errors.NotCapable)) throw e;
      useWritev = false;
    }
  }
  for (let i = at.part; i < parts.length; i++) {
    await writeStdout(i === at.part ? parts[i].subarray(at.offset) : parts[i]);
  }
}

let useWritev = true;
