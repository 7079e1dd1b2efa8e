/**
 * Error classes shared by every castore and store service. Frontends map them to exit codes
 * and gRPC status codes, so each class says what kind of failure it is, not where it happened.
 *
 * @module
 */

/**
 * A request was malformed: bad digest length, invalid Directory, broken closure, ... The gRPC
 * server answers it with INVALID_ARGUMENT.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidRequestError } from "@nixcas/nixcas";
 * import { B3Digest } from "@nixcas/nixcas/castore";
 * assert.throws(() => B3Digest.fromBytes(new Uint8Array(20)), InvalidRequestError);
 * ```
 */
export class InvalidRequestError extends Error {
  /** Creates the error with a message that names the culprit. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "InvalidRequestError";
  }
}

/**
 * Compressed data that cannot be decompressed: corrupt, truncated, not in the format it claims,
 * or followed by trailing bytes. A subclass of {@linkcode InvalidRequestError}: such data comes
 * from a client's upload or a cache's file, never from our own store. The message names the
 * format and the compressed byte offset, e.g. `xz: corrupt data (...) detected at compressed
 * byte 1234`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DecompressionError, InvalidRequestError } from "./errors.ts";
 * const e = new DecompressionError("xz", 1234, "xz: corrupt data detected at compressed byte 1234");
 * assert.ok(e instanceof InvalidRequestError);
 * assert.equal(e.format, "xz");
 * assert.equal(e.offset, 1234);
 * ```
 */
export class DecompressionError extends InvalidRequestError {
  /** The compression format (`xz`, `zstd`, `bzip2`). */
  readonly format: string;
  /** The compressed byte offset at which the problem was detected. */
  readonly offset: number;
  /** Creates the error; `message` names the format and the offset. */
  constructor(format: string, offset: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DecompressionError";
    this.format = format;
    this.offset = offset;
  }
}

/**
 * Something that must exist does not (a blob, a directory, a path info). The gRPC server answers
 * it with NOT_FOUND.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NotFoundError } from "@nixcas/nixcas";
 * import { MemoryBlobService } from "@nixcas/nixcas/backends";
 * import { blake3, readBlob } from "@nixcas/nixcas/castore";
 * const blobs = new MemoryBlobService();
 * const missing = blake3(new TextEncoder().encode("never stored"));
 * await assert.rejects(readBlob(blobs, missing), NotFoundError);
 * ```
 */
export class NotFoundError extends Error {
  /** Creates the error with a message that names what is missing. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "NotFoundError";
  }
}

/**
 * The request is well-formed but the store is not in the state it needs: a store path that
 * exists with other content (store paths are immutable), a PathInfo whose root directory or
 * blob was not uploaded first. The gRPC server answers it with FAILED_PRECONDITION.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PreconditionError } from "@nixcas/nixcas";
 * import {
 *   MemoryBlobService,
 *   MemoryDirectoryService,
 *   MemoryPathInfoService,
 * } from "@nixcas/nixcas/backends";
 * import { directoryNodeFor, makeDirectory } from "@nixcas/nixcas/castore";
 * import { makePathInfo, StorePath } from "@nixcas/nixcas/store";
 * const pathInfos = new MemoryPathInfoService(new MemoryBlobService(), new MemoryDirectoryService());
 * // The root directory was never put into the directory service:
 * const info = makePathInfo({
 *   storePath: StorePath.parse("00bgd045z0d4icpbc2yyz4gx48ak44la-empty"),
 *   node: { case: "directory", value: directoryNodeFor(new Uint8Array(), makeDirectory({})) },
 *   narSize: 96,
 *   narSha256: new Uint8Array(32),
 * });
 * await assert.rejects(pathInfos.put(info), PreconditionError);
 * ```
 */
export class PreconditionError extends Error {
  /** Creates the error with a message that names the store path and what is in the way. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PreconditionError";
  }
}

/**
 * A backend failed: I/O, database, corrupt data, an inconsistent store. The gRPC server answers
 * it with INTERNAL.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { StorageError } from "@nixcas/nixcas";
 * import { MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { directoryNodeFor, makeDirectory } from "@nixcas/nixcas/castore";
 * const directories = new MemoryDirectoryService();
 * // A parent whose child was never stored: the closure is incomplete.
 * const child = makeDirectory({});
 * const parent = makeDirectory({
 *   directories: [directoryNodeFor(new TextEncoder().encode("child"), child)],
 * });
 * const root = await directories.put(parent);
 * await assert.rejects(Array.fromAsync(directories.getRecursive(root)), StorageError);
 * ```
 */
export class StorageError extends Error {
  /** Creates the error with a message that names the backend and the object. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StorageError";
  }
}

/**
 * Stored or received bytes do not match their BLAKE3 digest: a corrupt chunk or blob. Nothing of
 * the bad chunk reaches the caller. A subclass of {@linkcode StorageError}; the gRPC server
 * answers it with DATA_LOSS, FUSE with EIO.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CorruptDataError, StorageError } from "@nixcas/nixcas";
 * const e = new CorruptDataError("b3:AAAA", "blob b3:AAAA is corrupt: its bytes hash to b3:BBBB");
 * assert.ok(e instanceof StorageError);
 * assert.equal(e.digest, "b3:AAAA");
 * ```
 */
export class CorruptDataError extends StorageError {
  /** The digest the bytes should have had (`b3:` base64 form). */
  readonly digest: string;
  /** Creates the error for the chunk or blob `digest`; the message names it. */
  constructor(digest: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CorruptDataError";
    this.digest = digest;
  }
}

/**
 * A remote service could not be reached or the connection was lost. Worth retrying later, unlike
 * the other errors.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { UnavailableError } from "@nixcas/nixcas";
 * import { openBlobService } from "@nixcas/nixcas/backends";
 * import { blake3 } from "@nixcas/nixcas/castore";
 * const dir = await Deno.makeTempDir();
 * // No daemon listens on this socket.
 * const blobs = await openBlobService(`grpc+unix://${dir}/nixcas.sock`);
 * await assert.rejects(blobs.has(blake3(new Uint8Array())), UnavailableError);
 * await blobs.close();
 * await Deno.remove(dir);
 * ```
 */
export class UnavailableError extends Error {
  /** Creates the error with a message that names the address. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UnavailableError";
  }
}

/**
 * Shortens user input quoted in an error message: text longer than `max` characters becomes its
 * first `max` (never half a surrogate pair), an ellipsis and its length, so that a huge argument
 * cannot flood the message that rejects it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { clip } from "./errors.ts";
 * assert.equal(clip("hello"), "hello");
 * assert.equal(clip("a".repeat(1000), 5), "aaaaa… [5 of 1000 characters]");
 * ```
 */
export function clip(text: string, max = 200): string {
  if (text.length <= max) return text;
  let end = max;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${text.slice(0, end)}… [${end} of ${text.length} characters]`;
}
