/**
 * The castore Directory model: canonical encoding, digest, size, validation, and a merged
 * name-ordered view over the three node lists. Directories are the generated protobuf messages
 * of `tvix.castore.v1`; this module adds the rules around them.
 *
 * @module
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  type Directory,
  type DirectoryNode,
  DirectorySchema,
  type FileNode,
  type Node,
  NodeSchema,
  type SymlinkNode,
} from "../gen/tvix/castore/protos/castore_pb.ts";
import { B3_LEN, type B3Digest, blake3, toBase64 } from "./digest.ts";
import { InvalidRequestError } from "./errors.ts";

export type { Directory, DirectoryNode, FileNode, Node, SymlinkNode };

/** One node of a directory, tagged by kind (the `node` oneof of the `Node` message). */
export type AnyNode =
  | { case: "directory"; value: DirectoryNode }
  | { case: "file"; value: FileNode }
  | { case: "symlink"; value: SymlinkNode };

/** Why a Directory is invalid; the same kinds as tvix's `ValidateDirectoryError`. */
export type DirectoryErrorKind =
  | "InvalidName"
  | "WrongSorting"
  | "DuplicateName"
  | "InvalidDigestLen";

const decoder = new TextDecoder("utf-8", { fatal: true });

/** A node name for messages: UTF-8 when it is, base64 otherwise. */
export function displayName(name: Uint8Array): string {
  try {
    return JSON.stringify(decoder.decode(name));
  } catch {
    return `base64:${toBase64(name)}`;
  }
}

/** A Directory failed validation. `kind` and `detail` say why (the name, or the bad length). */
export class ValidateDirectoryError extends InvalidRequestError {
  /** The rule that was broken. */
  readonly kind: DirectoryErrorKind;
  /** The offending name (for name errors) or digest length (for `InvalidDigestLen`). */
  readonly detail: Uint8Array | number;

  /** Creates the error; the message is derived from kind and detail. */
  constructor(kind: DirectoryErrorKind, detail: Uint8Array | number) {
    const what = typeof detail === "number" ? String(detail) : displayName(detail);
    const msg = {
      InvalidName: `invalid name ${what}`,
      WrongSorting: `${what} is not sorted`,
      DuplicateName: `${what} is a duplicate name`,
      InvalidDigestLen: `invalid digest length: ${what}`,
    }[kind];
    super(msg);
    this.name = "ValidateDirectoryError";
    this.kind = kind;
    this.detail = detail;
  }
}

/** Byte-wise comparison of two names (negative, zero, positive), the order castore uses. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}

/** True when `name` is a valid node name: not empty, `.` or `..`, no `/` and no NUL. */
export function isValidName(name: Uint8Array): boolean {
  if (name.length === 0) return false;
  if (name.length === 1 && name[0] === 0x2e) return false;
  if (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e) return false;
  return !name.includes(0) && !name.includes(0x2f);
}

/**
 * The canonical encoding of a Directory: proto3, fields in number order, defaults omitted, no
 * unknown fields. Its BLAKE3 is the directory's digest.
 */
export function encodeDirectory(directory: Directory): Uint8Array {
  return toBinary(DirectorySchema, directory, { writeUnknownFields: false });
}

/** Decodes a Directory (does not validate). */
export function decodeDirectory(bytes: Uint8Array): Directory {
  return fromBinary(DirectorySchema, bytes, { readUnknownFields: false });
}

/** The BLAKE3 of the canonical encoding. */
export function directoryDigest(directory: Directory): B3Digest {
  return blake3(encodeDirectory(directory));
}

/**
 * The size of a directory as castore defines it: the number of files and symlinks, plus for
 * each child directory one plus its own size.
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
    prev = s.name;
  }
}

/**
 * All nodes of a directory in name order, merging the three sorted lists (as tvix's
 * `Directory::nodes`). The lists must be sorted; {@linkcode validateDirectory} checks that.
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

/** The name of a node. */
export function nodeName(node: AnyNode): Uint8Array {
  return node.value.name;
}

/** A copy of a node with another name. */
export function renameNode(node: AnyNode, name: Uint8Array): AnyNode {
  return { case: node.case, value: { ...node.value, name } } as AnyNode;
}

/** Wraps a node in the `Node` message (for PathInfo and CalculateNAR). */
export function toNodeMessage(node: AnyNode): Node {
  return create(NodeSchema, { node });
}

/** Unwraps a `Node` message; throws {@linkcode InvalidRequestError} when the oneof is unset. */
export function fromNodeMessage(node: Node | undefined): AnyNode {
  if (!node || node.node.case === undefined) throw new InvalidRequestError("node is not set");
  return node.node as AnyNode;
}

/**
 * Validates a root node as found in a PathInfo or a CalculateNAR request: a valid name and, for
 * directories and files, a 32-byte digest.
 */
export function validateNode(node: AnyNode): void {
  if (!isValidName(node.value.name)) {
    throw new ValidateDirectoryError("InvalidName", node.value.name);
  }
  if (node.case !== "symlink" && node.value.digest.length !== B3_LEN) {
    throw new ValidateDirectoryError("InvalidDigestLen", node.value.digest.length);
  }
}

/** Creates a Directory from partial fields. */
export function makeDirectory(
  init: Partial<Pick<Directory, "directories" | "files" | "symlinks">>,
): Directory {
  return create(DirectorySchema, init);
}

/** A DirectoryNode pointing at `directory` under `name`, with its digest and size filled in. */
export function directoryNodeFor(name: Uint8Array, directory: Directory): DirectoryNode {
  return {
    $typeName: "tvix.castore.v1.DirectoryNode",
    name,
    digest: directoryDigest(directory).bytes,
    size: directorySize(directory),
  };
}
