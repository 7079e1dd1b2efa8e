/**
 * NAR size and SHA-256 of a castore node, computed while streaming (the NAR is never held).
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { BlobService } from "../castore/blob/service.ts";
import type { AnyNode } from "../castore/directory.ts";
import type { DirectoryService } from "../castore/directory/service.ts";
import type { NarCalculation } from "../store/path_info/service.ts";
import { writeNar } from "./render.ts";

export type { NarCalculation };

/**
 * Size and SHA-256 of the NAR of `root`. Errors are those of {@linkcode writeNar}: missing
 * blobs or directories, blob lengths that differ from their nodes.
 */
export async function calculateNar(
  root: AnyNode,
  blobs: BlobService,
  directories: DirectoryService,
): Promise<NarCalculation> {
  // node:crypto's SHA-256 is ≈6× faster than hash-wasm here; it copies input synchronously,
  // so the writer may reuse its buffer.
  const hash = createHash("sha256");
  const narSize = await writeNar((b) => hash.update(b), root, blobs, directories, {
    reuseBuffer: true,
  });
  return { narSize, narSha256: new Uint8Array(hash.digest()) };
}
