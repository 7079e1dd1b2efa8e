/**
 * BLAKE3 digests: the addresses of blobs and directories.
 *
 * @module
 */
import { fromBase64, toBase64, toHex } from "../base/bytes.ts";
import { Blake3, blake3Hash, subtreeCV } from "../hash/blake3.ts";
import { nativeBlake3, WINDOW } from "../hash/blake3_native.ts";
import { InvalidRequestError } from "../base/errors.ts";

/**
 * Length in bytes of a BLAKE3 digest.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { B3_LEN, blake3 } from "@nixcas/nixcas/castore";
 * assert.equal(blake3(new TextEncoder().encode("hi")).bytes.length, B3_LEN); // 32
 * ```
 */
export const B3_LEN = 32;

/**
 * A 32-byte BLAKE3 digest, displayed as `b3:<base64>` like tvix.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { B3Digest, blake3 } from "@nixcas/nixcas/castore";
 * const d = blake3(new TextEncoder().encode("Hello World!"));
 * const same = B3Digest.parse(d.toString());
 * assert(same.equals(d));
 * ```
 */
export class B3Digest {
  /** The 32 raw digest bytes. Treat as read-only. */
  readonly bytes: Uint8Array;

  private constructor(bytes: Uint8Array) {
    this.bytes = bytes;
  }

  /**
   * Wraps 32 bytes (copied). Throws {@linkcode InvalidRequestError} naming the length when it is
   * not 32.
   */
  static fromBytes(bytes: Uint8Array): B3Digest {
    if (bytes.length !== B3_LEN) {
      throw new InvalidRequestError(`invalid digest length: ${bytes.length} (want ${B3_LEN})`);
    }
    return new B3Digest(bytes.slice());
  }

  /** Parses `b3:<base64>`, bare base64, or 64 hex digits. */
  static parse(text: string): B3Digest {
    const t = text.startsWith("b3:") ? text.slice(3) : text;
    if (/^[0-9a-fA-F]{64}$/.test(t)) {
      const out = new Uint8Array(B3_LEN);
      for (let i = 0; i < B3_LEN; i++) out[i] = parseInt(t.slice(2 * i, 2 * i + 2), 16);
      return new B3Digest(out);
    }
    let bytes: Uint8Array;
    try {
      bytes = fromBase64(t);
    } catch {
      throw new InvalidRequestError(`not a BLAKE3 digest: ${JSON.stringify(text)}`);
    }
    return B3Digest.fromBytes(bytes);
  }

  /** `b3:<base64>`, the form tvix prints. */
  toString(): string {
    return `b3:${toBase64(this.bytes)}`;
  }

  /** Lower-case hex, the form b3sum prints. */
  toHex(): string {
    return toHex(this.bytes);
  }

  /** A string usable as a Map key. */
  get key(): string {
    return toHex(this.bytes);
  }

  /** Byte-wise equality. */
  equals(other: B3Digest): boolean {
    for (let i = 0; i < B3_LEN; i++) if (this.bytes[i] !== other.bytes[i]) return false;
    return true;
  }
}

/**
 * BLAKE3 of a buffer, computed synchronously.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { blake3 } from "@nixcas/nixcas/castore";
 * const digest = blake3(new TextEncoder().encode("Hello, world!\n"));
 * assert.equal(digest.toString(), "b3:lPFnW6xPi8PFk8Y9v1/nigv9oBCCr4XVtBplCW21a/8=");
 * assert.equal(digest.toHex(), "94f1675bac4f8bc3c593c63dbf5fe78a0bfda01082af85d5b41a65096db56bff");
 * ```
 */
export function blake3(data: Uint8Array): B3Digest {
  const native = data.length >= NATIVE_MIN ? nativeBlake3() : null;
  return B3Digest.fromBytes(native ? native.hash(data) : blake3Hash(data));
}

// Below this, our WebAssembly is as fast as an FFI call into native code.
const NATIVE_MIN = 4096;

/**
 * The BLAKE3 chaining value of the 1 MiB window `data` (1,024 chunks) starting at chunk
 * `counter` (see `subtreeCV` in `hash/`), in native code once it is enabled. For readers that
 * check a big blob window by window. Computed on this thread: a call on the thread pool per
 * window cost more (≈0.3 ms of this thread per call on a busy machine, waking a pool thread)
 * than hashing the window here (≈0.23 ms); the reads overlap it on the pool.
 */
export function blake3WindowCV(data: Uint8Array, counter: number): Promise<Uint8Array> {
  try {
    const native = nativeBlake3();
    return Promise.resolve(native ? native.windowCV(data, counter) : subtreeCV(data, counter));
  } catch (e) {
    return Promise.reject(e);
  }
}

/**
 * An incremental BLAKE3 hasher (for streams).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   type B3Digest,
 *   blake3,
 *   type Blake3Hasher,
 *   createBlake3Hasher,
 * } from "@nixcas/nixcas/castore";
 * async function digestOf(stream: ReadableStream<Uint8Array>): Promise<B3Digest> {
 *   const hasher: Blake3Hasher = await createBlake3Hasher();
 *   for await (const chunk of stream) hasher.update(chunk);
 *   return hasher.digest();
 * }
 * const text = "Hello, world!\n";
 * const stream = new Blob([text]).stream();
 * assert.ok((await digestOf(stream)).equals(blake3(new TextEncoder().encode(text))));
 * ```
 */
export interface Blake3Hasher {
  /** Feeds bytes. */
  update(data: Uint8Array): void;
  /** Finishes and returns the digest; the hasher must not be used afterwards. */
  digest(): B3Digest;
}

/** Chunks (1 KiB) in a native window. */
const WINDOW_CHUNKS = WINDOW / 1024;
/** A hasher whose first input is this large hashes whole windows natively, when it can. */
const WINDOWED_FROM = 64 << 10;

// Finished hashers (18 KiB each) are kept for reuse, bounded so that a burst of concurrent
// writers does not pin memory forever.
const idle: Blake3[] = [];
const IDLE_MAX = 32;

/**
 * Creates an incremental BLAKE3 hasher.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { blake3, createBlake3Hasher } from "@nixcas/nixcas/castore";
 * const enc = new TextEncoder();
 * const hasher = await createBlake3Hasher();
 * hasher.update(enc.encode("Hello, "));
 * hasher.update(enc.encode("world!\n"));
 * const digest = hasher.digest(); // the hasher is finished now
 * assert.ok(digest.equals(blake3(enc.encode("Hello, world!\n"))));
 * ```
 */
export function createBlake3Hasher(): Promise<Blake3Hasher> {
  const h = idle.pop()?.reset() ?? new Blake3();
  const native = nativeBlake3();
  let done = false;
  // With native BLAKE3 and large input, whole 1 MiB windows are hashed natively and fed to the
  // tree by their chaining values: the first window is held back until more input shows it is
  // not the whole (then it would be the root, which a window's CV is not).
  let windowed: boolean | null = native ? null : false;
  let win: Uint8Array | null = null;
  let winLen = 0;
  let windows = 0;
  let first: Uint8Array | null = null;
  const windowDone = (w: Uint8Array, borrowed: boolean) => {
    if (windows === 0) {
      first = borrowed ? w.slice() : w;
      if (!borrowed) win = null; // the held window keeps that buffer
    } else {
      if (first) {
        h.pushSubtree(native!.windowCV(first, 0), WINDOW_CHUNKS);
        first = null;
      }
      h.pushSubtree(native!.windowCV(w, windows * WINDOW_CHUNKS), WINDOW_CHUNKS);
    }
    windows++;
  };
  return Promise.resolve({
    update: (data) => {
      if (done) throw new Error("BLAKE3 hasher used after digest()");
      windowed ??= data.length >= WINDOWED_FROM;
      if (!windowed) {
        h.update(data);
        return;
      }
      let o = 0;
      while (o < data.length) {
        if (winLen === 0 && data.length - o >= WINDOW) {
          windowDone(data.subarray(o, o + WINDOW), true);
          o += WINDOW;
          continue;
        }
        const n = Math.min(WINDOW - winLen, data.length - o);
        if (!win || win.length < winLen + n) {
          const grown = new Uint8Array(
            Math.min(WINDOW, Math.max(2 * (win?.length ?? 0), winLen + n)),
          );
          if (win) grown.set(win.subarray(0, winLen));
          win = grown;
        }
        win.set(data.subarray(o, o + n), winLen);
        winLen += n;
        o += n;
        if (winLen === WINDOW) {
          windowDone(win, false);
          winLen = 0;
        }
      }
    },
    digest: () => {
      if (done) throw new Error("BLAKE3 hasher used after digest()");
      done = true;
      if (first) {
        // The first window is the whole input, or followed by less than a window.
        if (winLen === 0) h.update(first);
        else h.pushSubtree(native!.windowCV(first, 0), WINDOW_CHUNKS);
      }
      if (winLen > 0) h.update(win!.subarray(0, winLen));
      const d = B3Digest.fromBytes(h.digest());
      if (idle.length < IDLE_MAX) idle.push(h);
      return d;
    },
  });
}
