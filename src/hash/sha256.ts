/**
 * SHA-256, the hash of Nix: {@linkcode sha256} for small inputs (store path fingerprints), in
 * TypeScript, and {@linkcode createSha256Stream} for NARs of any size.
 *
 * A NAR stream is hashed by OpenSSL's libcrypto through FFI where the system has it (Linux), on
 * Deno's blocking thread pool: SHA-NI speed on another core while the importer reads and
 * hashes BLAKE3 on this one, and no `node:crypto`, whose Node compatibility layer costs ~25 ms
 * of start-up. Elsewhere `node:crypto` hashes on this thread.
 *
 * @module
 */
import { type Libcrypto, libcrypto, SHA256_CTX_SIZE } from "../sys/libcrypto.ts";

export { preloadLibcrypto } from "../sys/libcrypto.ts";

const K = new Uint32Array([
  0x428a2f98,
  0x71374491,
  0xb5c0fbcf,
  0xe9b5dba5,
  0x3956c25b,
  0x59f111f1,
  0x923f82a4,
  0xab1c5ed5,
  0xd807aa98,
  0x12835b01,
  0x243185be,
  0x550c7dc3,
  0x72be5d74,
  0x80deb1fe,
  0x9bdc06a7,
  0xc19bf174,
  0xe49b69c1,
  0xefbe4786,
  0x0fc19dc6,
  0x240ca1cc,
  0x2de92c6f,
  0x4a7484aa,
  0x5cb0a9dc,
  0x76f988da,
  0x983e5152,
  0xa831c66d,
  0xb00327c8,
  0xbf597fc7,
  0xc6e00bf3,
  0xd5a79147,
  0x06ca6351,
  0x14292967,
  0x27b70a85,
  0x2e1b2138,
  0x4d2c6dfc,
  0x53380d13,
  0x650a7354,
  0x766a0abb,
  0x81c2c92e,
  0x92722c85,
  0xa2bfe8a1,
  0xa81a664b,
  0xc24b8b70,
  0xc76c51a3,
  0xd192e819,
  0xd6990624,
  0xf40e3585,
  0x106aa070,
  0x19a4c116,
  0x1e376c08,
  0x2748774c,
  0x34b0bcb5,
  0x391c0cb3,
  0x4ed8aa4a,
  0x5b9cca4f,
  0x682e6ff3,
  0x748f82ee,
  0x78a5636f,
  0x84c87814,
  0x8cc70208,
  0x90befffa,
  0xa4506ceb,
  0xbef9a3f7,
  0xc67178f2,
]);

const W = new Uint32Array(64);

/** One compression of the 64-byte block at `data[off..]` into `h`. */
function compress(h: Uint32Array, data: Uint8Array, off: number): void {
  for (let i = 0; i < 16; i++, off += 4) {
    W[i] = (data[off] << 24) | (data[off + 1] << 16) | (data[off + 2] << 8) | data[off + 3];
  }
  for (let i = 16; i < 64; i++) {
    const a = W[i - 15], b = W[i - 2];
    const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
    const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
    W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
  }
  let a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (hh + S1 + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    hh = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
  h[5] += f;
  h[6] += g;
  h[7] += hh;
}

/**
 * SHA-256 of `data` (a string is hashed as UTF-8), computed in TypeScript: for fingerprints and
 * other small inputs, where loading a native hash would cost more than hashing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sha256 } from "./sha256.ts";
 * import { toHex } from "../base/bytes.ts";
 * assert.equal(
 *   toHex(sha256("abc")),
 *   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
 * );
 * assert.deepEqual(sha256(new TextEncoder().encode("abc")), sha256("abc"));
 * ```
 */
export function sha256(data: Uint8Array | string): Uint8Array {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const h = new Uint32Array([
    0x6a09e667,
    0xbb67ae85,
    0x3c6ef372,
    0xa54ff53a,
    0x510e527f,
    0x9b05688c,
    0x1f83d9ab,
    0x5be0cd19,
  ]);
  const full = bytes.length - (bytes.length % 64);
  for (let off = 0; off < full; off += 64) compress(h, bytes, off);
  // The tail, 0x80, zeros and the bit length: one or two final blocks.
  const tail = new Uint8Array(bytes.length % 64 < 56 ? 64 : 128);
  tail.set(bytes.subarray(full));
  tail[bytes.length - full] = 0x80;
  const bits = bytes.length * 8;
  const view = new DataView(tail.buffer);
  view.setUint32(tail.length - 8, Math.floor(bits / 0x1_0000_0000));
  view.setUint32(tail.length - 4, bits >>> 0);
  for (let off = 0; off < tail.length; off += 64) compress(h, tail, off);
  const out = new Uint8Array(32);
  const ov = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) ov.setUint32(i * 4, h[i]);
  return out;
}

/**
 * A SHA-256 computation over a stream of byte arrays, possibly on another thread. Bytes are
 * hashed in the order the calls are made.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSha256Stream } from "./sha256.ts";
 * import { toHex } from "../base/bytes.ts";
 * const hash = createSha256Stream();
 * hash.update(new TextEncoder().encode("a"));
 * await hash.updateInPlace(new TextEncoder().encode("bc"));
 * assert.equal(
 *   toHex(await hash.digest()),
 *   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
 * );
 * ```
 */
export interface Sha256Stream {
  /** Adds a copy of `bytes`: the caller may reuse them at once. */
  update(bytes: Uint8Array): void;
  /**
   * Adds `bytes` without copying them; they must not change until the returned promise
   * resolves (for large pieces, such as the chunks of a file being imported).
   */
  updateInPlace(bytes: Uint8Array): Promise<void>;
  /** The digest of everything added; the stream is finished afterwards. */
  digest(): Promise<Uint8Array>;
  /**
   * Bytes added but not hashed yet (waiting for, or on, another thread), for callers that
   * bound their memory: copied bytes stay in memory until they are hashed.
   */
  readonly pendingBytes: number;
}

/**
 * Starts a {@linkcode Sha256Stream}: libcrypto on the thread pool where available, `node:crypto`
 * otherwise (loaded on first use; bytes added meanwhile wait).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSha256Stream, sha256 } from "./sha256.ts";
 * const data = new Uint8Array(3 << 20).map((_, i) => i % 251);
 * const hash = createSha256Stream();
 * for (let off = 0; off < data.length; off += 1 << 20) {
 *   await hash.updateInPlace(data.subarray(off, off + (1 << 20)));
 * }
 * assert.equal(hash.pendingBytes, 0); // updateInPlace resolved: all of it is hashed
 * assert.deepEqual(await hash.digest(), sha256(data));
 * ```
 */
export function createSha256Stream(): Sha256Stream {
  const native = libcrypto();
  return native ? new NativeSha256Stream(native) : new NodeSha256Stream();
}

/** SHA-256 in `node:crypto`, on this thread; the module loads on first use. */
class NodeSha256Stream implements Sha256Stream {
  static #module: Promise<typeof import("node:crypto")> | null = null;
  #hash: ReturnType<typeof import("node:crypto").createHash> | null = null;
  #ready: Promise<void>;
  #waiting: Uint8Array[] = [];
  #waitingBytes = 0;
  #done = false;

  get pendingBytes(): number {
    return this.#waitingBytes;
  }

  constructor() {
    NodeSha256Stream.#module ??= import("node:crypto");
    this.#ready = NodeSha256Stream.#module.then((m) => {
      this.#hash = m.createHash("sha256");
      for (const b of this.#waiting) this.#hash.update(b);
      this.#waiting = [];
      this.#waitingBytes = 0;
    });
    this.#ready.catch(() => {});
  }

  update(bytes: Uint8Array): void {
    if (this.#done) throw new Error("SHA-256 stream already finished");
    if (this.#hash) this.#hash.update(bytes);
    else {
      this.#waiting.push(bytes.slice());
      this.#waitingBytes += bytes.length;
    }
  }

  updateInPlace(bytes: Uint8Array): Promise<void> {
    if (this.#done) return Promise.reject(new Error("SHA-256 stream already finished"));
    if (this.#hash) {
      this.#hash.update(bytes);
      return Promise.resolve();
    }
    this.#waiting.push(bytes);
    this.#waitingBytes += bytes.length;
    return this.#ready;
  }

  async digest(): Promise<Uint8Array> {
    if (this.#done) throw new Error("SHA-256 stream already finished");
    this.#done = true;
    await this.#ready;
    return new Uint8Array(this.#hash!.digest());
  }
}

/** Small updates are gathered into pieces of this size before they go to the thread pool. */
const STAGE_SIZE = 256 << 10;
/**
 * While an update runs, small updates gather up to this size, and the next update takes all of
 * them: each one's result needs a turn of this thread's event loop, so pieces of STAGE_SIZE
 * could fall behind a caller that adds more than that per turn.
 */
const STAGE_MAX = 4 << 20;
/** In-place updates smaller than this are staged (copied) too. */
const IN_PLACE_MIN = 64 << 10;

/**
 * SHA-256 in libcrypto: the updates and the digest run on Deno's blocking thread pool, one
 * after another.
 */
class NativeSha256Stream implements Sha256Stream {
  #lib: Libcrypto;
  // The SHA256_CTX, in memory that stays where it is for the life of this object.
  #ctx = new Uint8Array(SHA256_CTX_SIZE);
  #queue: { bytes: Uint8Array; resolve: () => void; reject: (e: Error) => void }[] = [];
  #running = false;
  #last: Promise<void> = Promise.resolve();
  #failed: Error | null = null;
  #stage: Uint8Array = new Uint8Array(STAGE_MAX);
  #staged = 0;
  #spare: Uint8Array[] = [];
  #queued = 0;
  #done = false;

  get pendingBytes(): number {
    return this.#queued + this.#staged;
  }

  constructor(lib: Libcrypto) {
    this.#lib = lib;
    if (lib.SHA256_Init(this.#ctx) !== 1) {
      this.#failed = new Error("libcrypto could not start a SHA-256 computation");
    }
  }

  update(bytes: Uint8Array): void {
    this.#check();
    if (bytes.length >= STAGE_SIZE) {
      this.#flush();
      this.#submit(bytes.slice()).catch(() => {}); // a failure surfaces in digest()
      return;
    }
    if (this.#staged + bytes.length > (this.#running ? STAGE_MAX : STAGE_SIZE)) this.#flush();
    this.#stage.set(bytes, this.#staged);
    this.#staged += bytes.length;
  }

  updateInPlace(bytes: Uint8Array): Promise<void> {
    this.#check();
    if (bytes.length < IN_PLACE_MIN) {
      // Copying a small piece costs less than its own round trip through the thread pool.
      this.update(bytes);
      return Promise.resolve();
    }
    this.#flush();
    return this.#submit(bytes);
  }

  async digest(): Promise<Uint8Array> {
    this.#check();
    this.#flush();
    this.#done = true;
    await this.#last.catch(() => {});
    const out = new Uint8Array(32);
    const ok = !this.#failed && await this.#lib.SHA256_Final(out, this.#ctx) === 1;
    if (!ok) throw this.#failed ?? new Error("libcrypto could not finish a SHA-256 computation");
    return out;
  }

  #check(): void {
    if (this.#done) throw new Error("SHA-256 stream already finished");
  }

  /** Sends the staged bytes on; the staging buffer comes back to the spares once hashed. */
  #flush(): void {
    if (this.#staged === 0) return;
    const stage = this.#stage;
    const piece = stage.subarray(0, this.#staged);
    this.#stage = this.#spare.pop() ?? new Uint8Array(STAGE_MAX);
    this.#staged = 0;
    this.#submit(piece).then(() => this.#spare.push(stage), () => {});
  }

  /**
   * Queues one update after the previous ones; `bytes` stays referenced until it ran. With
   * nothing in flight the call starts at once, not in a later microtask, so it runs while this
   * thread goes on with synchronous work.
   */
  #submit(bytes: Uint8Array): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#queue.push({ bytes, resolve, reject });
    this.#queued += bytes.length;
    this.#last = promise;
    if (!this.#running) this.#pump();
    return promise;
  }

  #pump(): void {
    const next = this.#queue.shift();
    this.#running = next !== undefined;
    if (!next) {
      this.#flush(); // what was staged meanwhile, in one piece
      return;
    }
    const done = () => this.#queued -= next.bytes.length;
    if (this.#failed) {
      done();
      next.reject(this.#failed);
      return this.#pump();
    }
    this.#lib.SHA256_Update(this.#ctx, next.bytes, BigInt(next.bytes.length)).then(
      (ok) => {
        done();
        if (ok !== 1) this.#failed ??= new Error("libcrypto failed to hash NAR bytes");
        if (this.#failed) next.reject(this.#failed);
        else next.resolve();
        this.#pump();
      },
      (e) => {
        done();
        this.#failed ??= e instanceof Error ? e : new Error(String(e));
        next.reject(this.#failed);
        this.#pump();
      },
    );
  }
}
