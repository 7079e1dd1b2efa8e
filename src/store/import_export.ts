/**
 * Reading the `nix-store --export` format (see {@linkcode renderExport} for the writer): each
 * path's NAR goes through the strict NAR ingest into castore, and its PathInfo is registered
 * once the whole entry, trailer included, has parsed and its references are known.
 *
 * The NAR is handed to `ingestNar` exactly: a small scanner follows the NAR's tokens as the
 * bytes pass (file contents are skipped by their length, never buffered) and stops at the end
 * of the root node, leaving the trailer to the export reader. Validating the NAR stays the
 * ingest's.
 *
 * @module
 */
import { InvalidRequestError } from "../base/errors.ts";
import {
  ingestNar,
  type NarIngestResult,
  NarParseError,
  type NarReader,
  type NarSource,
} from "../nar/ingest.ts";
import { EXPORT_MAGIC } from "./export.ts";
import type { StoreServices } from "./import.ts";
import { makePathInfo } from "./path_info.ts";
import { ENCODED_DIGEST_LEN, MAX_NAME_LEN, STORE_DIR_WITH_SLASH, StorePath } from "./store_path.ts";

/**
 * Which rule an export stream broke ({@linkcode ExportParseError.kind}):
 *
 * - `Marker`: the number before a path is neither 1 (a path follows) nor 0 (the end);
 * - `Magic`: the number after a NAR is not {@linkcode EXPORT_MAGIC};
 * - `Truncated`: the stream ended inside an entry or before the final 0;
 * - `Padding`: a padding byte after a string (in the NAR or the trailer) is not zero;
 * - `Length`: a string longer than its field can be, or a count past 2^53;
 * - `StorePath`: a store path, reference or deriver that does not parse (or a deriver that is
 *   not a `.drv`);
 * - `Signature`: the legacy signature flag is neither 0 nor 1;
 * - `Nar`: the NAR is not one `ingestNar` accepts (its error is the `cause`);
 * - `MissingReference`: a reference that is neither the path itself, an earlier path of the
 *   stream nor in the store;
 * - `TrailingData`: bytes after the final 0.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type ExportErrorKind, ExportParseError } from "@nixcas/nixcas/store";
 * const kind: ExportErrorKind = new ExportParseError("Magic", 136, "bad magic").kind;
 * assert.equal(kind, "Magic");
 * ```
 */
export type ExportErrorKind =
  | "Marker"
  | "Magic"
  | "Truncated"
  | "Padding"
  | "Length"
  | "StorePath"
  | "Signature"
  | "Nar"
  | "MissingReference"
  | "TrailingData";

/**
 * An export stream that {@linkcode readExport} refuses: the rule and the byte offset in the
 * stream, both also in the message. An {@linkcode InvalidRequestError}: the input is at fault.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidRequestError } from "@nixcas/nixcas";
 * import { ExportParseError } from "@nixcas/nixcas/store";
 * const e = new ExportParseError("Marker", 0, "path marker is 2, not 1 or 0");
 * assert.ok(e instanceof InvalidRequestError);
 * assert.equal(e.offset, 0);
 * assert.equal(e.message, "invalid export at byte 0: path marker is 2, not 1 or 0");
 * ```
 */
export class ExportParseError extends InvalidRequestError {
  /** The rule that was broken. */
  readonly kind: ExportErrorKind;
  /** Offset in the stream of the first byte at fault (its length when it was cut short). */
  readonly offset: number;

  /** Creates the error; the message is `invalid export at byte OFFSET: DETAIL`. */
  constructor(kind: ExportErrorKind, offset: number, detail: string, options?: ErrorOptions) {
    super(`invalid export at byte ${offset}: ${detail}`, options);
    this.name = "ExportParseError";
    this.kind = kind;
    this.offset = offset;
  }
}

/**
 * Options of {@linkcode readExport}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ExportReadOptions, StorePath } from "@nixcas/nixcas/store";
 * const seen: string[] = [];
 * const options: ExportReadOptions = { onPath: (p: StorePath) => void seen.push(p.absolute) };
 * assert.ok(options.onPath);
 * ```
 */
export interface ExportReadOptions {
  /** Called with each path once it is registered, in stream order (awaited). */
  onPath?(storePath: StorePath): void | Promise<void>;
  /** Stops the read: it fails with the signal's reason. */
  signal?: AbortSignal;
}

// Longest store path text: the store directory, the digest, a dash and the longest name.
const MAX_PATH_TEXT = STORE_DIR_WITH_SLASH.length + ENCODED_DIGEST_LEN + 1 + MAX_NAME_LEN;
// Nix signatures are `name:base64(64 bytes)`; this leaves room for any key name.
const MAX_SIGNATURE_TEXT = 64 << 10;
// Bytes read from a reader at once outside NARs (the trailer and the start of the next NAR).
const READ_SIZE = 64 << 10;
const NOTHING = new Uint8Array(0);
const td = new TextDecoder("utf-8", { fatal: false });

/**
 * Reads a `nix-store --export` stream into `services`: each path's NAR into the blob and
 * directory services (checked by `ingestNar`), then its PathInfo (store path, NAR size and
 * SHA-256 as ingested, references, deriver) into `pathInfos`. Returns the store paths in stream
 * order.
 *
 * A path is registered only after its whole entry has parsed, and only when each reference is
 * the path itself, an earlier path of the stream or already in `pathInfos`. The legacy signature
 * an entry may carry is read and ignored, as Nix does; the format has no content address. The
 * first fault stops the read with an {@linkcode ExportParseError} naming the byte offset; paths
 * registered before it stay (each is complete), nothing is registered for the faulty one. Memory
 * does not grow with the stream: NARs stream through the ingest, file contents unbuffered.
 *
 * `source` is a stream or async iterable of chunks (owned by the read once yielded), or a
 * {@linkcode NarReader} such as `Deno.stdin` or an open `Deno.FsFile` (not closed here).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import { importStorePath, readExport, renderExport } from "@nixcas/nixcas/store";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/hello.txt`, "Hello, world!\n");
 * const a = await openStore("memory://");
 * const { pathInfo, storePath } = await importStorePath(`${dir}/hello.txt`, a);
 * const b = await openStore("memory://");
 * const paths = await readExport(ReadableStream.from(renderExport([pathInfo], a)), b);
 * assert.deepEqual(paths.map((p) => p.absolute), [storePath.absolute]);
 * assert.equal((await b.pathInfos.get(storePath.digest))?.narinfo?.narSize, 128n);
 * await a.close();
 * await b.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readExport(
  source: NarSource,
  services: StoreServices,
  options: ExportReadOptions = {},
): Promise<StorePath[]> {
  const input = new ExportInput(source, options.signal);
  const seen = new Set<string>();
  const paths: StorePath[] = [];
  let ok = false;
  try {
    for (let index = 1;; index++) {
      const markerAt = input.offset;
      const marker = await input.num(`the marker before path ${index}`);
      if (marker === 0n) break;
      if (marker !== 1n) {
        throw new ExportParseError(
          "Marker",
          markerAt,
          `the marker before path ${index} is ${marker}, not 1 (a path follows) or 0 (the end)`,
        );
      }
      const narStart = input.offset;
      let nar: NarIngestResult;
      try {
        nar = await ingestNar(input.nar(), services.blobs, services.directories, {
          signal: options.signal,
        });
      } catch (e) {
        if (!(e instanceof NarParseError)) throw e;
        const kind = e.kind === "Truncated" || e.kind === "Padding" ? e.kind : "Nar";
        throw new ExportParseError(
          kind,
          narStart + e.offset,
          `the NAR of path ${index} (from byte ${narStart}): ${e.message}`,
          { cause: e },
        );
      }
      const magicAt = input.offset;
      const magic = await input.num(`the export magic of path ${index}`);
      if (magic !== BigInt(EXPORT_MAGIC)) {
        throw new ExportParseError(
          "Magic",
          magicAt,
          `after the NAR of path ${index}: 0x${magic.toString(16)} is not the export magic ` +
            `0x${EXPORT_MAGIC.toString(16)}`,
        );
      }
      const storePath = await input.storePath(`the store path of path ${index}`);
      const count = await input.count(`the reference count of ${storePath.absolute}`);
      const references: { path: StorePath; at: number }[] = [];
      for (let i = 0; i < count; i++) {
        const at = input.offset;
        references.push({
          path: await input.storePath(`reference ${i + 1} of ${storePath.absolute}`),
          at,
        });
      }
      const deriverAt = input.offset;
      const deriverText = await input.string(`the deriver of ${storePath.absolute}`, MAX_PATH_TEXT);
      const deriver = deriverText.length ? parsePath(deriverText, deriverAt, "deriver") : undefined;
      if (deriver && !deriver.name.endsWith(".drv")) {
        throw new ExportParseError(
          "StorePath",
          deriverAt,
          `the deriver ${deriver.absolute} of ${storePath.absolute} is not a .drv`,
        );
      }
      const flagAt = input.offset;
      const flag = await input.num(`the signature flag of ${storePath.absolute}`);
      if (flag === 1n) {
        await input.string(`the legacy signature of ${storePath.absolute}`, MAX_SIGNATURE_TEXT);
      } else if (flag !== 0n) {
        throw new ExportParseError(
          "Signature",
          flagAt,
          `the signature flag of ${storePath.absolute} is ${flag}, not 0 or 1`,
        );
      }
      const self = storePath.toString();
      for (const { path: ref, at } of references) {
        const name = ref.toString();
        if (name === self || seen.has(name)) continue;
        const stored = await services.pathInfos.get(ref.digest);
        if (!stored) {
          throw new ExportParseError(
            "MissingReference",
            at,
            `${storePath.absolute} refers to ${ref.absolute}, which is neither in the store ` +
              `nor earlier in the export`,
          );
        }
      }
      await services.pathInfos.put(makePathInfo({
        storePath,
        node: nar.node,
        narSize: nar.narSize,
        narSha256: nar.narSha256,
        references: references.map((r) => r.path),
        deriver,
      }));
      seen.add(self);
      paths.push(storePath);
      await options.onPath?.(storePath);
    }
    if (!(await input.atEnd())) {
      throw new ExportParseError(
        "TrailingData",
        input.offset,
        "bytes after the end of the export (its final 0)",
      );
    }
    ok = true;
    return paths;
  } finally {
    if (!ok) await input.cancel();
  }
}

/** Parses an absolute store path read at `at`; `what` names the field. */
function parsePath(text: string, at: number, what: string): StorePath {
  try {
    return StorePath.parseAbsolute(text);
  } catch (e) {
    throw new ExportParseError(
      "StorePath",
      at,
      `${what}: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e },
    );
  }
}

/**
 * The stream: trailers are read through `take` (small, copied where they straddle chunks);
 * NARs through {@linkcode ExportInput.nar}, forwarded as they arrive up to the NAR's end.
 */
class ExportInput {
  #it: AsyncIterator<Uint8Array> | null;
  #reader: NarReader | null;
  #signal: AbortSignal | undefined;
  /** Bytes received and not consumed yet; never written to (they may be hashed in place). */
  #pending: Uint8Array = NOTHING;
  #eof = false;
  #pulling = false;
  /** Offset in the stream of the next byte not consumed. */
  offset = 0;

  constructor(source: NarSource, signal?: AbortSignal) {
    if (Symbol.asyncIterator in source) {
      this.#it = source[Symbol.asyncIterator]();
      this.#reader = null;
    } else {
      this.#it = null;
      this.#reader = source;
    }
    this.#signal = signal;
  }

  /** The next bytes from the source, in a buffer of their own, or null at its end. */
  async #pull(min: number): Promise<Uint8Array | null> {
    this.#signal?.throwIfAborted();
    if (this.#eof) return null;
    if (this.#reader) {
      const buf = new Uint8Array(Math.max(min, READ_SIZE));
      const n = await this.#reader.read(buf);
      if (n === null || n === 0) {
        this.#eof = true;
        return null;
      }
      return buf.subarray(0, checkRead(n, buf.length));
    }
    for (;;) {
      this.#pulling = true;
      const r = await this.#it!.next().finally(() => this.#pulling = false);
      if (r.done) {
        this.#eof = true;
        return null;
      }
      const chunk = r.value;
      if (!(chunk instanceof Uint8Array)) {
        throw new InvalidRequestError(`export source yielded ${typeof chunk}, not a Uint8Array`);
      }
      if (chunk.length) return chunk;
    }
  }

  /** The next `n` bytes (consumed), or a `Truncated` error naming `what` was being read. */
  async #take(n: number, what: string): Promise<Uint8Array> {
    const pending = this.#pending;
    if (pending.length >= n) {
      this.#pending = pending.subarray(n);
      this.offset += n;
      return pending.subarray(0, n);
    }
    const out = new Uint8Array(n);
    out.set(pending);
    let got = pending.length;
    this.#pending = NOTHING;
    while (got < n) {
      const chunk = await this.#pull(n - got);
      if (!chunk) {
        throw new ExportParseError(
          "Truncated",
          this.offset + got,
          `the stream ended inside ${what}`,
        );
      }
      const k = Math.min(chunk.length, n - got);
      out.set(chunk.subarray(0, k), got);
      got += k;
      this.#pending = chunk.subarray(k);
    }
    this.offset += n;
    return out;
  }

  /** A little-endian u64. */
  async num(what: string): Promise<bigint> {
    const b = await this.#take(8, what);
    return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
  }

  /** A u64 used as a count, refused past 2^53. */
  async count(what: string): Promise<number> {
    const at = this.offset;
    const n = await this.num(what);
    if (n > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new ExportParseError("Length", at, `${what} is ${n}`);
    }
    return Number(n);
  }

  /** A wire string of at most `max` bytes, its padding checked. */
  async string(what: string, max: number): Promise<string> {
    const at = this.offset;
    const len = await this.num(`the length of ${what}`);
    if (len > BigInt(max)) {
      throw new ExportParseError(
        "Length",
        at,
        `${what} is ${len} bytes long, more than the ${max} it can be`,
      );
    }
    const n = Number(len);
    const padded = n + ((8 - (n % 8)) % 8);
    const b = await this.#take(padded, what);
    for (let i = n; i < padded; i++) {
      if (b[i] !== 0) {
        throw new ExportParseError(
          "Padding",
          at + 8 + i,
          `padding byte after ${what} is 0x${b[i].toString(16).padStart(2, "0")}, not zero`,
        );
      }
    }
    return td.decode(b.subarray(0, n));
  }

  /** A wire string holding an absolute store path. */
  async storePath(what: string): Promise<StorePath> {
    const at = this.offset;
    const text = await this.string(what, MAX_PATH_TEXT);
    return parsePath(text, at, what);
  }

  /** True when the source has no byte left. */
  async atEnd(): Promise<boolean> {
    if (this.#pending.length) return false;
    const chunk = await this.#pull(1);
    if (!chunk) return true;
    this.#pending = chunk;
    return false;
  }

  /**
   * The next NAR, as a source for `ingestNar`: bytes are forwarded as they arrive (from a reader,
   * read straight into the ingest's buffer) until the scanner sees the root node end; what
   * follows stays here. The source ends there, or where the stream does.
   */
  nar(): NarSource {
    const scan = new NarBoundary();
    if (this.#reader) {
      const reader = this.#reader;
      return {
        read: async (p: Uint8Array): Promise<number | null> => {
          if (scan.done) return null;
          const pending = this.#pending;
          if (pending.length) {
            const k = scan.scan(pending.subarray(0, Math.min(p.length, pending.length)));
            p.set(pending.subarray(0, k));
            this.#pending = pending.subarray(k);
            this.offset += k;
            return k;
          }
          this.#signal?.throwIfAborted();
          if (this.#eof) return null;
          const n = await reader.read(p);
          if (n === null || n === 0) {
            this.#eof = true;
            return null;
          }
          checkRead(n, p.length);
          const k = scan.scan(p.subarray(0, n));
          // What follows the NAR is copied out: `p` is the ingest's buffer.
          if (k < n) this.#pending = p.slice(k, n);
          this.offset += k;
          return k;
        },
      };
    }
    return this.#narChunks(scan);
  }

  /** Chunk mode: the chunks (or their parts) up to the NAR's end, never copied. */
  async *#narChunks(scan: NarBoundary): AsyncGenerator<Uint8Array> {
    while (!scan.done) {
      if (!this.#pending.length) {
        const chunk = await this.#pull(1);
        if (!chunk) return;
        this.#pending = chunk;
      }
      const pending = this.#pending;
      const k = scan.scan(pending);
      this.#pending = pending.subarray(k);
      this.offset += k;
      yield pending.subarray(0, k);
    }
  }

  /** After a failure: cancels a stream source (a reader is the caller's to close). */
  async cancel(): Promise<void> {
    if (this.#eof) return;
    const ret = Promise.resolve(this.#it?.return?.()).catch(() => {});
    // A pull still pending (after an abort) may never end: do not wait for it.
    if (!this.#pulling) await ret;
  }
}

/** A reader's count, checked. */
function checkRead(n: number, asked: number): number {
  if (!Number.isSafeInteger(n) || n < 0 || n > asked) {
    throw new InvalidRequestError(`export reader returned ${n} for a read of ${asked} bytes`);
  }
  return n;
}

const enc = new TextEncoder();
const OPEN = enc.encode("(");
const CLOSE = enc.encode(")");
/** Tokens whose following string is data (a name, file contents, a symlink target). */
const DATA_KEYS = ["name", "contents", "target"].map((s) => enc.encode(s));

function same(a: Uint8Array, aLen: number, b: Uint8Array): boolean {
  if (aLen !== b.length) return false;
  for (let i = 0; i < aLen; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Finds where a NAR ends, knowing only that every token is a string (u64 length, bytes, padding
 * to 8) and that `(` and `)` nest, except in the string after `name`, `contents` or `target`,
 * which is data. Strings are skipped by their length; only short ones are looked at.
 */
class NarBoundary {
  /** 0: reading a length; 1: a string's bytes; 2: its padding. */
  #phase = 0;
  #len = new Uint8Array(8);
  #lenGot = 0;
  #strLen = 0;
  #left = 0;
  /** The first 8 bytes of the current string (all of it when it is that short). */
  #tok = new Uint8Array(8);
  #tokGot = 0;
  #dataNext = false;
  #depth = 0;
  /** True once the root node's `)` and its padding have passed. */
  done = false;

  /** How many of `b`'s bytes belong to the NAR (all, unless it ends inside them). */
  scan(b: Uint8Array): number {
    let i = 0;
    while (i < b.length && !this.done) {
      if (this.#phase === 0) {
        const k = Math.min(8 - this.#lenGot, b.length - i);
        this.#len.set(b.subarray(i, i + k), this.#lenGot);
        this.#lenGot += k;
        i += k;
        if (this.#lenGot === 8) {
          const v = new DataView(this.#len.buffer);
          // Past 2^53 this is approximate; the ingest refuses such a length anyway.
          this.#strLen = v.getUint32(0, true) + v.getUint32(4, true) * 2 ** 32;
          this.#left = this.#strLen;
          this.#tokGot = 0;
          this.#phase = 1;
          if (this.#left === 0) this.#endData();
        }
      } else if (this.#phase === 1) {
        const k = Math.min(this.#left, b.length - i);
        if (this.#tokGot < 8) {
          const c = Math.min(k, 8 - this.#tokGot);
          this.#tok.set(b.subarray(i, i + c), this.#tokGot);
          this.#tokGot += c;
        }
        i += k;
        this.#left -= k;
        if (this.#left === 0) this.#endData();
      } else {
        const k = Math.min(this.#left, b.length - i);
        i += k;
        this.#left -= k;
        if (this.#left === 0) this.#endToken();
      }
    }
    return i;
  }

  #endData(): void {
    this.#left = (8 - (this.#strLen % 8)) % 8;
    this.#phase = 2;
    if (this.#left === 0) this.#endToken();
  }

  #endToken(): void {
    this.#phase = 0;
    this.#lenGot = 0;
    const len = this.#strLen;
    if (this.#dataNext) this.#dataNext = false;
    else if (same(this.#tok, len, OPEN)) this.#depth++;
    else if (same(this.#tok, len, CLOSE)) {
      if (--this.#depth === 0) this.done = true;
    } else if (DATA_KEYS.some((k) => same(this.#tok, len, k))) this.#dataNext = true;
  }
}
