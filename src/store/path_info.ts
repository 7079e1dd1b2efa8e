/**
 * PathInfo validation: the rules of tvix's `PathInfo::validate`, plus the NAR SHA-256 length
 * and symlink targets; and what a put may do to a stored path (immutability, data present).
 *
 * @module
 */
import { B3_LEN, B3Digest } from "../castore/digest.ts";
import { toBase64 } from "../base/bytes.ts";
import { clip, InvalidRequestError, PreconditionError } from "../base/errors.ts";
import type { BlobService } from "../castore/blob_service.ts";
import type { DirectoryService } from "../castore/directory_service.ts";
import { encodeNodeWire } from "../castore/wire.ts";
import { encode as nixbase32 } from "./nixbase32.ts";
import {
  type AnyNode,
  renameNode,
  toNodeMessage,
  validateSymlinkTarget,
} from "../castore/directory.ts";
import { displayName } from "../base/bytes.ts";
import {
  type NARInfo_CA,
  NARInfo_CA_Hash,
  type PathInfo,
  type StorePathMessage,
} from "./path_info_service.ts";
import { STORE_PATH_DIGEST_LEN, StorePath, validateName } from "./store_path.ts";

/**
 * Why a PathInfo is invalid; the kinds of tvix's `ValidatePathInfoError`, plus NAR sha256.
 * Found on {@linkcode ValidatePathInfoError.kind}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   type PathInfo,
 *   type PathInfoErrorKind,
 *   validatePathInfo,
 *   ValidatePathInfoError,
 * } from "@nixcas/nixcas/store";
 * function problem(info: PathInfo): PathInfoErrorKind | null {
 *   try {
 *     validatePathInfo(info);
 *     return null;
 *   } catch (e) {
 *     if (e instanceof ValidatePathInfoError) return e.kind;
 *     throw e;
 *   }
 * }
 * assert.equal(problem({ $typeName: "tvix.store.v1.PathInfo", references: [] }), "NoNodePresent");
 * ```
 */
export type PathInfoErrorKind =
  | "InvalidReferenceDigestLen"
  | "NoNodePresent"
  | "InvalidNodeName"
  | "InvalidNodeDigestLen"
  | "InconsistentNumberOfReferences"
  | "InvalidNarinfoReferenceName"
  | "InconsistentNarinfoReferenceNameDigest"
  | "InvalidNarSha256DigestLen"
  | "InvalidSymlinkTarget"
  | "UnsortedReferences"
  | "InvalidDeriver"
  | "InvalidCA";

/**
 * A PathInfo failed validation. `kind` says which rule; the message says what was found.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   makePathInfo,
 *   StorePath,
 *   validatePathInfo,
 *   ValidatePathInfoError,
 * } from "@nixcas/nixcas/store";
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
 *   narSha256: new Uint8Array(16), // should be 32 bytes
 * });
 * assert.throws(() => validatePathInfo(info), (e) => {
 *   assert(e instanceof ValidatePathInfoError);
 *   assert.equal(e.kind, "InvalidNarSha256DigestLen");
 *   assert.equal(e.message, "invalid PathInfo: nar_sha256 is 16 bytes (want 32)");
 *   return true;
 * });
 * ```
 */
export class ValidatePathInfoError extends InvalidRequestError {
  /** The rule that was broken. */
  readonly kind: PathInfoErrorKind;

  /** Creates the error. */
  constructor(kind: PathInfoErrorKind, message: string, options?: ErrorOptions) {
    super(`invalid PathInfo: ${message}`, options);
    this.name = "ValidatePathInfoError";
    this.kind = kind;
  }
}

/**
 * Checks a PathInfo and returns the store path its root node names. In tvix's order:
 *
 * 1. every reference is 20 bytes;
 * 2. with narinfo: nar_sha256 is 32 bytes, reference_names has as many entries as references,
 *    each parses as a store path basename whose digest equals the reference at that position;
 *    reference names are sorted as Nix sorts them (by basename, byte order) with no duplicate;
 *    a deriver has a 20-byte digest and a valid name (without `.drv`); a content address has a
 *    known hash kind and a digest of that hash's length;
 * 3. the root node is set; a directory or file root has a 32-byte digest, a symlink root a
 *    valid target (not empty, no NUL, at most 4095 bytes); its name parses as a store path
 *    basename.
 *
 * Throws {@linkcode ValidatePathInfoError} at the first broken rule.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { makePathInfo, StorePath, validatePathInfo } from "@nixcas/nixcas/store";
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
 * assert.equal(validatePathInfo(info).name, "hello");
 * ```
 */
export function validatePathInfo(info: PathInfo): StorePath {
  info.references.forEach((ref, i) => {
    if (ref.length !== STORE_PATH_DIGEST_LEN) {
      throw new ValidatePathInfoError(
        "InvalidReferenceDigestLen",
        `reference ${i} is ${ref.length} bytes (want ${STORE_PATH_DIGEST_LEN})`,
      );
    }
  });

  const narinfo = info.narinfo;
  if (narinfo) {
    if (narinfo.narSha256.length !== 32) {
      throw new ValidatePathInfoError(
        "InvalidNarSha256DigestLen",
        `nar_sha256 is ${narinfo.narSha256.length} bytes (want 32)`,
      );
    }
    if (narinfo.referenceNames.length !== info.references.length) {
      throw new ValidatePathInfoError(
        "InconsistentNumberOfReferences",
        `${info.references.length} references but ${narinfo.referenceNames.length} ` +
          `narinfo.reference_names`,
      );
    }
    narinfo.referenceNames.forEach((refName, i) => {
      let parsed: StorePath;
      try {
        parsed = StorePath.parse(refName);
      } catch (e) {
        throw new ValidatePathInfoError(
          "InvalidNarinfoReferenceName",
          `reference_names[${i}] ${JSON.stringify(refName)} is not a store path basename`,
          { cause: e },
        );
      }
      const want = info.references[i];
      if (!parsed.digest.every((b, k) => b === want[k])) {
        throw new ValidatePathInfoError(
          "InconsistentNarinfoReferenceNameDigest",
          `reference_names[${i}] ${JSON.stringify(refName)} has digest ` +
            `${toBase64(parsed.digest)}, references[${i}] is ${toBase64(want)}`,
        );
      }
      if (i > 0 && !(narinfo.referenceNames[i - 1] < refName)) {
        throw new ValidatePathInfoError(
          "UnsortedReferences",
          `reference_names[${i}] ${JSON.stringify(refName)} is not after ` +
            `${JSON.stringify(narinfo.referenceNames[i - 1])} (references are sorted, each once)`,
        );
      }
    });
    if (narinfo.deriver) validateDeriver(narinfo.deriver);
    if (narinfo.ca) validateCA(narinfo.ca);
  }

  const node = info.node?.node;
  if (!node || node.case === undefined) {
    throw new ValidatePathInfoError("NoNodePresent", "no root node");
  }
  if (node.case !== "symlink" && node.value.digest.length !== B3_LEN) {
    throw new ValidatePathInfoError(
      "InvalidNodeDigestLen",
      `root ${node.case} node digest is ${node.value.digest.length} bytes (want ${B3_LEN})`,
    );
  }
  if (node.case === "symlink") {
    try {
      validateSymlinkTarget(node.value);
    } catch (e) {
      throw new ValidatePathInfoError(
        "InvalidSymlinkTarget",
        `root node ${displayName(node.value.name)}: ${(e as Error).message}`,
        { cause: e },
      );
    }
  }
  try {
    return StorePath.fromBytes(node.value.name);
  } catch (e) {
    throw new ValidatePathInfoError(
      "InvalidNodeName",
      `root node name ${displayName(node.value.name)}: ${(e as Error).message}`,
      { cause: e },
    );
  }
}

function validateDeriver(d: StorePathMessage): void {
  if (d.digest.length !== STORE_PATH_DIGEST_LEN) {
    throw new ValidatePathInfoError(
      "InvalidDeriver",
      `deriver digest is ${d.digest.length} bytes (want ${STORE_PATH_DIGEST_LEN})`,
    );
  }
  try {
    validateName(`${d.name}.drv`);
  } catch (e) {
    throw new ValidatePathInfoError(
      "InvalidDeriver",
      `deriver name ${JSON.stringify(d.name)}: ${(e as Error).message}`,
      { cause: e },
    );
  }
}

/** Digest length of each content address hash kind. */
const CA_DIGEST_LEN: Record<number, number> = {
  [NARInfo_CA_Hash.NAR_SHA256]: 32,
  [NARInfo_CA_Hash.NAR_SHA1]: 20,
  [NARInfo_CA_Hash.NAR_SHA512]: 64,
  [NARInfo_CA_Hash.NAR_MD5]: 16,
  [NARInfo_CA_Hash.TEXT_SHA256]: 32,
  [NARInfo_CA_Hash.FLAT_SHA1]: 20,
  [NARInfo_CA_Hash.FLAT_MD5]: 16,
  [NARInfo_CA_Hash.FLAT_SHA256]: 32,
  [NARInfo_CA_Hash.FLAT_SHA512]: 64,
};

function validateCA(ca: NARInfo_CA): void {
  const want = CA_DIGEST_LEN[ca.type];
  if (want === undefined) {
    throw new ValidatePathInfoError("InvalidCA", `unknown content address hash kind ${ca.type}`);
  }
  if (ca.digest.length !== want) {
    throw new ValidatePathInfoError(
      "InvalidCA",
      `content address ${NARInfo_CA_Hash[ca.type]} digest is ${ca.digest.length} bytes ` +
        `(want ${want})`,
    );
  }
}

/**
 * What {@linkcode makePathInfo} needs.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { directoryNodeFor, makeDirectory } from "@nixcas/nixcas/castore";
 * import { makePathInfo, type PathInfoInit, StorePath } from "@nixcas/nixcas/store";
 * const init: PathInfoInit = {
 *   storePath: StorePath.parse("00bgd045z0d4icpbc2yyz4gx48ak44la-empty"),
 *   node: { case: "directory", value: directoryNodeFor(new Uint8Array(), makeDirectory({})) },
 *   narSize: 96,
 *   narSha256: new Uint8Array(32),
 *   references: [StorePath.parse("00bgd045z0d4icpbc2yyz4gx48ak44la-glibc")],
 * };
 * const info = makePathInfo(init);
 * assert.deepEqual(info.narinfo?.referenceNames, ["00bgd045z0d4icpbc2yyz4gx48ak44la-glibc"]);
 * ```
 */
export interface PathInfoInit {
  /** The store path this PathInfo describes; the root node is renamed to its basename. */
  storePath: StorePath;
  /** The castore root node (any name). */
  node: AnyNode;
  /** Size of the NAR serialisation. */
  narSize: number;
  /** SHA-256 of the NAR serialisation (32 bytes). */
  narSha256: Uint8Array;
  /** Store paths this one refers to. */
  references?: StorePath[];
  /** Narinfo signatures. */
  signatures?: { name: string; data: Uint8Array }[];
  /** The `.drv` store path that built this one (its name ends in `.drv`). */
  deriver?: StorePath;
  /** The content address, for content-addressed paths. */
  ca?: { type: NARInfo_CA_Hash; digest: Uint8Array };
}

/**
 * Builds a PathInfo message (not yet validated; {@linkcode validatePathInfo} and every
 * PathInfoService `put` check it).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { makePathInfo, StorePath } from "@nixcas/nixcas/store";
 * const info = makePathInfo({
 *   storePath: StorePath.parse("00bgd045z0d4icpbc2yyz4gx48ak44la-hello"),
 *   node: {
 *     case: "symlink",
 *     value: {
 *       $typeName: "tvix.castore.v1.SymlinkNode",
 *       name: new Uint8Array(), // renamed to the store path basename
 *       target: new TextEncoder().encode("/nix/store/x"),
 *     },
 *   },
 *   narSize: 120,
 *   narSha256: new Uint8Array(32),
 * });
 * assert.equal(info.references.length, 0);
 * ```
 */
export function makePathInfo(init: PathInfoInit): PathInfo {
  // Sorted and unique, as Nix keeps them (a std::set of store paths, by basename).
  const refs = [...new Map((init.references ?? []).map((r) => [r.toString(), r])).entries()]
    .sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0).map(([, r]) => r);
  const deriver = init.deriver;
  if (deriver && !deriver.name.endsWith(".drv")) {
    throw new ValidatePathInfoError(
      "InvalidDeriver",
      `deriver ${deriver.absolute} is not a .drv store path`,
    );
  }
  return {
    $typeName: "tvix.store.v1.PathInfo",
    node: toNodeMessage(renameNode(init.node, new TextEncoder().encode(init.storePath.toString()))),
    references: refs.map((r) => r.digest),
    narinfo: {
      $typeName: "tvix.store.v1.NARInfo",
      narSize: BigInt(init.narSize),
      narSha256: init.narSha256,
      signatures: (init.signatures ?? []).map((s) => ({
        $typeName: "tvix.store.v1.NARInfo.Signature",
        name: s.name,
        data: s.data,
      })),
      referenceNames: refs.map((r) => r.toString()),
      deriver: deriver
        ? {
          $typeName: "tvix.store.v1.StorePath",
          name: deriver.name.slice(0, -".drv".length),
          digest: deriver.digest,
        }
        : undefined,
      ca: init.ca ? { $typeName: "tvix.store.v1.NARInfo.CA", ...init.ca } : undefined,
    },
  };
}

/**
 * Refuses a PathInfo whose root node's data is not in this store: for a directory root, the
 * root Directory must be in `directories`; for a file root, the blob must be in `blobs`;
 * a symlink root needs nothing. Throws {@linkcode PreconditionError} naming the store path and
 * the digest.
 *
 * Only the root is checked, not the whole closure: a directory can only be stored through a
 * validated closure put (children in the same stream) and the importer uploads blobs before
 * their directories, so a present root is the evidence that the upload happened, at the cost of
 * one lookup. Walking every directory and blob would make each put as costly as the upload it
 * follows; `calculateNar` (or a mount) reads everything and reports what is missing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PreconditionError } from "@nixcas/nixcas";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { directoryNodeFor, makeDirectory } from "@nixcas/nixcas/castore";
 * import { checkRootData, StorePath } from "@nixcas/nixcas/store";
 * const blobs = new MemoryBlobService();
 * const directories = new MemoryDirectoryService();
 * const storePath = StorePath.parse("00bgd045z0d4icpbc2yyz4gx48ak44la-empty");
 * const root = { case: "directory" as const, value: directoryNodeFor(new Uint8Array(), makeDirectory({})) };
 * await assert.rejects(checkRootData(storePath, root, blobs, directories), PreconditionError);
 * await directories.put(makeDirectory({}));
 * await checkRootData(storePath, root, blobs, directories); // now it is there
 * ```
 */
export async function checkRootData(
  storePath: StorePath,
  root: AnyNode,
  blobs: BlobService,
  directories: DirectoryService,
): Promise<void> {
  if (root.case === "symlink") return;
  const digest = B3Digest.fromBytes(root.value.digest);
  if (root.case === "directory") {
    if (await directories.get(digest)) return;
    throw new PreconditionError(
      `store path ${storePath.absolute}: its root directory ${digest} is not in the directory ` +
        `service; put the directories first`,
    );
  }
  if (await blobs.has(digest)) return;
  throw new PreconditionError(
    `store path ${storePath.absolute}: its blob ${digest} is not in the blob service; put the ` +
      `blob first`,
  );
}

/**
 * What to store when `incoming` is put for a store path that already has `existing`: store
 * paths are immutable, so a different root node, NAR size, NAR hash or references is refused
 * with {@linkcode PreconditionError} naming the path and the first difference; the same content
 * returns `existing` with the signatures of both, existing ones first, each (name and data)
 * once.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PreconditionError } from "@nixcas/nixcas";
 * import { makePathInfo, mergePathInfo, StorePath } from "@nixcas/nixcas/store";
 * const storePath = StorePath.parse("00bgd045z0d4icpbc2yyz4gx48ak44la-hello");
 * const make = (narSize: number, signer?: string) =>
 *   makePathInfo({
 *     storePath,
 *     node: {
 *       case: "symlink",
 *       value: {
 *         $typeName: "tvix.castore.v1.SymlinkNode",
 *         name: new Uint8Array(),
 *         target: new TextEncoder().encode("/nix/store/x"),
 *       },
 *     },
 *     narSize,
 *     narSha256: new Uint8Array(32),
 *     signatures: signer ? [{ name: signer, data: new Uint8Array(64) }] : [],
 *   });
 * const merged = mergePathInfo(storePath, make(120, "a-1"), make(120, "b-1"));
 * assert.deepEqual(merged.narinfo?.signatures.map((s) => s.name), ["a-1", "b-1"]);
 * assert.throws(() => mergePathInfo(storePath, make(120), make(121)), PreconditionError);
 * ```
 */
export function mergePathInfo(
  storePath: StorePath,
  existing: PathInfo,
  incoming: PathInfo,
): PathInfo {
  const differ = (what: string, stored: string, put: string) =>
    new PreconditionError(
      `store path ${storePath.absolute} exists with other content (store paths are immutable): ` +
        `${what} is ${stored}, the put has ${put}`,
    );
  const nodeBytes = (i: PathInfo) => i.node ? encodeNodeWire(i.node) : new Uint8Array();
  if (!equalBytes(nodeBytes(existing), nodeBytes(incoming))) {
    throw differ("the root node", describeRoot(existing), describeRoot(incoming));
  }
  const size = (i: PathInfo) => String(i.narinfo?.narSize ?? "none");
  if (size(existing) !== size(incoming)) {
    throw differ("the NAR size", size(existing), size(incoming));
  }
  const hash = (i: PathInfo) => i.narinfo ? `sha256:${nixbase32(i.narinfo.narSha256)}` : "none";
  if (hash(existing) !== hash(incoming)) {
    throw differ("the NAR hash", hash(existing), hash(incoming));
  }
  const refs = (i: PathInfo) =>
    `[${(i.narinfo?.referenceNames ?? i.references.map((r) => nixbase32(r))).join(", ")}]`;
  if (
    existing.references.length !== incoming.references.length ||
    existing.references.some((r, k) => !equalBytes(r, incoming.references[k])) ||
    refs(existing) !== refs(incoming)
  ) {
    throw differ("the references", refs(existing), refs(incoming));
  }
  const ca = (i: PathInfo) =>
    i.narinfo?.ca ? `${NARInfo_CA_Hash[i.narinfo.ca.type]}:${nixbase32(i.narinfo.ca.digest)}` : "";
  if (ca(existing) && ca(incoming) && ca(existing) !== ca(incoming)) {
    throw differ("the content address", ca(existing), ca(incoming));
  }
  if (!existing.narinfo || !incoming.narinfo) return existing;
  const seen = new Set<string>();
  const signatures = [];
  for (const s of [...existing.narinfo.signatures, ...incoming.narinfo.signatures]) {
    const key = `${s.name}\0${toBase64(s.data)}`;
    if (seen.has(key)) continue;
    seen.add(key);
    signatures.push(s);
  }
  // What the stored info lacks (a deriver, a content address) the put may add; it never changes.
  return {
    ...existing,
    narinfo: {
      ...existing.narinfo,
      signatures,
      deriver: existing.narinfo.deriver ?? incoming.narinfo.deriver,
      ca: existing.narinfo.ca ?? incoming.narinfo.ca,
    },
  };
}

function describeRoot(i: PathInfo): string {
  const n = i.node?.node;
  if (!n || n.case === undefined) return "none";
  if (n.case === "symlink") return `a symlink to ${clip(displayName(n.value.target))}`;
  const d = n.value.digest.length === B3_LEN ? B3Digest.fromBytes(n.value.digest) : "?";
  return n.case === "file"
    ? `file ${d} (${n.value.size} bytes${n.value.executable ? ", executable" : ""})`
    : `directory ${d} (size ${n.value.size})`;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
