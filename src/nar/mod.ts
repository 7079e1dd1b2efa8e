/**
 * NAR, Nix's archive format: a writer, rendering a castore tree as a NAR stream
 * byte-identical to `nix-store --dump`, the NAR size and SHA-256 Nix records for a path, and
 * ingesting a NAR stream into castore with a strict parser ({@linkcode ingestNar}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { type AnyNode } from "@nixcas/nixcas/castore";
 * import { calculateNar, renderNar } from "@nixcas/nixcas/nar";
 * const root: AnyNode = {
 *   case: "symlink",
 *   value: {
 *     $typeName: "tvix.castore.v1.SymlinkNode",
 *     name: new TextEncoder().encode("hosts"),
 *     target: new TextEncoder().encode("/etc/hosts"),
 *   },
 * };
 * const blobs = new MemoryBlobService();
 * const directories = new MemoryDirectoryService();
 * const nar = await Array.fromAsync(renderNar(root, blobs, directories));
 * const size = nar.reduce((n, b) => n + b.length, 0);
 * assert.equal(size, (await calculateNar(root, blobs, directories)).narSize);
 * ```
 *
 * @module
 */
export { type NarSink, NarWriter, type NarWriterOptions } from "./writer.ts";
export { renderNar, writeNar } from "./render.ts";
export { calculateNar, type NarCalculation, NarImportObserver } from "./hash.ts";
export { type NarListing, narListing, type NarListingNode } from "./listing.ts";
export {
  gatheringReader,
  ingestNar,
  MAX_NAR_DEPTH,
  type NarErrorKind,
  type NarIngestOptions,
  type NarIngestResult,
  NarParseError,
  type NarReader,
  type NarSource,
} from "./ingest.ts";
