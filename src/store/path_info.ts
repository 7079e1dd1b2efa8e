/**
 * PathInfo validation: the rules of tvix's `PathInfo::validate`, plus the NAR SHA-256 length.
 *
 * @module
 */
import { B3_LEN } from "../castore/digest.ts";
import { toBase64 } from "../base/bytes.ts";
import { InvalidRequestError } from "../base/errors.ts";
import { type AnyNode, renameNode, toNodeMessage } from "../castore/directory.ts";
import { displayName } from "../base/bytes.ts";
import type { PathInfo } from "./path_info_service.ts";
import { STORE_PATH_DIGEST_LEN, StorePath } from "./store_path.ts";

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
  | "InvalidNarSha256DigestLen";

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
 * 3. the root node is set; a directory or file root has a 32-byte digest; its name parses as a
 *    store path basename.
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
    });
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
  const refs = init.references ?? [];
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
    },
  };
}
