/**
 * The castore Directory model: canonical encoding, digest, size, validation, and a merged
 * name-ordered view over the three node lists. Directories are the generated protobuf messages
 * of `tvix.castore.v1`; this module adds the rules around them.
 *
 * @module
 */
import { compareBytes, displayName } from "../base/bytes.ts";
import { decodeDirectoryWire, encodeDirectoryWire } from "./wire.ts";
import type { Message } from "../base/message.ts";
import { B3_LEN, type B3Digest, blake3 } from "./digest.ts";
import { clip, InvalidRequestError } from "../base/errors.ts";

// The message types below have the shape protobuf-es generates for tvix/castore/protos/
// castore.proto (src/gen/tvix/castore/protos/castore_pb.ts); they are declared here so that the
// public API documents them. Values of either are accepted where the other is expected.

/**
 * A directory listing (`tvix.castore.v1.Directory`): three lists of nodes, each sorted by name,
 * with no name in more than one list. Its digest is the BLAKE3 of its canonical encoding
 * ({@linkcode directoryDigest}); {@linkcode validateDirectory} checks the rules.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   type Directory,
 *   makeDirectory,
 *   validateDirectory,
 *   ValidateDirectoryError,
 * } from "@nixcas/nixcas/castore";
 * const link = (name: string) => ({
 *   $typeName: "tvix.castore.v1.SymlinkNode" as const,
 *   name: new TextEncoder().encode(name),
 *   target: new TextEncoder().encode("v2"),
 * });
 * const dir: Directory = makeDirectory({ symlinks: [link("latest")] });
 * validateDirectory(dir); // does not throw
 * // Names must be sorted: "b" before "a" is not a valid Directory.
 * const unsorted: Directory = { ...dir, symlinks: [link("b"), link("a")] };
 * assert.throws(() => validateDirectory(unsorted), ValidateDirectoryError);
 * ```
 */
export type Directory = Message<"tvix.castore.v1.Directory"> & {
  /** The subdirectories, sorted by name. */
  directories: DirectoryNode[];
  /** The regular files, sorted by name. */
  files: FileNode[];
  /** The symlinks, sorted by name. */
  symlinks: SymlinkNode[];
};

/**
 * A subdirectory in a {@linkcode Directory} (`tvix.castore.v1.DirectoryNode`): its name, the
 * digest of its Directory message, and its size ({@linkcode directorySize}).
 * {@linkcode directoryNodeFor} fills in digest and size.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   B3Digest,
 *   directoryDigest,
 *   type DirectoryNode,
 *   directoryNodeFor,
 *   makeDirectory,
 * } from "@nixcas/nixcas/castore";
 * const node: DirectoryNode = directoryNodeFor(new TextEncoder().encode("lib"), makeDirectory({}));
 * assert.equal(node.size, 0); // nothing below it
 * assert(B3Digest.fromBytes(node.digest).equals(directoryDigest(makeDirectory({}))));
 * ```
 */
export type DirectoryNode = Message<"tvix.castore.v1.DirectoryNode"> & {
  /** The basename of the directory. */
  name: Uint8Array;
  /** The BLAKE3 of the child Directory message in canonical encoding (32 bytes). */
  digest: Uint8Array;
  /**
   * The number of entries below the child, counted recursively: its files and symlinks, plus for
   * each of its subdirectories one plus that directory's size.
   */
  size: number;
};

/**
 * A regular file in a {@linkcode Directory} (`tvix.castore.v1.FileNode`): its name, the BLAKE3
 * of its contents (the blob's digest), its size and whether it is executable.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService } from "@nixcas/nixcas/backends";
 * import { B3Digest, type FileNode, putBlob, readBlob } from "@nixcas/nixcas/castore";
 * const blobs = new MemoryBlobService();
 * const contents = new TextEncoder().encode("#!/bin/sh\necho hi\n");
 * const file: FileNode = {
 *   $typeName: "tvix.castore.v1.FileNode",
 *   name: new TextEncoder().encode("hello.sh"),
 *   digest: (await putBlob(blobs, contents)).bytes,
 *   size: contents.length,
 *   executable: true,
 * };
 * // The node holds the blob's digest; its contents are read from the BlobService.
 * const read = await readBlob(blobs, B3Digest.fromBytes(file.digest));
 * assert.equal(read.length, file.size);
 * ```
 */
export type FileNode = Message<"tvix.castore.v1.FileNode"> & {
  /** The basename of the file. */
  name: Uint8Array;
  /** The BLAKE3 of the file contents (32 bytes). */
  digest: Uint8Array;
  /** The length of the file contents in bytes. */
  size: number;
  /** Whether the file is executable. */
  executable: boolean;
};

/**
 * A symbolic link in a {@linkcode Directory} (`tvix.castore.v1.SymlinkNode`): its name and
 * its target, both raw bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type SymlinkNode, ValidateDirectoryError, validateNode } from "@nixcas/nixcas/castore";
 * const link: SymlinkNode = {
 *   $typeName: "tvix.castore.v1.SymlinkNode",
 *   name: new TextEncoder().encode("sh"),
 *   target: new TextEncoder().encode("bash"),
 * };
 * validateNode({ case: "symlink", value: link }); // does not throw
 * // Its name is one path component:
 * const nested = { ...link, name: new TextEncoder().encode("bin/sh") };
 * assert.throws(() => validateNode({ case: "symlink", value: nested }), ValidateDirectoryError);
 * ```
 */
export type SymlinkNode = Message<"tvix.castore.v1.SymlinkNode"> & {
  /** The basename of the symlink. */
  name: Uint8Array;
  /** The target of the symlink (not empty, no NUL byte, at most 4095 bytes). */
  target: Uint8Array;
};

/**
 * Any one node (`tvix.castore.v1.Node`), as found at the root of a PathInfo: a oneof of a
 * {@linkcode DirectoryNode}, a {@linkcode FileNode} or a {@linkcode SymlinkNode}. Convert with
 * {@linkcode toNodeMessage} and {@linkcode fromNodeMessage}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type Node, toNodeMessage } from "@nixcas/nixcas/castore";
 * const node: Node = toNodeMessage({
 *   case: "symlink",
 *   value: {
 *     $typeName: "tvix.castore.v1.SymlinkNode",
 *     name: new TextEncoder().encode("result"),
 *     target: new TextEncoder().encode("/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-hello"),
 *   },
 * });
 * assert.equal(node.node.case, "symlink");
 * ```
 */
export type Node = Message<"tvix.castore.v1.Node"> & {
  /** The node, tagged by kind; `case` is undefined when it is not set. */
  node:
    | { case: "directory"; value: DirectoryNode }
    | { case: "file"; value: FileNode }
    | { case: "symlink"; value: SymlinkNode }
    | { case: undefined; value?: undefined };
};

/**
 * One node of a directory, tagged by kind (the `node` oneof of the {@linkcode Node} message).
 * {@linkcode directoryNodes} yields them; most functions of this library take one as a root.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type AnyNode, nodeName } from "@nixcas/nixcas/castore";
 * const node: AnyNode = {
 *   case: "symlink",
 *   value: {
 *     $typeName: "tvix.castore.v1.SymlinkNode",
 *     name: new TextEncoder().encode("bin"),
 *     target: new TextEncoder().encode("sbin"),
 *   },
 * };
 * assert.equal(new TextDecoder().decode(nodeName(node)), "bin");
 * ```
 */
export type AnyNode =
  | { case: "directory"; value: DirectoryNode }
  | { case: "file"; value: FileNode }
  | { case: "symlink"; value: SymlinkNode };

/**
 * Why a Directory is invalid; the same kinds as tvix's `ValidateDirectoryError`. Found on
 * {@linkcode ValidateDirectoryError.kind}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type DirectoryErrorKind, ValidateDirectoryError } from "@nixcas/nixcas/castore";
 * function describe(kind: DirectoryErrorKind): string {
 *   return kind === "InvalidDigestLen" ? "bad digest" : "bad name";
 * }
 * const err = new ValidateDirectoryError("DuplicateName", new TextEncoder().encode("bin"));
 * assert.equal(describe(err.kind), "bad name");
 * ```
 */
export type DirectoryErrorKind =
  | "InvalidName"
  | "WrongSorting"
  | "DuplicateName"
  | "InvalidDigestLen"
  | "InvalidSymlinkTarget";

/**
 * A Directory failed validation. `kind` and `detail` say why (the name, or the bad length); for
 * `InvalidSymlinkTarget` the detail is the symlink's name and the message says what is wrong
 * with its target.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   makeDirectory,
 *   validateDirectory,
 *   ValidateDirectoryError,
 * } from "@nixcas/nixcas/castore";
 * const dir = makeDirectory({
 *   symlinks: [{
 *     $typeName: "tvix.castore.v1.SymlinkNode",
 *     name: new TextEncoder().encode(".."),
 *     target: new TextEncoder().encode("/"),
 *   }],
 * });
 * assert.throws(() => validateDirectory(dir), (e) => {
 *   assert(e instanceof ValidateDirectoryError);
 *   assert.equal(e.kind, "InvalidName");
 *   assert.equal(e.message, 'invalid name ".."');
 *   return true;
 * });
 * ```
 */
export class ValidateDirectoryError extends InvalidRequestError {
  /** The rule that was broken. */
  readonly kind: DirectoryErrorKind;
  /** The offending name (for name and target errors) or digest length (for `InvalidDigestLen`). */
  readonly detail: Uint8Array | number;

  /**
   * Creates the error; the message is derived from kind and detail (and `why`, which says what
   * is wrong with a symlink target).
   */
  constructor(kind: DirectoryErrorKind, detail: Uint8Array | number, why?: string) {
    const what = typeof detail === "number" ? String(detail) : clip(displayName(detail));
    const msg = {
      InvalidName: `invalid name ${what}`,
      WrongSorting: `${what} is not sorted`,
      DuplicateName: `${what} is a duplicate name`,
      InvalidDigestLen: `invalid digest length: ${what}`,
      InvalidSymlinkTarget: `symlink ${what} has an invalid target: ${why ?? "?"}`,
    }[kind];
    super(msg);
    this.name = "ValidateDirectoryError";
    this.kind = kind;
    this.detail = detail;
  }
}

/**
 * Longest node name, in bytes: NAME_MAX of Linux (and Nix's NAR parser).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isValidName, MAX_NODE_NAME_LEN } from "@nixcas/nixcas/castore";
 * assert.equal(isValidName(new Uint8Array(MAX_NODE_NAME_LEN).fill(0x61)), true);
 * assert.equal(isValidName(new Uint8Array(MAX_NODE_NAME_LEN + 1).fill(0x61)), false);
 * ```
 */
export const MAX_NODE_NAME_LEN = 255;

/**
 * Longest symlink target, in bytes: PATH_MAX minus the NUL, the most `symlink(2)` and
 * `readlink(2)` handle, so a longer one could be neither checked out nor mounted.
 */
export const MAX_SYMLINK_TARGET_LEN = 4095;

/**
 * True when `name` is a valid node name: not empty, `.` or `..`, no `/` and no NUL, at most
 * {@linkcode MAX_NODE_NAME_LEN} bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isValidName } from "@nixcas/nixcas/castore";
 * const enc = new TextEncoder();
 * assert(isValidName(enc.encode("hello.txt")));
 * assert.equal(isValidName(enc.encode("..")), false);
 * assert.equal(isValidName(enc.encode("a/b")), false);
 * ```
 */
export function isValidName(name: Uint8Array): boolean {
  if (name.length === 0 || name.length > MAX_NODE_NAME_LEN) return false;
  if (name.length === 1 && name[0] === 0x2e) return false;
  if (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e) return false;
  return !name.includes(0) && !name.includes(0x2f);
}

/**
 * The canonical encoding of a Directory: proto3, fields in number order, defaults omitted, no
 * unknown fields. Its BLAKE3 is the directory's digest.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeDirectory, encodeDirectory, makeDirectory } from "@nixcas/nixcas/castore";
 * const dir = makeDirectory({
 *   symlinks: [{
 *     $typeName: "tvix.castore.v1.SymlinkNode",
 *     name: new TextEncoder().encode("a"),
 *     target: new TextEncoder().encode("b"),
 *   }],
 * });
 * const bytes = encodeDirectory(dir);
 * assert.deepEqual(decodeDirectory(bytes), dir);
 * assert.deepEqual(encodeDirectory(makeDirectory({})), new Uint8Array()); // empty: no bytes
 * ```
 */
export function encodeDirectory(directory: Directory): Uint8Array {
  return encodeDirectoryWire(directory);
}

/**
 * Decodes a Directory (does not validate; see {@linkcode validateDirectory}). Unknown fields
 * are dropped, as tvix drops them. Throws `WireError` on malformed bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeDirectory, encodeDirectory, makeDirectory } from "@nixcas/nixcas/castore";
 * const bytes = encodeDirectory(makeDirectory({
 *   files: [{
 *     $typeName: "tvix.castore.v1.FileNode",
 *     name: new TextEncoder().encode("empty"),
 *     digest: new Uint8Array(32),
 *     size: 0,
 *     executable: false,
 *   }],
 * }));
 * const dir = decodeDirectory(bytes);
 * assert.equal(new TextDecoder().decode(dir.files[0].name), "empty");
 * ```
 */
export function decodeDirectory(bytes: Uint8Array): Directory {
  return decodeDirectoryWire(bytes);
}

/**
 * The BLAKE3 of the canonical encoding: the key of a directory in a DirectoryService.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { directoryDigest, makeDirectory } from "@nixcas/nixcas/castore";
 * // The empty directory encodes to no bytes, so its digest is BLAKE3 of nothing.
 * assert.equal(
 *   directoryDigest(makeDirectory({})).toHex(),
 *   "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
 * );
 * ```
 */
export function directoryDigest(directory: Directory): B3Digest {
  return blake3(encodeDirectory(directory));
}

/**
 * The size of a directory as castore defines it: the number of files and symlinks, plus for
 * each child directory one plus its own size.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { directoryNodeFor, directorySize, makeDirectory } from "@nixcas/nixcas/castore";
 * const enc = new TextEncoder();
 * const link = (name: string) => ({
 *   $typeName: "tvix.castore.v1.SymlinkNode" as const,
 *   name: enc.encode(name),
 *   target: enc.encode("x"),
 * });
 * const lib = makeDirectory({ symlinks: [link("a"), link("b")] }); // size 2
 * const root = makeDirectory({ directories: [directoryNodeFor(enc.encode("lib"), lib)] });
 * assert.equal(directorySize(root), 3);
 * ```
 */
export function directorySize(directory: Directory): number {
  let size = directory.files.length + directory.symlinks.length;
  for (const d of directory.directories) size += 1 + d.size;
  return size >>> 0;
}

/**
 * Checks every rule of a Directory: valid names, 32-byte digests, each list sorted, no name
 * twice across the three lists. Throws {@linkcode ValidateDirectoryError} at the first problem,
 * in the order tvix checks (directories, then files, then symlinks).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   makeDirectory,
 *   validateDirectory,
 *   ValidateDirectoryError,
 * } from "@nixcas/nixcas/castore";
 * const enc = new TextEncoder();
 * const link = (name: string) => ({
 *   $typeName: "tvix.castore.v1.SymlinkNode" as const,
 *   name: enc.encode(name),
 *   target: enc.encode("x"),
 * });
 * validateDirectory(makeDirectory({ symlinks: [link("a"), link("b")] })); // fine
 * assert.throws(
 *   () => validateDirectory(makeDirectory({ symlinks: [link("b"), link("a")] })),
 *   ValidateDirectoryError, // "a" is not sorted
 * );
 * ```
 */
export function validateDirectory(directory: Directory): void {
  const seen = new Set<string>();
  const check = (name: Uint8Array, prev: Uint8Array | null) => {
    if (!isValidName(name)) throw new ValidateDirectoryError("InvalidName", name);
    if (prev !== null && compareBytes(name, prev) < 0) {
      throw new ValidateDirectoryError("WrongSorting", name);
    }
    const key = String.fromCharCode(...name);
    if (seen.has(key)) throw new ValidateDirectoryError("DuplicateName", name);
    seen.add(key);
  };
  let prev: Uint8Array | null = null;
  for (const d of directory.directories) {
    if (!isValidName(d.name)) throw new ValidateDirectoryError("InvalidName", d.name);
    if (d.digest.length !== B3_LEN) {
      throw new ValidateDirectoryError("InvalidDigestLen", d.digest.length);
    }
    check(d.name, prev);
    prev = d.name;
  }
  prev = null;
  for (const f of directory.files) {
    if (!isValidName(f.name)) throw new ValidateDirectoryError("InvalidName", f.name);
    if (f.digest.length !== B3_LEN) {
      throw new ValidateDirectoryError("InvalidDigestLen", f.digest.length);
    }
    check(f.name, prev);
    prev = f.name;
  }
  prev = null;
  for (const s of directory.symlinks) {
    check(s.name, prev);
    validateSymlinkTarget(s);
    prev = s.name;
  }
}

/**
 * Throws {@linkcode ValidateDirectoryError} (`InvalidSymlinkTarget`, naming the symlink) for an
 * empty target, one with a NUL byte, or one longer than {@linkcode MAX_SYMLINK_TARGET_LEN}:
 * none of these can be a symlink on disk or in a NAR that Nix accepts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { validateSymlinkTarget, ValidateDirectoryError } from "@nixcas/nixcas/castore";
 * const enc = new TextEncoder();
 * const link = (target: string) => ({
 *   $typeName: "tvix.castore.v1.SymlinkNode" as const,
 *   name: enc.encode("lib"),
 *   target: enc.encode(target),
 * });
 * validateSymlinkTarget(link("../lib64")); // does not throw
 * assert.throws(() => validateSymlinkTarget(link("")), ValidateDirectoryError);
 * assert.throws(() => validateSymlinkTarget(link("a\0b")), /symlink "lib" .* NUL byte/);
 * ```
 */
export function validateSymlinkTarget(s: SymlinkNode): void {
  const t = s.target;
  let why: string | null = null;
  if (t.length === 0) why = "it is empty";
  else if (t.length > MAX_SYMLINK_TARGET_LEN) {
    why = `it is ${t.length} bytes (at most ${MAX_SYMLINK_TARGET_LEN})`;
  } else if (t.includes(0)) why = `it contains a NUL byte: ${clip(displayName(t))}`;
  if (why) throw new ValidateDirectoryError("InvalidSymlinkTarget", s.name, why);
}

/**
 * All nodes of a directory in name order, merging the three sorted lists (as tvix's
 * `Directory::nodes`). The lists must be sorted; {@linkcode validateDirectory} checks that.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { directoryNodeFor, directoryNodes, makeDirectory } from "@nixcas/nixcas/castore";
 * const enc = new TextEncoder();
 * const link = (name: string, target: string) => ({
 *   $typeName: "tvix.castore.v1.SymlinkNode" as const,
 *   name: enc.encode(name),
 *   target: enc.encode(target),
 * });
 * const dir = makeDirectory({
 *   directories: [directoryNodeFor(enc.encode("lib"), makeDirectory({}))],
 *   symlinks: [link("bin", "x"), link("sbin", "bin")],
 * });
 * const dec = new TextDecoder();
 * const listed = [...directoryNodes(dir)].map((n) => `${n.case} ${dec.decode(n.value.name)}`);
 * // Sorted by name, whatever the kind:
 * assert.deepEqual(listed, ["symlink bin", "directory lib", "symlink sbin"]);
 * ```
 */
export function* directoryNodes(directory: Directory): Generator<AnyNode> {
  const { directories: ds, files: fs, symlinks: ss } = directory;
  let i = 0, j = 0, k = 0;
  while (i < ds.length || j < fs.length || k < ss.length) {
    const d = ds[i], f = fs[j], s = ss[k];
    // Pick the smallest present name; ties cannot happen in a valid directory.
    let pick: "d" | "f" | "s" = d ? "d" : f ? "f" : "s";
    let best = d?.name ?? f?.name ?? s.name;
    if (f && compareBytes(f.name, best) < 0) [pick, best] = ["f", f.name];
    if (s && compareBytes(s.name, best) < 0) [pick, best] = ["s", s.name];
    if (pick === "d") yield { case: "directory", value: ds[i++] };
    else if (pick === "f") yield { case: "file", value: fs[j++] };
    else yield { case: "symlink", value: ss[k++] };
  }
}

/**
 * The name of a node.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type AnyNode, nodeName } from "@nixcas/nixcas/castore";
 * const node: AnyNode = {
 *   case: "file",
 *   value: {
 *     $typeName: "tvix.castore.v1.FileNode",
 *     name: new TextEncoder().encode("README"),
 *     digest: new Uint8Array(32),
 *     size: 0,
 *     executable: false,
 *   },
 * };
 * assert.equal(new TextDecoder().decode(nodeName(node)), "README");
 * ```
 */
export function nodeName(node: AnyNode): Uint8Array {
  return node.value.name;
}

/**
 * A copy of a node with another name (the node itself is not changed).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type AnyNode, renameNode } from "@nixcas/nixcas/castore";
 * const enc = new TextEncoder();
 * const node: AnyNode = {
 *   case: "symlink",
 *   value: {
 *     $typeName: "tvix.castore.v1.SymlinkNode",
 *     name: enc.encode("old"),
 *     target: enc.encode("x"),
 *   },
 * };
 * const renamed = renameNode(node, enc.encode("new"));
 * assert.equal(new TextDecoder().decode(renamed.value.name), "new");
 * assert.equal(new TextDecoder().decode(node.value.name), "old");
 * ```
 */
export function renameNode(node: AnyNode, name: Uint8Array): AnyNode {
  return { case: node.case, value: { ...node.value, name } } as AnyNode;
}

/**
 * Wraps a node in the `Node` message (for PathInfo and CalculateNAR).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { directoryNodeFor, makeDirectory, toNodeMessage } from "@nixcas/nixcas/castore";
 * const root = directoryNodeFor(new TextEncoder().encode("out"), makeDirectory({}));
 * const message = toNodeMessage({ case: "directory", value: root });
 * assert.equal(message.$typeName, "tvix.castore.v1.Node");
 * assert.equal(message.node.case, "directory");
 * ```
 */
export function toNodeMessage(node: AnyNode): Node {
  return { $typeName: "tvix.castore.v1.Node", node };
}

/**
 * Unwraps a `Node` message; throws {@linkcode InvalidRequestError} when the oneof is unset.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidRequestError } from "@nixcas/nixcas";
 * import { fromNodeMessage } from "@nixcas/nixcas/castore";
 * import { makePathInfo, StorePath } from "@nixcas/nixcas/store";
 * const info = makePathInfo({
 *   storePath: StorePath.parse("00bgd045z0d4icpbc2yyz4gx48ak44la-hello"),
 *   node: {
 *     case: "symlink",
 *     value: {
 *       $typeName: "tvix.castore.v1.SymlinkNode",
 *       name: new Uint8Array(),
 *       target: new TextEncoder().encode("/nix/store/x"),
 *     },
 *   },
 *   narSize: 120,
 *   narSha256: new Uint8Array(32),
 * });
 * const root = fromNodeMessage(info.node);
 * assert.equal(root.case, "symlink");
 * const name = new TextDecoder().decode(root.value.name);
 * assert.equal(name, "00bgd045z0d4icpbc2yyz4gx48ak44la-hello");
 * assert.throws(() => fromNodeMessage(undefined), InvalidRequestError);
 * ```
 */
export function fromNodeMessage(node: Node | undefined): AnyNode {
  if (!node || node.node.case === undefined) throw new InvalidRequestError("node is not set");
  return node.node as AnyNode;
}

/**
 * Validates a root node as found in a PathInfo or a CalculateNAR request: a valid name and, for
 * directories and files, a 32-byte digest, for symlinks a valid target. Throws
 * {@linkcode ValidateDirectoryError}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type AnyNode, ValidateDirectoryError, validateNode } from "@nixcas/nixcas/castore";
 * const file: AnyNode = {
 *   case: "file",
 *   value: {
 *     $typeName: "tvix.castore.v1.FileNode",
 *     name: new TextEncoder().encode("hello"),
 *     digest: new Uint8Array(20), // too short for BLAKE3
 *     size: 5,
 *     executable: false,
 *   },
 * };
 * assert.throws(() => validateNode(file), ValidateDirectoryError);
 * ```
 */
export function validateNode(node: AnyNode): void {
  if (!isValidName(node.value.name)) {
    throw new ValidateDirectoryError("InvalidName", node.value.name);
  }
  if (node.case === "symlink") validateSymlinkTarget(node.value);
  else if (node.value.digest.length !== B3_LEN) {
    throw new ValidateDirectoryError("InvalidDigestLen", node.value.digest.length);
  }
}

/**
 * Creates a Directory from partial fields (missing lists are empty).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { makeDirectory } from "@nixcas/nixcas/castore";
 * const dir = makeDirectory({
 *   files: [{
 *     $typeName: "tvix.castore.v1.FileNode",
 *     name: new TextEncoder().encode("empty"),
 *     digest: new Uint8Array(32),
 *     size: 0,
 *     executable: false,
 *   }],
 * });
 * assert.equal(dir.$typeName, "tvix.castore.v1.Directory");
 * assert.deepEqual([dir.files.length, dir.directories.length, dir.symlinks.length], [1, 0, 0]);
 * ```
 */
export function makeDirectory(
  init: Partial<Pick<Directory, "directories" | "files" | "symlinks">>,
): Directory {
  return {
    $typeName: "tvix.castore.v1.Directory",
    directories: [...(init.directories ?? [])],
    files: [...(init.files ?? [])],
    symlinks: [...(init.symlinks ?? [])],
  };
}

/**
 * A DirectoryNode pointing at `directory` under `name`, with its digest and size filled in.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { directoryDigest, directoryNodeFor, makeDirectory } from "@nixcas/nixcas/castore";
 * const child = makeDirectory({});
 * const node = directoryNodeFor(new TextEncoder().encode("empty"), child);
 * assert.deepEqual(node.digest, directoryDigest(child).bytes);
 * assert.equal(node.size, 0);
 * ```
 */
export function directoryNodeFor(name: Uint8Array, directory: Directory): DirectoryNode {
  return {
    $typeName: "tvix.castore.v1.DirectoryNode",
    name,
    digest: directoryDigest(directory).bytes,
    size: directorySize(directory),
  };
}
