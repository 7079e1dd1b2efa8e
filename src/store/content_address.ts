/**
 * Nix content addresses (`libstore/content-address.cc`): the `CA:` strings `text:sha256:…`,
 * `fixed:r:<algo>:…` and `fixed:<algo>:…` as {@linkcode NARInfo_CA}, and the store path a
 * content address implies (`makeTextPath`, `makeFixedOutputPath`), so that a content-addressed
 * path is trusted by its address rather than a signature.
 *
 * @module
 */
import { clip, InvalidRequestError } from "../base/errors.ts";
import { sha256 } from "../hash/sha256.ts";
import {
  decodeDigest,
  HASH_SIZE,
  type HashAlgo,
  isHashAlgo,
  printHash16,
  printHash32,
} from "./nix_hash.ts";
import { type NARInfo_CA, NARInfo_CA_Hash } from "./path_info_service.ts";
import { compressHash, STORE_DIR, STORE_PATH_DIGEST_LEN, StorePath } from "./store_path.ts";

/** How the content was hashed: a text file, a flat file, or the NAR of a tree. */
type Method = "text" | "flat" | "nar";

const KINDS: Readonly<Record<NARInfo_CA_Hash, { method: Method; algo: HashAlgo }>> = {
  [NARInfo_CA_Hash.NAR_SHA256]: { method: "nar", algo: "sha256" },
  [NARInfo_CA_Hash.NAR_SHA1]: { method: "nar", algo: "sha1" },
  [NARInfo_CA_Hash.NAR_SHA512]: { method: "nar", algo: "sha512" },
  [NARInfo_CA_Hash.NAR_MD5]: { method: "nar", algo: "md5" },
  [NARInfo_CA_Hash.TEXT_SHA256]: { method: "text", algo: "sha256" },
  [NARInfo_CA_Hash.FLAT_SHA1]: { method: "flat", algo: "sha1" },
  [NARInfo_CA_Hash.FLAT_MD5]: { method: "flat", algo: "md5" },
  [NARInfo_CA_Hash.FLAT_SHA256]: { method: "flat", algo: "sha256" },
  [NARInfo_CA_Hash.FLAT_SHA512]: { method: "flat", algo: "sha512" },
};

function typeOf(method: Method, algo: HashAlgo): NARInfo_CA_Hash {
  for (const [type, k] of Object.entries(KINDS)) {
    if (k.method === method && k.algo === algo) return Number(type) as NARInfo_CA_Hash;
  }
  throw new Error(`no CA type for ${method} ${algo}`); // unreachable: text is sha256 only
}

/**
 * A content address is malformed, or does not match the store path or content it is claimed
 * for. The message names the content address and the store path.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ContentAddressError, parseContentAddress } from "@nixcas/nixcas/store";
 * assert.throws(() => parseContentAddress("text:sha1:fd540npwk7x370s4s2jzpx74wf365jjm"), (e) => {
 *   assert(e instanceof ContentAddressError);
 *   assert.match(e.message, /text content addresses use sha256/);
 *   return true;
 * });
 * ```
 */
export class ContentAddressError extends InvalidRequestError {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ContentAddressError";
  }
}

/**
 * Parses a Nix content address: `text:sha256:<hash>`, `fixed:r:<algo>:<hash>` or
 * `fixed:<algo>:<hash>` with algo md5, sha1, sha256 or sha512 and the hash in nix32, base16 or
 * base64 (as Nix's `parseContentAddress`). Throws {@linkcode ContentAddressError}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NARInfo_CA_Hash, parseContentAddress, renderContentAddress } from "@nixcas/nixcas/store";
 * const ca = parseContentAddress(
 *   "fixed:r:sha256:1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h",
 * );
 * assert.equal(ca.type, NARInfo_CA_Hash.NAR_SHA256);
 * assert.equal(ca.digest.length, 32);
 * // base16 input is printed back in nix32, as Nix does:
 * const hex = "fixed:sha1:" + "ab".repeat(20);
 * assert.equal(renderContentAddress(parseContentAddress(hex)).length, "fixed:sha1:".length + 32);
 * ```
 */
export function parseContentAddress(text: string): NARInfo_CA {
  const fail = (why: string) =>
    new ContentAddressError(`invalid content address ${JSON.stringify(clip(text))}: ${why}`);
  let rest: string;
  let method: Method;
  if (text.startsWith("text:")) {
    method = "text";
    rest = text.slice(5);
  } else if (text.startsWith("fixed:r:")) {
    method = "nar";
    rest = text.slice(8);
  } else if (text.startsWith("fixed:")) {
    method = "flat";
    rest = text.slice(6);
  } else {
    throw fail("it starts with neither text: nor fixed:");
  }
  const colon = rest.indexOf(":");
  if (colon < 0) throw fail("no <algo>:<hash> after the method");
  const algo = rest.slice(0, colon);
  if (!isHashAlgo(algo)) throw fail(`unknown hash algorithm ${JSON.stringify(clip(algo))}`);
  if (method === "text" && algo !== "sha256") {
    throw fail(`text content addresses use sha256, not ${algo}`);
  }
  let digest: Uint8Array;
  try {
    digest = decodeDigest(rest.slice(colon + 1), algo);
  } catch (e) {
    throw fail((e as Error).message);
  }
  return { $typeName: "tvix.store.v1.NARInfo.CA", type: typeOf(method, algo), digest };
}

function kindOf(ca: NARInfo_CA): { method: Method; algo: HashAlgo } {
  const kind = KINDS[ca.type];
  if (!kind) throw new ContentAddressError(`unknown content address type ${ca.type}`);
  if (ca.digest.length !== HASH_SIZE[kind.algo]) {
    throw new ContentAddressError(
      `content address ${NARInfo_CA_Hash[ca.type]} digest is ${ca.digest.length} bytes ` +
        `(want ${HASH_SIZE[kind.algo]})`,
    );
  }
  return kind;
}

/**
 * Prints a content address as Nix does: the digest in nix32, e.g.
 * `text:sha256:0ar9xr4ihx8gqg52gfwsbcnxvyxx5650bk408fad73wds6hy3han`. Throws
 * {@linkcode ContentAddressError} when the digest length does not fit the type.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NARInfo_CA_Hash, renderContentAddress } from "@nixcas/nixcas/store";
 * const ca = {
 *   $typeName: "tvix.store.v1.NARInfo.CA" as const,
 *   type: NARInfo_CA_Hash.FLAT_SHA256,
 *   digest: new Uint8Array(32),
 * };
 * assert.equal(renderContentAddress(ca), "fixed:sha256:" + "0".repeat(52));
 * ```
 */
export function renderContentAddress(ca: NARInfo_CA): string {
  const { method, algo } = kindOf(ca);
  const prefix = method === "text" ? "text:" : method === "nar" ? "fixed:r:" : "fixed:";
  return prefix + printHash32(algo, ca.digest);
}

/** Nix's `makeStorePath`: sha256 of `<type>:<algo:hex>:/nix/store:<name>`, folded to 20 bytes. */
function makeStorePath(type: string, hash16: string, name: string): StorePath {
  const h = sha256(`${type}:${hash16}:${STORE_DIR}:${name}`);
  return new StorePath(compressHash(h, STORE_PATH_DIGEST_LEN), name);
}

/** `type` followed by `:<absolute path>` for each reference, sorted and once (a StorePathSet). */
function makeType(type: string, references: readonly StorePath[], self: boolean): string {
  const refs = [...new Set(references.map((r) => r.absolute))].sort();
  return [type, ...refs, ...(self ? ["self"] : [])].join(":");
}

/**
 * The store path a content address gives a path named `name` with these references: Nix's
 * `makeTextPath` for `text:`, `makeFixedOutputPath` for `fixed:` (`fixed:r:sha256` hashes like
 * `nix-store --add`, the other fixed kinds through the `fixed:out:` inner hash and can have no
 * references). `hasSelfReference` is for a fixed path that refers to itself (not among
 * `references`). Throws {@linkcode ContentAddressError} when the kind allows no references.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { contentAddressedStorePath, parseContentAddress } from "@nixcas/nixcas/store";
 * // `nix-store --add-fixed sha256 f` of a file containing "hi\n":
 * const ca = parseContentAddress(
 *   "fixed:sha256:1r3v22qkypccqifzbww5lrn6hf1chi23m6zzkyvb8bvg457nxslq",
 * );
 * assert.equal(
 *   contentAddressedStorePath("f", ca).absolute,
 *   "/nix/store/hrbblgbxbvz8al5a8l85i8giajyajiwj-f",
 * );
 * ```
 */
export function contentAddressedStorePath(
  name: string,
  ca: NARInfo_CA,
  references: readonly StorePath[] = [],
  hasSelfReference = false,
): StorePath {
  const { method, algo } = kindOf(ca);
  if (method === "text") {
    if (hasSelfReference) {
      throw new ContentAddressError(
        `${renderContentAddress(ca)}: a text path cannot refer to itself`,
      );
    }
    return makeStorePath(makeType("text", references, false), printHash16(algo, ca.digest), name);
  }
  if (method === "nar" && algo === "sha256") {
    return makeStorePath(
      makeType("source", references, hasSelfReference),
      printHash16(algo, ca.digest),
      name,
    );
  }
  if (references.length > 0 || hasSelfReference) {
    throw new ContentAddressError(
      `${renderContentAddress(ca)}: only fixed:r:sha256 and text paths can have references`,
    );
  }
  const inner = sha256(
    `fixed:out:${method === "nar" ? "r:" : ""}${printHash16(algo, ca.digest)}:`,
  );
  return makeStorePath("output:out", printHash16("sha256", inner), name);
}

/**
 * What a content address can be checked against, beyond the store path.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ContentDigests } from "@nixcas/nixcas/store";
 * const digests: ContentDigests = { narSha256: new Uint8Array(32) };
 * assert.equal(digests.contentDigest, undefined);
 * ```
 */
export interface ContentDigests {
  /** SHA-256 of the path's NAR: checked against a `fixed:r:sha256` address. */
  narSha256?: Uint8Array;
  /**
   * The digest the address's kind hashes, in its algorithm: of the NAR for `fixed:r:`, of the
   * file's contents for `text:` and flat `fixed:`.
   */
  contentDigest?: Uint8Array;
}

/**
 * Checks that `storePath` is the path `ca` implies for its name and `references` (a reference to
 * `storePath` itself counts as a self reference for `fixed:`, as Nix's `isContentAddressed`),
 * and that `ca`'s digest equals any of `digests` given. Throws {@linkcode ContentAddressError}
 * naming both paths or both digests otherwise.
 *
 * Only `fixed:r:sha256` can be checked from a NAR hash alone; for the other kinds, pass the
 * `contentDigest` hashed from the data, or the address says nothing about the content.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   ContentAddressError,
 *   parseContentAddress,
 *   StorePath,
 *   verifyContentAddress,
 * } from "@nixcas/nixcas/store";
 * // A .drv written by nix-instantiate, which refers to one source:
 * const drv = StorePath.parseAbsolute("/nix/store/480p862xw26ciwshg08gjp12y4sak88m-hello.drv");
 * const src = StorePath.parseAbsolute("/nix/store/rxsgb6m1aaz8861wipgzgffkx9p4p2al-src");
 * const ca = parseContentAddress("text:sha256:1z779mdi05za8sp41rq0xz3ncpfvcpx80a9l2wy4dmg472cmlgdx");
 * verifyContentAddress(drv, ca, [src]); // fine
 * assert.throws(() => verifyContentAddress(drv, ca, []), ContentAddressError); // refs differ
 * ```
 */
export function verifyContentAddress(
  storePath: StorePath,
  ca: NARInfo_CA,
  references: readonly StorePath[],
  digests: ContentDigests = {},
): void {
  const { method, algo } = kindOf(ca);
  let refs = references;
  let self = false;
  if (method !== "text" && references.some((r) => r.equals(storePath))) {
    refs = references.filter((r) => !r.equals(storePath));
    self = true;
  }
  const rendered = renderContentAddress(ca);
  let implied: StorePath;
  try {
    implied = contentAddressedStorePath(storePath.name, ca, refs, self);
  } catch (e) {
    throw new ContentAddressError(
      `store path ${storePath.absolute} claims content address ${rendered}, which does not ` +
        `fit it: ${(e as Error).message}`,
      { cause: e },
    );
  }
  if (!implied.equals(storePath)) {
    throw new ContentAddressError(
      `store path ${storePath.absolute} claims content address ${rendered} with ` +
        `${references.length} reference(s), which gives ${implied.absolute}`,
    );
  }
  const check = (what: string, got: Uint8Array, gotAlgo: HashAlgo) => {
    if (got.length !== ca.digest.length || got.some((b, i) => b !== ca.digest[i])) {
      throw new ContentAddressError(
        `store path ${storePath.absolute} claims content address ${rendered}, but its ${what} ` +
          `is ${got.length === HASH_SIZE[gotAlgo] ? printHash32(gotAlgo, got) : "malformed"}`,
      );
    }
  };
  if (digests.narSha256 && method === "nar" && algo === "sha256") {
    check("NAR hash", digests.narSha256, "sha256");
  }
  if (digests.contentDigest) {
    check(method === "nar" ? `NAR ${algo}` : `content ${algo}`, digests.contentDigest, algo);
  }
}

/**
 * Whether a content address can be confirmed from a path's NAR SHA-256 alone (`fixed:r:sha256`);
 * every other kind needs the content hashed in its own way.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { caCheckedByNarHash, parseContentAddress } from "@nixcas/nixcas/store";
 * const text = parseContentAddress("text:sha256:0ar9xr4ihx8gqg52gfwsbcnxvyxx5650bk408fad73wds6hy3han");
 * assert.equal(caCheckedByNarHash(text), false);
 * ```
 */
export function caCheckedByNarHash(ca: NARInfo_CA): boolean {
  return ca.type === NARInfo_CA_Hash.NAR_SHA256;
}
