/**
 * Nix store paths: `/nix/store/<32 nixbase32 chars>-<name>`, a 20-byte digest plus a name.
 * Parsing, validation, printing, and the path `nix-store --add` gives a tree.
 *
 * @module
 */
import { toHex } from "../base/bytes.ts";
import { clip, InvalidRequestError } from "../base/errors.ts";
import * as nixbase32 from "./nixbase32.ts";
import { sha256 } from "../hash/sha256.ts";

/**
 * Length in bytes of a store path digest.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { STORE_PATH_DIGEST_LEN, StorePath } from "@nixcas/nixcas/store";
 * const p = StorePath.parse("00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60");
 * assert.equal(p.digest.length, STORE_PATH_DIGEST_LEN);
 * ```
 */
export const STORE_PATH_DIGEST_LEN = 20;
/**
 * Length of the nixbase32 encoding of the digest (32 characters).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ENCODED_DIGEST_LEN } from "@nixcas/nixcas/store";
 * const basename = "00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60";
 * assert.equal(basename.slice(ENCODED_DIGEST_LEN + 1), "net-tools-1.60");
 * ```
 */
export const ENCODED_DIGEST_LEN = 32;
/**
 * The store directory, without trailing slash.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { STORE_DIR, StorePath } from "@nixcas/nixcas/store";
 * const path = StorePath.parse("00bgd045z0d4icpbc2yyz4gx48ak44la-hello");
 * assert.equal(path.absolute, `${STORE_DIR}/00bgd045z0d4icpbc2yyz4gx48ak44la-hello`);
 * ```
 */
export const STORE_DIR = "/nix/store";
/**
 * The store directory with its trailing slash, the prefix of every absolute store path.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { STORE_DIR_WITH_SLASH } from "@nixcas/nixcas/store";
 * const path = "/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-hello/bin/hello";
 * assert(path.startsWith(STORE_DIR_WITH_SLASH));
 * ```
 */
export const STORE_DIR_WITH_SLASH = "/nix/store/";
/**
 * Longest name Nix accepts, in bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MAX_NAME_LEN, StorePathError, validateName } from "@nixcas/nixcas/store";
 * validateName("a".repeat(MAX_NAME_LEN)); // fine
 * assert.throws(() => validateName("a".repeat(MAX_NAME_LEN + 1)), StorePathError);
 * ```
 */
export const MAX_NAME_LEN = 211;

/**
 * Why a text is not a store path; the same kinds as nix-compat's `store_path::Error`. Found on
 * {@linkcode StorePathError.kind}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { StorePath, StorePathError, type StorePathErrorKind } from "@nixcas/nixcas/store";
 * function whyInvalid(text: string): StorePathErrorKind | null {
 *   try {
 *     StorePath.parseAbsolute(text);
 *     return null;
 *   } catch (e) {
 *     if (e instanceof StorePathError) return e.kind;
 *     throw e;
 *   }
 * }
 * assert.equal(whyInvalid("/usr/bin/hello"), "MissingStoreDir");
 * assert.equal(whyInvalid("/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la_hello"), "MissingDash");
 * ```
 */
export type StorePathErrorKind =
  | "InvalidLength"
  | "InvalidHashEncoding"
  | "MissingDash"
  | "InvalidName"
  | "MissingStoreDir";

/**
 * A text is not a valid store path (or name). `text` is the whole text at fault.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { StorePath, StorePathError } from "@nixcas/nixcas/store";
 * assert.throws(() => StorePath.parse("00bgd045z0d4icpbc2yyz4gx48ak44la-hello world"), (e) => {
 *   assert(e instanceof StorePathError);
 *   assert.equal(e.kind, "InvalidName");
 *   assert.equal(e.text, "00bgd045z0d4icpbc2yyz4gx48ak44la-hello world");
 *   return true;
 * });
 * ```
 */
export class StorePathError extends InvalidRequestError {
  /** The rule that was broken. */
  readonly kind: StorePathErrorKind;
  /** The text that failed to parse. */
  readonly text: string;

  /** Creates the error; `detail` says more than the kind. */
  constructor(kind: StorePathErrorKind, text: string, detail: string) {
    // Quoted in full unless far longer than a store path (at most 255 characters) can be.
    super(`invalid store path ${JSON.stringify(clip(text, 400))}: ${detail}`);
    this.name = "StorePathError";
    this.kind = kind;
    this.text = text;
  }
}

/** True for the bytes Nix allows in a name: `[A-Za-z0-9+\-._?=]`. */
function isNameChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || // 0-9
    (c >= 0x41 && c <= 0x5a) || // A-Z
    (c >= 0x61 && c <= 0x7a) || // a-z
    c === 0x2b || c === 0x2d || c === 0x2e || c === 0x5f || c === 0x3f || c === 0x3d; // + - . _ ? =
}

/**
 * Checks a store path name: 1 to 211 characters of `[A-Za-z0-9+\-._?=]`. A leading `.` is
 * allowed, as in Nix 2.8 (the oracle this project is checked against). `context` is the text
 * named in the error (defaults to the name). Throws {@linkcode StorePathError}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { StorePathError, validateName } from "@nixcas/nixcas/store";
 * validateName("hello-2.12.1"); // fine
 * assert.throws(() => validateName("hello world"), StorePathError); // no spaces
 * assert.throws(() => validateName(""), StorePathError);
 * ```
 */
export function validateName(name: string, context: string = name): void {
  if (name.length === 0) throw new StorePathError("InvalidLength", context, "empty name");
  if (name.length > MAX_NAME_LEN) {
    throw new StorePathError(
      "InvalidLength",
      context,
      `name is ${name.length} bytes long (at most ${MAX_NAME_LEN})`,
    );
  }
  for (let i = 0; i < name.length; i++) {
    if (!isNameChar(name.charCodeAt(i))) {
      throw new StorePathError(
        "InvalidName",
        context,
        `invalid character ${JSON.stringify(name[i])} at ${i} of the name`,
      );
    }
  }
}

/**
 * A store path: 20 digest bytes and a name. Immutable; `toString()` is the basename
 * `<nixbase32 digest>-<name>`, {@linkcode StorePath.absolute} the full path.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { StorePath } from "@nixcas/nixcas/store";
 * const p = StorePath.parseAbsolute("/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60");
 * assert.equal(p.name, "net-tools-1.60");
 * assert.equal(p.toString(), "00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60");
 * assert.equal(p.absolute, "/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60");
 * ```
 */
export class StorePath {
  /** The 20 digest bytes. Treat as read-only. */
  readonly digest: Uint8Array;
  /** The name (ASCII). */
  readonly name: string;

  /** Builds a store path, validating the digest length and the name. */
  constructor(digest: Uint8Array, name: string) {
    if (digest.length !== STORE_PATH_DIGEST_LEN) {
      throw new InvalidRequestError(
        `invalid store path digest length: ${digest.length} (want ${STORE_PATH_DIGEST_LEN})`,
      );
    }
    validateName(name);
    this.digest = digest.slice();
    this.name = name;
  }

  /**
   * Parses a basename `<32 nixbase32 chars>-<name>` (no store directory, no sub path).
   * Checks in nix-compat's order: length, digest encoding, dash, name.
   */
  static parse(basename: string): StorePath {
    if (basename.length < ENCODED_DIGEST_LEN + 2) {
      throw new StorePathError(
        "InvalidLength",
        basename,
        `too short (want at least ${ENCODED_DIGEST_LEN + 2} characters)`,
      );
    }
    let digest: Uint8Array;
    try {
      digest = nixbase32.decode(basename.slice(0, ENCODED_DIGEST_LEN), STORE_PATH_DIGEST_LEN);
    } catch (e) {
      throw new StorePathError("InvalidHashEncoding", basename, (e as Error).message);
    }
    if (basename[ENCODED_DIGEST_LEN] !== "-") {
      throw new StorePathError("MissingDash", basename, "no dash between digest and name");
    }
    const name = basename.slice(ENCODED_DIGEST_LEN + 1);
    validateName(name, basename);
    return new StorePath(digest, name);
  }

  /** Parses a basename given as raw bytes (a castore node name). Non-ASCII bytes are invalid. */
  static fromBytes(basename: Uint8Array): StorePath {
    // latin1 keeps one character per byte; any byte ≥ 0x80 then fails the name charset.
    let s = "";
    for (let i = 0; i < basename.length; i += 0x8000) {
      s += String.fromCharCode(...basename.subarray(i, i + 0x8000));
    }
    return StorePath.parse(s);
  }

  /** Parses an absolute path `/nix/store/<basename>` with nothing after the basename. */
  static parseAbsolute(path: string): StorePath {
    if (!path.startsWith(STORE_DIR_WITH_SLASH)) {
      throw new StorePathError(
        "MissingStoreDir",
        path,
        `does not start with ${STORE_DIR_WITH_SLASH}`,
      );
    }
    return StorePath.parse(path.slice(STORE_DIR_WITH_SLASH.length));
  }

  /** The basename, `<nixbase32 digest>-<name>`. */
  toString(): string {
    return `${nixbase32.encode(this.digest)}-${this.name}`;
  }

  /** The absolute path, `/nix/store/<basename>`. */
  get absolute(): string {
    return STORE_DIR_WITH_SLASH + this.toString();
  }

  /** Same digest and name. */
  equals(other: StorePath): boolean {
    if (this.name !== other.name) return false;
    for (let i = 0; i < STORE_PATH_DIGEST_LEN; i++) {
      if (this.digest[i] !== other.digest[i]) return false;
    }
    return true;
  }
}

/**
 * Parses an absolute path that may continue below the store path, e.g.
 * `/nix/store/<basename>/bin/arp`. Returns the store path and the sub path's components
 * (empty for the store path itself; empty components from `//` or a trailing `/` are dropped;
 * `.` and `..` are rejected so the sub path cannot leave the store path).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseStorePathWithSubpath } from "@nixcas/nixcas/store";
 * const { storePath, subpath } = parseStorePathWithSubpath(
 *   "/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60/bin/arp",
 * );
 * assert.equal(storePath.name, "net-tools-1.60");
 * assert.deepEqual(subpath, ["bin", "arp"]);
 * ```
 */
export function parseStorePathWithSubpath(
  path: string,
): { storePath: StorePath; subpath: string[] } {
  if (!path.startsWith(STORE_DIR_WITH_SLASH)) {
    throw new StorePathError(
      "MissingStoreDir",
      path,
      `does not start with ${STORE_DIR_WITH_SLASH}`,
    );
  }
  const [first, ...rest] = path.slice(STORE_DIR_WITH_SLASH.length).split("/");
  if (first === "") {
    throw new StorePathError("InvalidName", path, "no store path after the store dir");
  }
  const storePath = StorePath.parse(first);
  const subpath = rest.filter((c) => c !== "");
  for (const c of subpath) {
    if (c === "." || c === "..") {
      throw new StorePathError(
        "InvalidName",
        path,
        `sub path component ${JSON.stringify(clip(c))}`,
      );
    }
  }
  return { storePath, subpath };
}

/**
 * Folds a hash to `size` bytes by XOR (`out[i % size] ^= hash[i]`), as Nix's `compressHash`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { compressHash } from "@nixcas/nixcas/store";
 * const folded = compressHash(new Uint8Array([1, 2, 3, 4, 5, 6]), 4);
 * assert.deepEqual(folded, new Uint8Array([1 ^ 5, 2 ^ 6, 3, 4]));
 * ```
 */
export function compressHash(hash: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < hash.length; i++) out[i % size] ^= hash[i];
  return out;
}

/**
 * The store path `nix-store --add` gives a tree with no references: the fingerprint
 * `source:sha256:<hex nar sha256>:/nix/store:<name>` hashed with SHA-256, folded to 20 bytes.
 * Throws when `narSha256` is not 32 bytes or the name is invalid.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createHash } from "node:crypto";
 * import { NarWriter } from "@nixcas/nixcas/nar";
 * import { sourceStorePath } from "@nixcas/nixcas/store";
 * // The NAR of a file containing "Hello, world!\n", and its SHA-256:
 * const hash = createHash("sha256");
 * const nar = new NarWriter((bytes) => hash.update(bytes));
 * nar.file(false, new TextEncoder().encode("Hello, world!\n"));
 * nar.finish();
 * const storePath = sourceStorePath("hello.txt", hash.digest());
 * assert.equal(storePath.absolute, "/nix/store/xrabnx1r49hn890prhx86h6iyn19p976-hello.txt");
 * ```
 */
export function sourceStorePath(name: string, narSha256: Uint8Array): StorePath {
  if (narSha256.length !== 32) {
    throw new InvalidRequestError(`invalid NAR sha256 length: ${narSha256.length} (want 32)`);
  }
  validateName(name);
  const h = sha256(`source:sha256:${toHex(narSha256)}:${STORE_DIR}:${name}`);
  return new StorePath(compressHash(h, STORE_PATH_DIGEST_LEN), name);
}
