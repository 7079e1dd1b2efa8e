/**
 * Importing a filesystem tree into castore (tvix's `ingest_path`): file contents become blobs,
 * directories become Directory messages put leaves first, and the root node is returned; an
 * observer may see the same pass (nar/ hashes the NAR through it).
 *
 * Names and symlink targets are raw bytes (read through libc, see `../../sys/libc.ts`), entries
 * are sorted byte-wise, symlinks are never followed (a root symlink is imported as a symlink), a
 * regular file is executable iff its owner-execute bit is set, and FIFOs, sockets and devices
 * are errors — the same rules as Nix's `dump`.
 *
 * The parts: `walk.ts` (the walker), `small_files.ts` (files read and stored without waiting),
 * `big_files.ts` (the upload pipeline), `frames.ts` (Directory messages, leaves first),
 * `observer.ts` (the hook), `run.ts` (what they share) and `import.ts` (`importPath`).
 *
 * @module
 */
export * from "./walk.ts";
export * from "./observer.ts";
export type { ImportProgress } from "./run.ts";
export * from "./import.ts";
