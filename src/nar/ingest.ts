/**
 * Ingesting a NAR stream into castore: a strict, streaming parser that stores file contents as
 * blobs and directories leaves first while it reads, and computes the NAR's size and SHA-256 in
 * the same pass. Memory does not grow with the NAR: file contents go through a few 1 MiB buffers
 * into blob writers, and only the open directories are held.
 *
 * Strict as Nix's and tvix's parsers: only the one canonical encoding of a tree is accepted (the
 * one {@linkcode NarWriter} writes), so a NAR that is accepted renders back byte for byte.
 *
 * @module
 */
import { quiet } from "../base/async.ts";
import { compareBytes, displayName, toHex } from "../base/bytes.ts";
import { clip, InvalidRequestError } from "../base/errors.ts";
import { type BlobService, type BlobWriter, CHUNK_SIZE } from "../castore/blob_service.ts";
import { putSmallBlob } from "../castore/blob_util.ts";
import {
  type AnyNode,
  type FileNode,
  isValidName,
  MAX_NODE_NAME_LEN,
  MAX_SYMLINK_TARGET_LEN,
  type SymlinkNode,
} from "../castore/directory.ts";
import type { DirectoryService } from "../castore/directory_service.ts";
import { DirectoryFrames } from "../castore/import/frames.ts";
import { createSha256Stream, type Sha256Stream } from "../hash/sha256.ts";
import { returnHashBuffer, takeHashBuffer } from "../hash/blake3.ts";
import { enableNativeBlake3 } from "../hash/blake3_native.ts";
import type { NarCalculation } from "./hash.ts";

/**
 * Which rule a NAR broke ({@linkcode NarParseError.kind}):
 *
 * - `Token`: not the token the format has at this place (a bad magic, an unknown node type, a
 *   field out of order, a missing `)`, a non-empty `executable` marker);
 * - `Truncated`: the input ended inside the NAR;
 * - `Padding`: a padding byte after a string or file contents is not zero;
 * - `Length`: a string or file longer than the rest of the input (by `expectedNarSize`), than
 *   its field allows (names 255 bytes, targets 4095), or than castore stores (files < 4 GiB);
 * - `Name`: an entry name that is empty, `.`, `..`, or holds `/` or NUL;
 * - `Order`: an entry name not after the one before it, byte-wise;
 * - `Duplicate`: an entry name equal to the one before it;
 * - `Target`: an empty symlink target, or one with a NUL byte;
 * - `Depth`: directories nested deeper than {@linkcode MAX_NAR_DEPTH};
 * - `TrailingData`: bytes after the root node;
 * - `SizeMismatch`, `HashMismatch`: a well-formed NAR, but not the one `expectedNarSize` or
 *   `expectedNarSha256` described.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type NarErrorKind, NarParseError } from "@nixcas/nixcas/nar";
 * const e = new NarParseError("Truncated", 24, "the input ended");
 * const kind: NarErrorKind = e.kind;
 * assert.equal(kind, "Truncated");
 * ```
 */
export type NarErrorKind =
  | "Token"
  | "Truncated"
  | "Padding"
  | "Length"
  | "Name"
  | "Order"
  | "Duplicate"
  | "Target"
  | "Depth"
  | "TrailingData"
  | "SizeMismatch"
  | "HashMismatch";

/**
 * A NAR that {@linkcode ingestNar} refuses: which rule it broke and the byte offset where it
 * did, both also in the message. An {@linkcode InvalidRequestError}: the input is at fault.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidRequestError } from "@nixcas/nixcas";
 * import { NarParseError } from "@nixcas/nixcas/nar";
 * const e = new NarParseError("Padding", 37, "padding byte is 0x01, not zero");
 * assert.ok(e instanceof InvalidRequestError);
 * assert.equal(e.offset, 37);
 * assert.equal(e.message, "invalid NAR at byte 37: padding byte is 0x01, not zero");
 * ```
 */
export class NarParseError extends InvalidRequestError {
  /** The rule that was broken. */
  readonly kind: NarErrorKind;
  /** Offset in the NAR of the first byte at fault (the input's length when it was cut short). */
  readonly offset: number;

  /** Creates the error; the message is `invalid NAR at byte OFFSET: DETAIL`. */
  constructor(kind: NarErrorKind, offset: number, detail: string) {
    super(`invalid NAR at byte ${offset}: ${detail}`);
    this.name = "NarParseError";
    this.kind = kind;
    this.offset = offset;
  }
}

/**
 * Most directories {@linkcode ingestNar} accepts nested in one another, the root included (more
 * than any path `open(2)` can name, whose limit is 4096 bytes), so that memory stays bounded
 * however a NAR is crafted.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MAX_NAR_DEPTH } from "@nixcas/nixcas/nar";
 * assert.equal(MAX_NAR_DEPTH, 4096);
 * ```
 */
export const MAX_NAR_DEPTH = 4096;

/**
 * Options of {@linkcode ingestNar}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import {
 *   ingestNar,
 *   type NarIngestOptions,
 *   NarParseError,
 *   NarWriter,
 * } from "@nixcas/nixcas/nar";
 * const parts: Uint8Array[] = [];
 * const w = new NarWriter((b) => parts.push(b));
 * w.file(false, new TextEncoder().encode("Hello, world!\n"));
 * w.finish();
 * const options: NarIngestOptions = {
 *   name: new TextEncoder().encode("hello.txt"),
 *   expectedNarSize: 120, // it is 128
 * };
 * const blobs = new MemoryBlobService();
 * await assert.rejects(
 *   ingestNar(ReadableStream.from(parts), blobs, new MemoryDirectoryService(), options),
 *   (e) => e instanceof NarParseError && e.kind === "SizeMismatch",
 * );
 * ```
 */
export interface NarIngestOptions {
  /**
   * The NAR's size, when known (from a narinfo or PathInfo): a longer input fails as soon as it
   * passes this size, a string or file that would pass it fails at its length, and a shorter
   * NAR fails at its end.
   */
  expectedNarSize?: number | bigint;
  /** The NAR's SHA-256 (32 bytes), when known: a NAR that hashes otherwise fails at its end. */
  expectedNarSha256?: Uint8Array;
  /** Name of the returned root node (default empty: the caller names it, e.g. a store path). */
  name?: Uint8Array;
  /** Stops the ingest: it fails with the signal's reason, aborting its uploads. */
  signal?: AbortSignal;
}

/**
 * A source of bytes read on demand into the caller's buffer, as Deno's files, stdin and
 * connections are: `read` fills some of `p` and returns how many bytes, or null at the end.
 * {@linkcode ingestNar} reads such a source into buffers of its own, and big file contents
 * straight into their destination, which saves a copy and an allocation per chunk.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { NarReader } from "@nixcas/nixcas/nar";
 * const data = new TextEncoder().encode("abc");
 * let at = 0;
 * const reader: NarReader = {
 *   read(p) {
 *     if (at === data.length) return Promise.resolve(null);
 *     const n = Math.min(p.length, data.length - at);
 *     p.set(data.subarray(at, at + n));
 *     at += n;
 *     return Promise.resolve(n);
 *   },
 * };
 * const buf = new Uint8Array(2);
 * assert.equal(await reader.read(buf), 2);
 * assert.equal(await reader.read(buf), 1);
 * assert.equal(await reader.read(buf), null);
 * ```
 */
export interface NarReader {
  /** Reads up to `p.length` bytes into `p`; resolves with their number, null at the end. */
  read(p: Uint8Array): Promise<number | null>;
}

/**
 * A stream of small chunks (an HTTP body comes in 64 KiB) as a {@linkcode NarReader} that fills
 * each read from as many chunks as fit: {@linkcode ingestNar} then reads whole 1 MiB pieces, one
 * thread pool call each for the NAR's hash instead of sixteen, at the cost of one copy. A PUT of
 * a 256 MiB NAR to `nixcas serve` took 0.45–0.57 s read so, 0.85–0.9 s chunk by chunk.
 * `close()` cancels the source if it was not read to its end.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { gatheringReader } from "@nixcas/nixcas/nar";
 * const r = gatheringReader(ReadableStream.from([new Uint8Array([1, 2]), new Uint8Array([3])]));
 * const p = new Uint8Array(8);
 * assert.equal(await r.read(p), 3); // both chunks in one read
 * assert.deepEqual(p.subarray(0, 3), new Uint8Array([1, 2, 3]));
 * assert.equal(await r.read(p), null);
 * await r.close();
 * ```
 */
export function gatheringReader(
  source: AsyncIterable<Uint8Array>,
): NarReader & { close(): Promise<void> } {
  const it = source[Symbol.asyncIterator]();
  let rest: Uint8Array | null = null;
  let done = false;
  return {
    async read(p) {
      let n = 0;
      while (n < p.length) {
        if (!rest) {
          if (done) break;
          const r = await it.next();
          if (r.done) {
            done = true;
            break;
          }
          if (r.value.length === 0) continue;
          rest = r.value;
        }
        const k = Math.min(rest.length, p.length - n);
        p.set(rest.subarray(0, k), n);
        n += k;
        rest = k === rest.length ? null : rest.subarray(k);
      }
      return n === 0 ? null : n;
    },
    async close() {
      if (!done) {
        done = true;
        await it.return?.()?.catch(() => {});
      }
    },
  };
}

/**
 * What {@linkcode ingestNar} reads a NAR from: a stream or async iterable of chunks (each owned
 * by the ingest once yielded: it may be hashed where it lies, so it must not change), or a
 * {@linkcode NarReader} such as `Deno.stdin` or an open `Deno.FsFile` (the fastest).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { NarSource } from "@nixcas/nixcas/nar";
 * const sources: NarSource[] = [
 *   ReadableStream.from([new Uint8Array(8)]),
 *   (async function* () {
 *     yield new Uint8Array(8);
 *   })(),
 *   Deno.stdin,
 * ];
 * assert.equal(sources.length, 3);
 * ```
 */
export type NarSource = ReadableStream<Uint8Array> | AsyncIterable<Uint8Array> | NarReader;

/**
 * What {@linkcode ingestNar} returns: the root node and the NAR's size and SHA-256.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { ingestNar, type NarIngestResult, NarWriter } from "@nixcas/nixcas/nar";
 * const parts: Uint8Array[] = [];
 * const w = new NarWriter((b) => parts.push(b));
 * w.symlink(new TextEncoder().encode("/etc/hosts"));
 * w.finish();
 * const result: NarIngestResult = await ingestNar(
 *   ReadableStream.from(parts),
 *   new MemoryBlobService(),
 *   new MemoryDirectoryService(),
 * );
 * assert.equal(result.node.case, "symlink");
 * assert.equal(result.narSize, 128);
 * ```
 */
export interface NarIngestResult extends NarCalculation {
  /** The root node, named by {@linkcode NarIngestOptions.name}. */
  node: AnyNode;
}

/**
 * Parses the NAR read from `source` and stores what it holds: file contents in `blobs`,
 * directories in `directories` (leaves first, through one putter, as each directory ends; each
 * distinct directory once). Returns the root node with the NAR's size and SHA-256, computed in
 * the same pass.
 *
 * Every chunk a stream or iterable `source` yields is owned by the ingest: it may be hashed where
 * it lies on another thread, so the source must not change it afterwards (ReadableStreams never
 * do). A {@linkcode NarReader} (`Deno.stdin`, a `Deno.FsFile`) is read into the ingest's own
 * buffers and is the faster source; it is not closed here.
 *
 * The parser accepts exactly the NARs Nix writes and refuses anything else with a
 * {@linkcode NarParseError} naming the rule ({@linkcode NarErrorKind}) and the byte offset: a
 * wrong magic or token, a cut-short input, non-zero padding, bad or unsorted entry names, bad
 * symlink targets, bytes after the root, and a size or hash other than the expected ones.
 *
 * Nothing here writes a PathInfo: the caller registers the result, and only if this resolved.
 * On failure every open blob writer is aborted and the directory putter is left unclosed, so no
 * directory of a refused NAR is committed (with the local backends); blobs stored before the
 * failure stay, as content-addressed data that nothing refers to, harmless and shared by whatever
 * stores the same bytes later.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import {
 *   calculateNar,
 *   ingestNar,
 *   NarParseError,
 *   NarWriter,
 *   renderNar,
 * } from "@nixcas/nixcas/nar";
 * const enc = new TextEncoder();
 * const parts: Uint8Array[] = [];
 * const w = new NarWriter((b) => parts.push(b));
 * w.directoryStart();
 * w.entry(enc.encode("bin"));
 * w.directoryStart();
 * w.entry(enc.encode("hello"));
 * w.file(true, enc.encode("#!/bin/sh\necho hello\n"));
 * w.directoryEnd();
 * w.entry(enc.encode("share"));
 * w.symlink(enc.encode("/usr/share"));
 * w.directoryEnd();
 * w.finish();
 * const nar = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
 * parts.reduce((at, p) => (nar.set(p, at), at + p.length), 0);
 *
 * const blobs = new MemoryBlobService();
 * const directories = new MemoryDirectoryService();
 * const { node, narSize, narSha256 } = await ingestNar(
 *   ReadableStream.from([nar]),
 *   blobs,
 *   directories,
 * );
 * assert.equal(node.case, "directory");
 * assert.deepEqual({ narSize, narSha256 }, await calculateNar(node, blobs, directories));
 * // The stored tree renders back to the same bytes.
 * const rendered = await Array.fromAsync(renderNar(node, blobs, directories));
 * assert.deepEqual(rendered.flatMap((p) => [...p]), [...nar]);
 *
 * // One byte more than the NAR is refused, with its offset.
 * const longer = new Uint8Array(nar.length + 1);
 * longer.set(nar);
 * await assert.rejects(
 *   ingestNar(ReadableStream.from([longer]), blobs, directories),
 *   (e) => e instanceof NarParseError && e.kind === "TrailingData" && e.offset === nar.length,
 * );
 * ```
 */
export async function ingestNar(
  source: NarSource,
  blobs: BlobService,
  directories: DirectoryService,
  options: NarIngestOptions = {},
): Promise<NarIngestResult> {
  const name = options.name ?? new Uint8Array();
  if (name.length > 0 && !isValidName(name)) {
    throw new InvalidRequestError(`invalid root node name ${clip(displayName(name))}`);
  }
  let expectedSize: number | null = null;
  if (options.expectedNarSize !== undefined) {
    expectedSize = Number(options.expectedNarSize);
    if (!Number.isSafeInteger(expectedSize) || expectedSize < 0) {
      throw new InvalidRequestError(`invalid expected NAR size ${options.expectedNarSize}`);
    }
  }
  const expectedSha = options.expectedNarSha256;
  if (expectedSha && expectedSha.length !== 32) {
    throw new InvalidRequestError(
      `expected NAR SHA-256 has ${expectedSha.length} bytes, a SHA-256 has 32`,
    );
  }
  options.signal?.throwIfAborted();
  const input = new Input(source, expectedSize, options.signal);
  const ingest = new Ingest(input, blobs, directories);
  try {
    const node = await ingest.parse(name);
    const narSize = input.received;
    const narSha256 = await input.sha.digest();
    if (expectedSize !== null && narSize !== expectedSize) {
      throw new NarParseError(
        "SizeMismatch",
        narSize,
        `the NAR ended after ${narSize} bytes, ${expectedSize} expected`,
      );
    }
    if (expectedSha && toHex(expectedSha) !== toHex(narSha256)) {
      throw new NarParseError(
        "HashMismatch",
        narSize,
        `the NAR's SHA-256 is ${toHex(narSha256)}, ${toHex(expectedSha)} expected`,
      );
    }
    await ingest.finish(node);
    return { node, narSize, narSha256 };
  } catch (e) {
    // The first failure of an upload explains more than what it made the parser see, but not
    // more than a fault in the NAR; aborting the uploads may add failures of its own.
    const first = ingest.failure;
    await ingest.abandon();
    throw e instanceof NarParseError || !first ? e : first.error;
  }
}

// --- the NAR's tokens, encoded: an u64 length, the bytes, zero padding to 8 ---

const te = new TextEncoder();

function token(s: string): Uint8Array {
  const b = te.encode(s);
  const out = new Uint8Array(8 + pad8(b.length));
  out[0] = b.length;
  out.set(b, 8);
  return out;
}

/** `n` rounded up to a multiple of 8 (arithmetic: sizes may pass 2^31). */
function pad8(n: number): number {
  return n + ((8 - (n % 8)) % 8);
}

/** A token the parser expects, with the text its errors show. */
interface Tok {
  bytes: Uint8Array;
  text: string;
}

const tok = (s: string): Tok => ({ bytes: token(s), text: JSON.stringify(s) });

const MAGIC = tok("nix-archive-1");
const OPEN = tok("(");
const CLOSE = tok(")");
const TYPE = tok("type");
const REGULAR = tok("regular");
const SYMLINK = tok("symlink");
const DIRECTORY = tok("directory");
const EXECUTABLE = tok("executable");
const EMPTY = tok("");
const CONTENTS = tok("contents");
const TARGET = tok("target");
const ENTRY = tok("entry");
const NAME = tok("name");
const NODE = tok("node");

const NODE_TYPES = [REGULAR, SYMLINK, DIRECTORY];
const FILE_FIELDS = [EXECUTABLE, CONTENTS];
const DIRECTORY_FIELDS = [ENTRY, CLOSE];

// Most bytes one parsing step reads between two waits for input: an entry's header with the
// longest name, a node's header and a symlink with the longest target (≈4.5 KiB).
const STEP_MAX = 8 << 10;
// A token that runs into the next chunk is copied together with this much of that chunk (or all
// of it when it is smaller than BRIDGE_WHOLE): enough for many steps before the next copy.
const BRIDGE = 64 << 10;
const BRIDGE_WHOLE = 256 << 10;
// SHA-256 input waiting for its thread past which the parser waits for it.
const HASH_BACKLOG_MAX = 16 << 20;
// castore's FileNode.size is a uint32.
const MAX_FILE_SIZE = 0xffff_ffff;
// Files up to this size are copied into a buffer of their own and stored as small blobs.
const SMALL_FILE_MAX = CHUNK_SIZE;
// Buffers of CHUNK_SIZE for big files' contents in flight (being hashed or written).
const BIG_FILE_BUFFERS = 4;
// Small blobs handed over and not stored yet past which the parser waits.
const UNSTORED_BYTES_MAX = 16 << 20;
const UNSTORED_FILES_MAX = 2048;
// Big files being closed (their last writes, the digest, a sync) at once.
const CLOSING_MAX = 8;
// Files from which an ingest loads native BLAKE3 (as `nar` does for NARs this big).
const NATIVE_BLAKE3_FROM = 16 << 20;

// Reader mode: parse buffers (each reused once its bytes are hashed), and the least of a file's
// contents read straight into its destination rather than through them.
const READER_BUFFERS = 4;
const READER_BUFFER_SIZE = 1 << 20;
const DIRECT_READ_MIN = 64 << 10;

const NOTHING = new Uint8Array(0);
const RESOLVED = Promise.resolve();

/**
 * The input, read through one contiguous buffer (`buf` from `pos` to `end`), every byte hashed
 * and counted as it arrives. Two kinds of source:
 *
 * - chunks (a stream or iterable): each is hashed where it lies and parsed in place; a token
 *   that runs into the next chunk is bridged by a copy;
 * - a reader (`read(p)`, as Deno's files and stdin): bytes are read into buffers of our own,
 *   reused once hashed, and big file contents straight into their destination (no copy at all).
 */
class Input {
  #it: AsyncIterator<Uint8Array> | null;
  #reader: NarReader | null;
  #expected: number | null;
  #signal: AbortSignal | undefined;
  /** The bytes being parsed: `buf[pos..end)` are not parsed yet. */
  buf: Uint8Array = NOTHING;
  pos = 0;
  end = 0;
  view: DataView = new DataView(NOTHING.buffer);
  /** Offset in the NAR of `buf[0]`. */
  #base = 0;
  /** The rest of a chunk that was partly copied into a bridge. */
  #pushback: Uint8Array | null = null;
  /** Reader mode: parse buffers, and when each one's bytes are all hashed. */
  #stores: { bytes: Uint8Array; hashed: Promise<void> }[] = [];
  #store = -1;
  /** True once the source has ended. */
  eof = false;
  /** Bytes received from the source (all of them hashed). */
  received = 0;
  readonly sha: Sha256Stream = createSha256Stream();
  #lastHash: Promise<void> = Promise.resolve();
  #pulling = false;
  #reading: Promise<void> | null = null;

  constructor(source: NarSource, expected: number | null, signal?: AbortSignal) {
    if (Symbol.asyncIterator in source) {
      this.#it = source[Symbol.asyncIterator]();
      this.#reader = null;
    } else {
      this.#it = null;
      this.#reader = source;
    }
    this.#expected = expected;
    this.#signal = signal;
  }

  /** Offset in the NAR of the next byte. */
  get offset(): number {
    return this.#base + this.pos;
  }

  /** Bytes buffered and not parsed yet. */
  get avail(): number {
    return this.end - this.pos;
  }

  /** Input bytes after the next one not parsed yet, when the expected size is known. */
  remaining(): number {
    return this.#expected === null ? Infinity : this.#expected - this.offset;
  }

  /**
   * Makes at least `n` (≤ {@linkcode STEP_MAX}) bytes contiguous in `buf` from `pos`, unless the
   * input ends first.
   */
  async fill(n: number): Promise<void> {
    if (this.#reader) {
      while (this.avail < n && !this.eof) {
        if (this.buf.length - this.end < n - this.avail) await this.#nextStore();
        await this.#readMore();
      }
      return;
    }
    while (this.avail < n) {
      const chunk = await this.#nextChunk();
      if (!chunk) return;
      const left = this.avail;
      if (left === 0) {
        this.#use(chunk, chunk.length);
        continue;
      }
      const take = chunk.length <= BRIDGE_WHOLE ? chunk.length : Math.max(BRIDGE, n);
      const bridge = new Uint8Array(left + Math.min(take, chunk.length));
      bridge.set(this.buf.subarray(this.pos, this.end));
      bridge.set(take >= chunk.length ? chunk : chunk.subarray(0, take), left);
      if (take < chunk.length) this.#pushback = chunk.subarray(take);
      this.#use(bridge, bridge.length);
    }
  }

  /** Makes some bytes available (when none are); false when the input ended. */
  async more(): Promise<boolean> {
    if (this.avail > 0) return true;
    if (this.#reader) {
      if (this.eof) return false;
      if (this.end === this.buf.length) await this.#nextStore();
      await this.#readMore();
      return this.avail > 0;
    }
    const chunk = await this.#nextChunk();
    if (!chunk) return false;
    this.#use(chunk, chunk.length);
    return true;
  }

  /**
   * Copies the next `dst.length` bytes into `dst`, or null when the input ends first. From a
   * reader, big parts are read into `dst` itself and hashed there: `dst` must not change until
   * `hashed` resolves.
   */
  async readInto(dst: Uint8Array): Promise<{ hashed: Promise<void> } | null> {
    let got = 0;
    let hashed: Promise<void> = RESOLVED;
    while (got < dst.length) {
      if (this.avail === 0) {
        if (this.#reader && dst.length - got >= DIRECT_READ_MIN) {
          if (this.eof) return null;
          const n = await this.#read(dst.subarray(got));
          if (n === 0) return null;
          this.#base += n; // consumed without passing through `buf`
          hashed = this.#lastHash;
          got += n;
          continue;
        }
        if (!(await this.more())) return null;
      }
      const n = Math.min(this.avail, dst.length - got);
      dst.set(this.buf.subarray(this.pos, this.pos + n), got);
      this.pos += n;
      got += n;
    }
    return { hashed };
  }

  /** Switches to `bytes[0..end)`, whose first byte is the next one to parse. */
  #use(bytes: Uint8Array, end: number): void {
    this.#base += this.pos;
    this.buf = bytes;
    this.pos = 0;
    this.end = end;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Reader mode: moves what is left to parse into the next parse buffer (once it is hashed). */
  async #nextStore(): Promise<void> {
    if (this.#stores.length < READER_BUFFERS) {
      this.#stores.push({ bytes: new Uint8Array(READER_BUFFER_SIZE), hashed: RESOLVED });
    }
    this.#store = (this.#store + 1) % this.#stores.length;
    const next = this.#stores[this.#store];
    await next.hashed;
    const left = this.avail;
    next.bytes.set(this.buf.subarray(this.pos, this.end));
    this.#use(next.bytes, left);
  }

  /** Reader mode: reads once into the free end of `buf`. */
  async #readMore(): Promise<void> {
    const n = await this.#read(this.buf.subarray(this.end));
    this.end += n;
    if (n > 0) this.#stores[this.#store].hashed = this.#lastHash;
  }

  /** Reader mode: one read into `dst`, hashed there; 0 at the end of the input. */
  async #read(dst: Uint8Array): Promise<number> {
    this.#signal?.throwIfAborted();
    if (this.sha.pendingBytes > HASH_BACKLOG_MAX) await this.#lastHash;
    this.#pulling = true;
    const reading = this.#reader!.read(dst);
    // An abort leaves the read running: `dst` is written to after we gave up on it.
    this.#reading = reading.then(() => {}, () => {});
    const n = await this.#abortable(reading);
    this.#pulling = false;
    this.#reading = null;
    if (n !== null && (!Number.isSafeInteger(n) || n < 0 || n > dst.length)) {
      throw new InvalidRequestError(`NAR reader returned ${n} for a read of ${dst.length} bytes`);
    }
    if (n === null || n === 0) {
      this.eof = true; // (0 too: a reader that made no progress would make none again)
      return 0;
    }
    this.#arrived(dst.subarray(0, n));
    return n;
  }

  /** Counts and hashes `bytes`, which just arrived (they stay unchanged until hashed). */
  #arrived(bytes: Uint8Array): void {
    this.received += bytes.length;
    if (this.#expected !== null && this.received > this.#expected) {
      throw new NarParseError(
        "SizeMismatch",
        this.#expected,
        `the input is longer than the ${this.#expected} bytes expected`,
      );
    }
    this.#lastHash = this.sha.updateInPlace(bytes);
    this.#lastHash.catch(() => {}); // a failure surfaces in digest()
  }

  /** Chunk mode: the next non-empty chunk (what a bridge left of one first), or null. */
  async #nextChunk(): Promise<Uint8Array | null> {
    if (this.#pushback) {
      const rest = this.#pushback;
      this.#pushback = null;
      return rest;
    }
    while (!this.eof) {
      this.#signal?.throwIfAborted();
      if (this.sha.pendingBytes > HASH_BACKLOG_MAX) await this.#lastHash;
      this.#pulling = true;
      const r = await this.#abortable(this.#it!.next());
      this.#pulling = false;
      if (r.done) {
        this.eof = true;
        break;
      }
      const chunk = r.value;
      if (!(chunk instanceof Uint8Array)) {
        throw new InvalidRequestError(`NAR source yielded ${typeof chunk}, not a Uint8Array`);
      }
      if (chunk.length === 0) continue;
      this.#arrived(chunk);
      return chunk;
    }
    return null;
  }

  /** `p`, or the signal's reason as soon as it is aborted. */
  #abortable<T>(p: Promise<T>): Promise<T> {
    const signal = this.#signal;
    if (!signal) return p;
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    });
  }

  /**
   * After a failure: cancels a stream source (a reader is the caller's to close), waiting for it
   * unless a pull is pending; then waits until nothing hashes our buffers any more. Returns false
   * when a read into one of them is still running (after an abort): they must not be reused.
   */
  async cancel(): Promise<boolean> {
    const ret = this.#it?.return?.();
    if (ret && !this.#pulling) await Promise.resolve(ret).catch(() => {});
    else if (ret) Promise.resolve(ret).catch(() => {});
    await this.#lastHash.catch(() => {});
    return this.#reading === null;
  }
}

/** One directory being parsed: its name and its last entry's. */
interface Dir {
  name: Uint8Array;
  prev: Uint8Array | null;
}

/** One ingest: the parser and the uploads it starts. */
class Ingest {
  #in: Input;
  #blobs: BlobService;
  #frames: DirectoryFrames;
  /** The first failure of an upload or a directory put. */
  failure: { error: unknown } | null = null;
  readonly #fail = (error: unknown): void => {
    this.failure ??= { error };
  };
  // Big files' buffers: free, and how many were taken in all.
  #free: Uint8Array[] = [];
  #taken: Uint8Array[] = [];
  #wake: (() => void) | null = null;
  // Writes and closes in flight; writers not closed yet.
  #writes = new Set<Promise<void>>();
  #closing = new Set<Promise<unknown>>();
  #open = new Set<BlobWriter>();
  // Small blobs handed over and not stored yet.
  #storing = new Set<Promise<void>>();
  #unstored = { bytes: 0, files: 0 };

  constructor(input: Input, blobs: BlobService, directories: DirectoryService) {
    this.#in = input;
    this.#blobs = blobs;
    this.#frames = new DirectoryFrames(directories, this.#fail);
  }

  /** Parses the whole NAR, starting its uploads; returns the root node once they are done. */
  async parse(rootName: Uint8Array): Promise<AnyNode> {
    const input = this.#in;
    const frames = this.#frames;
    await input.fill(STEP_MAX);
    this.#expect(MAGIC);
    const dirs: Dir[] = [];
    let name = rootName;
    node: for (;;) {
      this.#check();
      if (input.avail < STEP_MAX && !input.eof) await input.fill(STEP_MAX);
      const depth = dirs.length;
      this.#expect(OPEN);
      this.#expect(TYPE);
      const type = this.#choose(NODE_TYPES, "a node type");
      if (type === REGULAR) {
        await this.#file(name, depth);
      } else if (type === SYMLINK) {
        this.#expect(TARGET);
        const at = input.offset;
        const target = this.#string(MAX_SYMLINK_TARGET_LEN, "symlink target").slice();
        if (target.length === 0) throw new NarParseError("Target", at, "empty symlink target");
        if (target.includes(0)) {
          throw new NarParseError(
            "Target",
            at + 8 + target.indexOf(0),
            `symlink target ${clip(displayName(target))} contains a NUL byte`,
          );
        }
        this.#expect(CLOSE);
        const node: SymlinkNode = { $typeName: "tvix.castore.v1.SymlinkNode", name, target };
        frames.symlink(depth, node);
      } else {
        if (depth >= MAX_NAR_DEPTH) {
          throw new NarParseError(
            "Depth",
            input.offset,
            `directories nested deeper than ${MAX_NAR_DEPTH} levels`,
          );
        }
        dirs.push({ name, prev: null });
        frames.enter();
      }
      // The node has ended (or a directory begun): close entries and directories up to the next
      // entry, or to the end of the root.
      let entryOpen = type !== DIRECTORY && depth > 0;
      for (;;) {
        if (dirs.length === 0) break node;
        if (input.avail < STEP_MAX && !input.eof) await input.fill(STEP_MAX);
        if (entryOpen) this.#expect(CLOSE);
        const dir = dirs[dirs.length - 1];
        if (this.#choose(DIRECTORY_FIELDS, '"entry" or ")"') === CLOSE) {
          dirs.pop();
          frames.leave(dir.name);
          entryOpen = dirs.length > 0;
          continue;
        }
        this.#expect(OPEN);
        this.#expect(NAME);
        name = this.#entryName(dir);
        this.#expect(NODE);
        continue node;
      }
    }
    // The root has ended: nothing may follow.
    if (input.avail === 0) await input.more();
    if (input.avail > 0) {
      throw new NarParseError(
        "TrailingData",
        input.offset,
        "bytes follow the end of the root node",
      );
    }
    this.#check();
    return await frames.root();
  }

  /** After the NAR checked out: waits for every upload and closes the directory putter. */
  async finish(root: AnyNode): Promise<void> {
    const frames = this.#frames;
    await Promise.all(this.#closing);
    await frames.puts();
    await Promise.all(this.#storing);
    this.#check();
    await frames.close(root);
    this.#releaseBuffers();
  }

  /** After a failure: stops the source, lets uploads settle and aborts the writers left open. */
  async abandon(): Promise<void> {
    const idle = await this.#in.cancel();
    await Promise.allSettled([...this.#writes]);
    await Promise.allSettled([...this.#open].map((w) => w.abort()));
    await Promise.allSettled([...this.#closing, ...this.#storing]);
    // A read still running may write into a buffer: then none goes back to BLAKE3's pool (which
    // hands out ordinary buffers once it is empty).
    if (idle) this.#releaseBuffers();
  }

  /** Throws the first failure of an upload or put, if any. */
  #check(): void {
    if (this.failure) throw this.failure.error;
  }

  // --- tokens, parsed from `buf`: the caller made a step's worth of bytes available ---

  /** Fails with Truncated when fewer than `n` bytes are left (the input ended). */
  #need(n: number, what: string): void {
    if (this.#in.avail < n) this.#truncated(what);
  }

  #truncated(what: string): never {
    const end = this.#in.received;
    throw new NarParseError("Truncated", end, `the input ended inside ${what} (${end} bytes)`);
  }

  /** The u64 at `pos` as a number (values past 2^53 come out approximate, and too large). */
  #u64(what: string): number {
    const input = this.#in;
    this.#need(8, what);
    const lo = input.view.getUint32(input.pos, true);
    const hi = input.view.getUint32(input.pos + 4, true);
    input.pos += 8;
    return hi * 0x1_0000_0000 + lo;
  }

  /** Reads the token `t` or fails. */
  #expect(t: Tok): void {
    const input = this.#in;
    const b = t.bytes;
    const buf = input.buf;
    const p = input.pos;
    if (input.avail >= b.length) {
      let i = 0;
      while (i < b.length && buf[p + i] === b[i]) i++;
      if (i === b.length) {
        input.pos += b.length;
        return;
      }
    }
    this.#mismatch([t], t.text);
  }

  /** Reads one of the tokens `choices` and returns it, or fails naming `what` was expected. */
  #choose(choices: Tok[], what: string): Tok {
    const input = this.#in;
    const buf = input.buf;
    const p = input.pos;
    for (const t of choices) {
      const b = t.bytes;
      if (input.avail < b.length || buf[p] !== b[0]) continue;
      let i = 1;
      while (i < b.length && buf[p + i] === b[i]) i++;
      if (i === b.length) {
        input.pos += b.length;
        return t;
      }
    }
    this.#mismatch(choices, what);
  }

  /** Fails at the token at `pos`, which is none of `choices`: says what it is instead. */
  #mismatch(choices: Tok[], what: string): never {
    const input = this.#in;
    const at = input.offset;
    const avail = input.avail;
    const buf = input.buf.subarray(input.pos, input.end);
    // A prefix of an expected token that the input cut short.
    for (const t of choices) {
      const n = Math.min(avail, t.bytes.length);
      if (avail < t.bytes.length && t.bytes.subarray(0, n).every((x, i) => x === buf[i])) {
        this.#truncated(what);
      }
    }
    this.#need(8, what);
    const len = this.#u64(what);
    input.pos -= 8;
    if (len > 64) {
      throw new NarParseError("Token", at, `expected ${what}, found a string of ${len} bytes`);
    }
    this.#need(8 + pad8(len), what);
    const found = buf.subarray(8, 8 + len);
    // The right bytes with a bad padding byte after them.
    for (const t of choices) {
      if (t.bytes[0] === len && found.every((x, i) => x === t.bytes[8 + i])) {
        const bad = buf.subarray(8 + len, 8 + pad8(len)).findIndex((x) => x !== 0);
        throw new NarParseError(
          "Padding",
          at + 8 + len + bad,
          `padding byte after ${t.text} is 0x${buf[8 + len + bad].toString(16)}, not zero`,
        );
      }
    }
    throw new NarParseError("Token", at, `expected ${what}, found ${clip(displayName(found))}`);
  }

  /** A string of at most `max` bytes, checked for zero padding (a view into `buf`). */
  #string(max: number, what: string): Uint8Array {
    const input = this.#in;
    const at = input.offset;
    const len = this.#u64(what);
    if (len > max) {
      throw new NarParseError("Length", at, `${what} of ${len} bytes, at most ${max} allowed`);
    }
    this.#checkRemaining(len, at, what);
    const padded = pad8(len);
    this.#need(padded, what);
    const buf = input.buf;
    const p = input.pos;
    for (let i = len; i < padded; i++) {
      if (buf[p + i] !== 0) {
        throw new NarParseError(
          "Padding",
          input.offset + i,
          `padding byte after the ${what} is 0x${buf[p + i].toString(16)}, not zero`,
        );
      }
    }
    input.pos += padded;
    return buf.subarray(p, p + len);
  }

  /** Fails when `len` bytes (and padding) cannot fit in what is left of the expected size. */
  #checkRemaining(len: number, at: number, what: string): void {
    const left = this.#in.remaining();
    if (pad8(len) > left) {
      throw new NarParseError(
        "Length",
        at,
        `${what} of ${len} bytes does not fit in the ${left} bytes left of the expected size`,
      );
    }
  }

  /** An entry's name, checked and after the directory's previous one; a copy. */
  #entryName(dir: Dir): Uint8Array {
    const at = this.#in.offset;
    const name = this.#string(MAX_NODE_NAME_LEN, "entry name").slice();
    if (!isValidName(name)) {
      throw new NarParseError("Name", at, `invalid entry name ${clip(displayName(name))}`);
    }
    const prev = dir.prev;
    if (prev !== null) {
      const order = compareBytes(prev, name);
      if (order === 0) {
        throw new NarParseError("Duplicate", at, `entry name ${displayName(name)} appears twice`);
      }
      if (order > 0) {
        throw new NarParseError(
          "Order",
          at,
          `entry ${displayName(name)} comes after ${displayName(prev)}, not in byte order`,
        );
      }
    }
    dir.prev = name;
    return name;
  }

  // --- files ---

  /** A regular file, after its `type` `regular`: contents, padding and `)`. */
  async #file(name: Uint8Array, depth: number): Promise<void> {
    const input = this.#in;
    let executable = false;
    if (this.#choose(FILE_FIELDS, '"executable" or "contents"') === EXECUTABLE) {
      executable = true;
      this.#expect(EMPTY);
      this.#expect(CONTENTS);
    }
    const at = input.offset;
    const size = this.#u64("a file size");
    if (size > MAX_FILE_SIZE) {
      throw new NarParseError(
        "Length",
        at,
        `file of ${size} bytes, castore stores at most ${MAX_FILE_SIZE}`,
      );
    }
    this.#checkRemaining(size, at, "file");
    this.#frames.file(
      depth,
      size <= SMALL_FILE_MAX
        ? await this.#smallFile(name, size, executable)
        : (await this.#bigFile(name, size, executable)).node,
    );
    // Padding and `)`.
    if (input.avail < 24 && !input.eof) await input.fill(24);
    const padded = pad8(size) - size;
    this.#need(padded, "file padding");
    for (let i = 0; i < padded; i++) {
      const b = input.buf[input.pos + i];
      if (b !== 0) {
        throw new NarParseError(
          "Padding",
          input.offset + i,
          `padding byte after file contents is 0x${b.toString(16)}, not zero`,
        );
      }
    }
    input.pos += padded;
    this.#expect(CLOSE);
  }

  /** Contents of up to {@linkcode SMALL_FILE_MAX} bytes: one buffer, one small blob. */
  async #smallFile(name: Uint8Array, size: number, executable: boolean): Promise<FileNode> {
    const input = this.#in;
    const data = new Uint8Array(size);
    if (input.avail >= size) {
      data.set(input.buf.subarray(input.pos, input.pos + size));
      input.pos += size;
    } else if (!(await input.readInto(data))) {
      this.#truncated("file contents");
    }
    // (Bytes read into `data` itself may still be hashing: nothing changes them.)
    const { digest, stored } = putSmallBlob(this.#blobs, data);
    const storing = this.#storing;
    if (!storing.has(stored)) {
      storing.add(stored);
      stored.then(() => storing.delete(stored), this.#fail);
    }
    const unstored = this.#unstored;
    unstored.bytes += size;
    unstored.files++;
    const done = () => {
      unstored.bytes -= size;
      unstored.files--;
    };
    stored.then(done, done);
    // Backends batch small blobs: bound what they hold for us.
    while (
      !this.failure && storing.size > 0 &&
      (unstored.bytes > UNSTORED_BYTES_MAX || unstored.files > UNSTORED_FILES_MAX)
    ) {
      await Promise.race(storing).catch(() => {}); // its error reaches `failure`
    }
    return {
      $typeName: "tvix.castore.v1.FileNode",
      name,
      digest: digest.bytes,
      size,
      executable,
    };
  }

  /**
   * Contents over {@linkcode SMALL_FILE_MAX} bytes, streamed into a blob writer in CHUNK_SIZE
   * pieces copied into BLAKE3's own buffers (hashed where they lie, written from there). Returns
   * once every piece is handed over; the node comes when the blob is closed.
   */
  async #bigFile(
    name: Uint8Array,
    size: number,
    executable: boolean,
  ): Promise<{ node: Promise<FileNode> }> {
    const input = this.#in;
    // Native BLAKE3 hashes a big file's pieces ≈2x faster than our WebAssembly, once loaded
    // (≈20 ms on the thread pool, not waited for: pieces before that take WebAssembly).
    if (size >= NATIVE_BLAKE3_FROM) enableNativeBlake3();
    const w = await this.#blobs.openWrite();
    this.#open.add(w);
    const mine = new Set<Promise<void>>();
    for (let off = 0; off < size;) {
      this.#check();
      const buf = await this.#buffer();
      const piece = buf.subarray(0, Math.min(CHUNK_SIZE, size - off));
      const read = await input.readInto(piece);
      // (A buffer read into is not reused after a failure: it may still be hashing.)
      if (!read) this.#truncated("file contents");
      off += piece.length;
      const p = w.write(piece);
      p.catch(this.#fail);
      // The buffer is free again once written, and hashed where it was read into.
      const done = Promise.allSettled([p, read.hashed]).then(() => {
        mine.delete(done);
        this.#writes.delete(done);
        this.#free.push(buf);
        this.#wake?.();
        this.#wake = null;
      });
      mine.add(done);
      this.#writes.add(done);
    }
    const closed = (async (): Promise<FileNode> => {
      await Promise.all(mine);
      this.#check();
      const digest = await w.close();
      this.#open.delete(w);
      return {
        $typeName: "tvix.castore.v1.FileNode",
        name,
        digest: digest.bytes,
        size,
        executable,
      };
    })();
    const closing = this.#closing;
    closing.add(closed);
    closed.then(() => closing.delete(closed), (e) => {
      closing.delete(closed);
      this.#fail(e);
    });
    while (closing.size > CLOSING_MAX) await Promise.race(closing).catch(() => {});
    return { node: quiet(closed) };
  }

  /** A free CHUNK_SIZE buffer for a big file's piece, waiting while all are in flight. */
  async #buffer(): Promise<Uint8Array> {
    for (;;) {
      const free = this.#free.pop();
      if (free) return free;
      if (this.#taken.length < BIG_FILE_BUFFERS) {
        const b = takeHashBuffer();
        this.#taken.push(b);
        return b;
      }
      this.#check();
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }

  /** Gives the buffers back to BLAKE3 (nothing may use them any more). */
  #releaseBuffers(): void {
    for (const b of this.#taken) returnHashBuffer(b);
    this.#taken = [];
    this.#free = [];
  }
}
