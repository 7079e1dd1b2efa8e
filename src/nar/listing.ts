/**
 * The NAR listing Nix binary caches serve as `<hash>.ls`: the tree of a NAR with each regular
 * file's size and the offset of its contents in the NAR, computed from the castore tree alone
 * (no file contents are read).
 *
 * @module
 */
import { B3Digest } from "../castore/digest.ts";
import { type AnyNode, directoryNodes } from "../castore/directory.ts";
import type { DirectoryService } from "../castore/directory_service.ts";
import { NotFoundError } from "../base/errors.ts";

/**
 * One node of a {@linkcode NarListing}, as Nix writes it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { NarListingNode } from "@nixcas/nixcas/nar";
 * const file: NarListingNode = { type: "regular", size: 14, narOffset: 96 };
 * assert.equal(file.type, "regular");
 * ```
 */
export type NarListingNode =
  | { type: "regular"; size: number; executable?: true; narOffset: number }
  | { type: "symlink"; target: string }
  | { type: "directory"; entries: Record<string, NarListingNode> };

/**
 * A `.ls` document: `{"version":1,"root":…}`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { NarListing } from "@nixcas/nixcas/nar";
 * const ls: NarListing = { version: 1, root: { type: "symlink", target: "/etc/hosts" } };
 * assert.equal(ls.version, 1);
 * ```
 */
export interface NarListing {
  /** Always 1. */
  version: 1;
  /** The root node. */
  root: NarListingNode;
}

/** Bytes of a NAR string of `n` bytes: its length, the bytes, padding to 8. */
const str = (n: number) => 8 + Math.ceil(n / 8) * 8;
const td = new TextDecoder();

/**
 * The listing of the NAR of `root`, with the NAR offset of each file's contents. Names and
 * targets that are not UTF-8 are shown with U+FFFD, as JSON needs text.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { directoryNodeFor, makeDirectory, putBlob } from "@nixcas/nixcas/castore";
 * import { narListing, renderNar } from "@nixcas/nixcas/nar";
 * const enc = new TextEncoder();
 * const data = enc.encode("Hello, world!\n");
 * const blobs = new MemoryBlobService();
 * const digest = await putBlob(blobs, data);
 * const directories = new MemoryDirectoryService();
 * const dir = makeDirectory({
 *   files: [{
 *     $typeName: "tvix.castore.v1.FileNode",
 *     name: enc.encode("hello.txt"),
 *     digest: digest.bytes,
 *     size: data.length,
 *     executable: false,
 *   }],
 * });
 * await directories.put(dir);
 * const root = { case: "directory", value: directoryNodeFor(new Uint8Array(), dir) } as const;
 * const ls = await narListing(root, directories);
 * const file = ls.root.type === "directory" ? ls.root.entries["hello.txt"] : undefined;
 * assert(file?.type === "regular");
 * // The offset points at the contents in the rendered NAR.
 * const parts = await Array.fromAsync(renderNar(root, blobs, directories));
 * const nar = new Uint8Array(await new Blob(parts as Uint8Array<ArrayBuffer>[]).arrayBuffer());
 * assert.deepEqual(nar.subarray(file.narOffset, file.narOffset + file.size), data);
 * ```
 */
export async function narListing(
  root: AnyNode,
  directories: DirectoryService,
): Promise<NarListing> {
  let offset = str(13); // "nix-archive-1"
  const walk = async (node: AnyNode): Promise<NarListingNode> => {
    offset += str(1) + str(4); // "(" "type"
    let out: NarListingNode;
    if (node.case === "file") {
      offset += str(7) + (node.value.executable ? str(10) + str(0) : 0) + str(8) + 8;
      const size = Number(node.value.size);
      out = node.value.executable
        ? { type: "regular", size, executable: true, narOffset: offset }
        : { type: "regular", size, narOffset: offset };
      offset += Math.ceil(size / 8) * 8;
    } else if (node.case === "symlink") {
      offset += str(7) + str(6) + str(node.value.target.length);
      out = { type: "symlink", target: td.decode(node.value.target) };
    } else {
      offset += str(9);
      const digest = B3Digest.fromBytes(node.value.digest);
      const dir = await directories.get(digest);
      if (!dir) throw new NotFoundError(`directory ${digest} is missing`);
      const entries: Record<string, NarListingNode> = {};
      for (const child of directoryNodes(dir)) {
        offset += str(5) + str(1) + str(4) + str(child.value.name.length) + str(4);
        entries[td.decode(child.value.name)] = await walk(child);
        offset += str(1);
      }
      out = { type: "directory", entries };
    }
    offset += str(1); // ")"
    return out;
  };
  return { version: 1, root: await walk(root) };
}
