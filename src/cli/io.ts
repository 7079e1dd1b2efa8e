/**
 * Output helpers for subcommands.
 *
 * @module
 */

/** Writes all of `bytes` to stdout. */
export async function writeStdout(bytes: Uint8Array): Promise<void> {
  for (let o = 0; o < bytes.length;) o += await Deno.stdout.write(bytes.subarray(o));
}

const enc = new TextEncoder();

/** Writes a text line to stdout. */
export function printLine(text: string): Promise<void> {
  return writeStdout(enc.encode(text + "\n"));
}
