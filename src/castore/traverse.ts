/**
 * Walks over a DirectoryService: the recursive get every backend shares, and descending to a
 * path below a root node.
 *
 * @module
 */
import { B3Digest } from "./digest.ts";
import { type AnyNode, type Directory, directoryNodes, validateDirectory } from "./directory.ts";
import { displayName } from "../base/bytes.ts";
import { StorageError } from "../base/errors.ts";
import type { DirectoryService } from "./directory_service.ts";

/**
 * Breadth-first from `root`, each directory once (a digest reached twice is sent once), each
 * validated. Throws {@linkcode StorageError} naming the digest
 * when one is missing or invalid: the store is inconsistent. `get` fetches one directory; this
 * is how the local backends implement {@linkcode DirectoryService.getRecursive}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   type B3Digest,
 *   type Directory,
 *   directoryDigest,
 *   directoryNodeFor,
 *   makeDirectory,
 *   traverseDirectories,
 * } from "@nixcas/nixcas/castore";
 * const enc = new TextEncoder();
 * const empty = makeDirectory({});
 * // Two names for the same (empty) directory: it is visited once.
 * const root = makeDirectory({
 *   directories: [
 *     directoryNodeFor(enc.encode("a"), empty),
 *     directoryNodeFor(enc.encode("b"), empty),
 *   ],
 * });
 * const byKey = new Map<string, Directory>();
 * for (const d of [empty, root]) byKey.set(directoryDigest(d).key, d);
 * const get = (digest: B3Digest) => Promise.resolve(byKey.get(digest.key) ?? null);
 * let count = 0;
 * for await (const _ of traverseDirectories(get, directoryDigest(root))) count++;
 * assert.equal(count, 2);
 * ```
 */
export async function* traverseDirectories(
  get: (digest: B3Digest) => Promise<Directory | null>,
  root: B3Digest,
): AsyncGenerator<Directory> {
  const queue: B3Digest[] = [root];
  const queued = new Set<string>([root.key]);
  for (let i = 0; i < queue.length; i++) {
    const digest = queue[i];
    queue[i] = undefined as unknown as B3Digest; // let the queue's head be collected
    const dir = await get(digest);
    if (!dir) throw new StorageError(`directory ${digest} does not exist`);
    try {
      validateDirectory(dir);
    } catch (e) {
      throw new StorageError(`directory ${digest} is invalid: ${(e as Error).message}`);
    }
    for (const child of dir.directories) {
      const d = B3Digest.fromBytes(child.digest);
      if (!queued.has(d.key)) {
        queued.add(d.key);
        queue.push(d);
      }
    }
    yield dir;
  }
}

/**
 * Follows `path` (components separated by `/`, raw bytes) from `root` and returns the node
 * there, or null when a component does not exist. An empty path returns `root`. Throws
 * {@linkcode StorageError} when a directory on the way is missing from the service.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import {
 *   type AnyNode,
 *   descendTo,
 *   directoryNodeFor,
 *   makeDirectory,
 * } from "@nixcas/nixcas/castore";
 * const enc = new TextEncoder();
 * const directories = new MemoryDirectoryService();
 * const bin = makeDirectory({
 *   symlinks: [{
 *     $typeName: "tvix.castore.v1.SymlinkNode",
 *     name: enc.encode("sh"),
 *     target: enc.encode("bash"),
 *   }],
 * });
 * const root = makeDirectory({ directories: [directoryNodeFor(enc.encode("bin"), bin)] });
 * await directories.put(bin);
 * await directories.put(root);
 * const out: AnyNode = { case: "directory", value: directoryNodeFor(enc.encode("out"), root) };
 * const sh = await descendTo(directories, out, "bin/sh");
 * assert.equal(sh?.case, "symlink");
 * assert.equal(await descendTo(directories, out, "bin/ls"), null);
 * ```
 */
export async function descendTo(
  directories: DirectoryService,
  root: AnyNode,
  path: Uint8Array | string,
): Promise<AnyNode | null> {
  const bytes = typeof path === "string" ? new TextEncoder().encode(path) : path;
  const parts = splitPath(bytes);
  let node = root;
  for (const part of parts) {
    if (node.case !== "directory") return null;
    const digest = B3Digest.fromBytes(node.value.digest);
    const dir = await directories.get(digest);
    if (!dir) {
      throw new StorageError(
        `directory ${digest} (${displayName(node.value.name)}) does not exist`,
      );
    }
    const next = findNode(dir, part);
    if (!next) return null;
    node = next;
  }
  return node;
}

/**
 * Finds the node called `name` in a directory, or null when there is none.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { findNode, makeDirectory } from "@nixcas/nixcas/castore";
 * const enc = new TextEncoder();
 * const dir = makeDirectory({
 *   symlinks: [{
 *     $typeName: "tvix.castore.v1.SymlinkNode",
 *     name: enc.encode("sh"),
 *     target: enc.encode("bash"),
 *   }],
 * });
 * assert.equal(findNode(dir, enc.encode("sh"))?.case, "symlink");
 * assert.equal(findNode(dir, enc.encode("ls")), null);
 * ```
 */
export function findNode(dir: Directory, name: Uint8Array): AnyNode | null {
  for (const n of directoryNodes(dir)) {
    if (bytesEqual(n.value.name, name)) return n;
  }
  return null;
}

function splitPath(path: Uint8Array): Uint8Array[] {
  const parts: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i === path.length || path[i] === 0x2f) {
      if (i > start) parts.push(path.subarray(start, i));
      start = i + 1;
    }
  }
  return parts;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
