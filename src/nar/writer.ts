/**
 * A streaming NAR (Nix ARchive) writer. NAR strings are a little-endian u64 length, the bytes,
 * and zero padding to a multiple of 8; the archive is `nix-archive-1` followed by one node:
 *
 * - `(` `type` `regular` [`executable` ``] `contents` <data> `)`
 * - `(` `type` `symlink` `target` <target> `)`
 * - `(` `type` `directory` { `entry` `(` `name` <n> `node` <node> `)` } `)`
 *
 * Small tokens are gathered in a buffer and handed to the sink in blocks; large file chunks
 * pass straight through, so file contents are never copied or held whole.
 *
 * @module
 */
import { isValidName } from "../castore/directory.ts";
import { compareBytes, displayName } from "../base/bytes.ts";
import { InvalidRequestError } from "../base/errors.ts";
import { concat } from "../base/bytes.ts";

/**
 * Receives the NAR bytes in order. It must not modify the arrays it is given.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type NarSink, NarWriter } from "@nixcas/nixcas/nar";
 * let size = 0;
 * const countBytes: NarSink = (bytes) => {
 *   size += bytes.length;
 * };
 * const nar = new NarWriter(countBytes);
 * nar.symlink(new TextEncoder().encode("/etc/hosts"));
 * nar.finish();
 * assert.equal(size, 128);
 * ```
 */
export type NarSink = (bytes: Uint8Array) => void;

/**
 * Options of {@linkcode NarWriter}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createHash } from "node:crypto";
 * import { NarWriter, type NarWriterOptions } from "@nixcas/nixcas/nar";
 * const sha256 = createHash("sha256");
 * // update() consumes each array before returning, so the buffer may be reused.
 * const options: NarWriterOptions = { reuseBuffer: true };
 * const nar = new NarWriter((bytes) => sha256.update(bytes), options);
 * nar.file(false, new TextEncoder().encode("Hello, world!\n"));
 * nar.finish();
 * assert.equal(
 *   sha256.digest("hex"),
 *   "5849379a8b8cbfc4131d0c0f89ad020ea270d85f161e257b7d52135b58337ece",
 * );
 * ```
 */
export interface NarWriterOptions {
  /**
   * When true, the writer reuses its internal buffer after handing it to the sink, so the sink
   * must consume each array before returning (a hasher does). When false (default), every array
   * given to the sink stays valid, so it may be queued.
   */
  reuseBuffer?: boolean;
  /** Size of the internal buffer in bytes (default 64 KiB). */
  bufferSize?: number;
}

const enc = new TextEncoder();

/** The padded NAR encoding of a string token. */
function token(s: string | Uint8Array): Uint8Array {
  const b = typeof s === "string" ? enc.encode(s) : s;
  const out = new Uint8Array(8 + padded(b.length));
  new DataView(out.buffer).setUint32(0, b.length, true);
  out.set(b, 8);
  return out;
}

/** `n` rounded up to a multiple of 8. */
function padded(n: number): number {
  // Arithmetic, not bit operations: sizes may exceed 2^31.
  return n + ((8 - (n % 8)) % 8);
}

const cat = (...parts: Uint8Array[]): Uint8Array => concat(parts);

// Pre-encoded token sequences: each structural step is one copy into the buffer.
const T_OPEN = token("(");
const T_CLOSE = token(")");
const T_TYPE = token("type");
const MAGIC = token("nix-archive-1");
const FILE_START = cat(T_OPEN, T_TYPE, token("regular"), token("contents"));
const EXEC_FILE_START = cat(
  T_OPEN,
  T_TYPE,
  token("regular"),
  token("executable"),
  token(""),
  token("contents"),
);
const SYMLINK_START = cat(T_OPEN, T_TYPE, token("symlink"), token("target"));
const DIRECTORY_START = cat(T_OPEN, T_TYPE, token("directory"));
const ENTRY_START = cat(token("entry"), T_OPEN, token("name"));
const T_NODE = token("node");
const ZEROS = new Uint8Array(8);

// Chunks at least this large skip the buffer and go to the sink as they are.
const PASSTHROUGH = 4096;

/** One open directory: the last entry name, and whether an entry awaits its node. */
interface DirFrame {
  prev: Uint8Array | null;
  inEntry: boolean;
}

/**
 * Writes one NAR to a sink. Call exactly one node method for the root (`symlink`, `file`,
 * `fileStart`…`fileEnd`, or `directoryStart`…`directoryEnd`); inside a directory, call
 * {@linkcode NarWriter.entry} before each child node, names in strictly increasing byte order.
 * Then {@linkcode NarWriter.finish}. Misuse (wrong order, bad names, wrong file length) throws
 * {@linkcode InvalidRequestError} and leaves the writer unusable.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NarWriter } from "@nixcas/nixcas/nar";
 * const enc = new TextEncoder();
 * const parts: Uint8Array[] = [];
 * const w = new NarWriter((b) => parts.push(b));
 * w.directoryStart();
 * w.entry(enc.encode("hello.txt"));
 * w.fileStart(false, 14);
 * w.fileChunk(enc.encode("Hello, "));
 * w.fileChunk(enc.encode("world!\n"));
 * w.fileEnd();
 * w.entry(enc.encode("link"));
 * w.symlink(enc.encode("hello.txt"));
 * w.directoryEnd();
 * w.finish();
 * const nar = Uint8Array.from(parts.flatMap((p) => [...p]));
 * assert.equal(nar.length, w.bytesWritten);
 * // Every NAR starts with its magic, a length-prefixed string:
 * assert.equal(new TextDecoder().decode(nar.subarray(8, 21)), "nix-archive-1");
 * ```
 */
export class NarWriter {
  #sink: NarSink;
  #reuse: boolean;
  #buf: Uint8Array;
  #view: DataView;
  #pos = 0;
  // Without reuse: where the bytes not yet handed to the sink start (those before are the
  // sink's now, so the buffer is only written past them, and replaced once full).
  #start = 0;
  #written = 0;
  #stack: DirFrame[] = [];
  #started = false;
  #done = false;
  #failed = false;
  // The file being written: its declared size and bytes so far (-1 when not in a file).
  #fileSize = -1;
  #fileGot = 0;

  /** Creates a writer that hands its output to `sink`. */
  constructor(sink: NarSink, options: NarWriterOptions = {}) {
    this.#sink = sink;
    this.#reuse = options.reuseBuffer ?? false;
    this.#buf = new Uint8Array(Math.max(options.bufferSize ?? 1 << 16, 1024));
    this.#view = new DataView(this.#buf.buffer);
  }

  /** Bytes of NAR produced so far (including bytes still buffered). */
  get bytesWritten(): number {
    return this.#written;
  }

  /** A symlink node. */
  symlink(target: Uint8Array): void {
    this.#beginNode();
    if (target.length === 0 || target.includes(0)) {
      this.#fail(`invalid symlink target ${displayName(target)}`);
    }
    this.#put(SYMLINK_START);
    this.#putString(target);
    this.#put(T_CLOSE);
    this.#endNode();
  }

  /** A regular file whose contents are in memory (a small file). */
  file(executable: boolean, contents: Uint8Array): void {
    this.fileStart(executable, contents.length);
    this.fileChunk(contents);
    this.fileEnd();
  }

  /** Starts a regular file of `size` bytes; send them with fileChunk, then call fileEnd. */
  fileStart(executable: boolean, size: number): void {
    this.#beginNode();
    if (!Number.isSafeInteger(size) || size < 0) this.#fail(`invalid file size ${size}`);
    this.#put(executable ? EXEC_FILE_START : FILE_START);
    this.#putU64(size);
    this.#fileSize = size;
    this.#fileGot = 0;
  }

  /** Part of the current file's contents. Large chunks are passed to the sink as they are. */
  fileChunk(bytes: Uint8Array): void {
    if (this.#fileSize < 0) this.#fail("fileChunk outside a file");
    if (this.#fileGot + bytes.length > this.#fileSize) {
      this.#fail(
        `file contents exceed the declared size ${this.#fileSize} ` +
          `(got at least ${this.#fileGot + bytes.length})`,
      );
    }
    this.#fileGot += bytes.length;
    if (bytes.length >= PASSTHROUGH) {
      this.flush();
      this.#written += bytes.length;
      this.#sink(bytes);
    } else {
      this.#put(bytes);
    }
  }

  /**
   * Declares the rest of the current file's contents as delivered out of band, at this point of
   * the stream. Buffered bytes are flushed first, so the sink's consumer can place the contents
   * between what it has received and what follows ({@linkcode OrderedNarHasher} does, to hash
   * a NAR while an importer reads files concurrently).
   */
  fileContentsElsewhere(): void {
    if (this.#fileSize < 0) this.#fail("fileContentsElsewhere outside a file");
    this.flush();
    this.#written += this.#fileSize - this.#fileGot;
    this.#fileGot = this.#fileSize;
  }

  /** Ends the current file; throws when fewer bytes than declared were sent. */
  fileEnd(): void {
    if (this.#fileSize < 0) this.#fail("fileEnd outside a file");
    if (this.#fileGot !== this.#fileSize) {
      this.#fail(`file contents are ${this.#fileGot} bytes, declared ${this.#fileSize}`);
    }
    this.#put(ZEROS.subarray(0, padded(this.#fileSize) - this.#fileSize));
    this.#put(T_CLOSE);
    this.#fileSize = -1;
    this.#endNode();
  }

  /** Starts a directory node; add entries with entry + a node each, then call directoryEnd. */
  directoryStart(): void {
    this.#beginNode();
    this.#put(DIRECTORY_START);
    this.#stack.push({ prev: null, inEntry: false });
  }

  /**
   * Starts an entry of the current directory; the next node call is its node. Names must be
   * valid (not empty, `.`, `..`, no `/` or NUL) and strictly increasing byte-wise.
   */
  entry(name: Uint8Array): void {
    this.#check();
    const top = this.#stack.at(-1);
    if (!top || top.inEntry || this.#fileSize >= 0) this.#fail("entry outside a directory");
    if (!isValidName(name)) this.#fail(`invalid entry name ${displayName(name)}`);
    if (top.prev !== null && compareBytes(top.prev, name) >= 0) {
      this.#fail(`entry ${displayName(name)} is not after ${displayName(top.prev)}`);
    }
    top.prev = name;
    top.inEntry = true;
    this.#put(ENTRY_START);
    this.#putString(name);
    this.#put(T_NODE);
  }

  /** Ends the current directory. */
  directoryEnd(): void {
    this.#check();
    const top = this.#stack.at(-1);
    if (!top || top.inEntry || this.#fileSize >= 0) this.#fail("directoryEnd outside a directory");
    this.#stack.pop();
    this.#put(T_CLOSE);
    this.#endNode();
  }

  /** Checks the archive is complete and hands the remaining buffered bytes to the sink. */
  finish(): void {
    this.#check();
    if (!this.#done) this.#fail("NAR is incomplete");
    this.flush();
  }

  /** Hands the buffered bytes to the sink now (they are flushed automatically when full). */
  flush(): void {
    if (this.#pos === this.#start) return;
    // Without reuse the sink may keep what it gets: it gets a view of the bytes since the last
    // flush (often small, e.g. one file header), which are never written again.
    let out: Uint8Array;
    if (this.#reuse) {
      out = this.#buf.subarray(0, this.#pos);
      this.#pos = 0;
    } else {
      out = this.#buf.subarray(this.#start, this.#pos);
      this.#start = this.#pos;
    }
    this.#sink(out);
  }

  #check(): void {
    if (this.#failed) throw new InvalidRequestError("NAR writer failed earlier");
  }

  #fail(msg: string): never {
    this.#failed = true;
    throw new InvalidRequestError(msg);
  }

  // A node may start at the root (once) or right after entry().
  #beginNode(): void {
    this.#check();
    if (this.#fileSize >= 0) this.#fail("node inside a file");
    if (!this.#started) {
      this.#started = true;
      this.#put(MAGIC);
      return;
    }
    const top = this.#stack.at(-1);
    if (!top || !top.inEntry) {
      this.#fail(this.#done ? "NAR already complete" : "node without entry");
    }
  }

  // Closes the enclosing entry, or marks the archive complete at the root.
  #endNode(): void {
    const top = this.#stack.at(-1);
    if (top) {
      top.inEntry = false;
      this.#put(T_CLOSE);
    } else {
      this.#done = true;
    }
  }

  #put(bytes: Uint8Array): void {
    this.#written += bytes.length;
    let src = bytes;
    while (src.length > 0) {
      const room = this.#buf.length - this.#pos;
      if (room === 0) {
        this.#renew();
        continue;
      }
      const n = Math.min(room, src.length);
      this.#buf.set(n === src.length ? src : src.subarray(0, n), this.#pos);
      this.#pos += n;
      src = src.subarray(n);
    }
  }

  /** Flushes, and without reuse starts a new buffer: the sink may hold the old one. */
  #renew(): void {
    this.flush();
    if (this.#reuse) return;
    this.#buf = new Uint8Array(this.#buf.length);
    this.#view = new DataView(this.#buf.buffer);
    this.#start = this.#pos = 0;
  }

  #putU64(n: number): void {
    if (this.#buf.length - this.#pos < 8) this.#renew();
    this.#view.setUint32(this.#pos, n >>> 0, true);
    this.#view.setUint32(this.#pos + 4, Math.floor(n / 0x1_0000_0000), true);
    this.#pos += 8;
    this.#written += 8;
  }

  #putString(bytes: Uint8Array): void {
    this.#putU64(bytes.length);
    this.#put(bytes);
    this.#put(ZEROS.subarray(0, padded(bytes.length) - bytes.length));
  }
}
