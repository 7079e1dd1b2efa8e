/**
 * BLAKE3 in native code where the system has it (LLVM's copy of the reference C code, see
 * `sys/llvm_blake3.ts`): ≈4.5 GB/s on one core here against ≈1.7–2.2 GB/s for our WebAssembly,
 * and it can run on Deno's thread pool. Off until {@linkcode enableNativeBlake3} is called, by
 * callers about to hash a lot (loading the library costs ≈14 ms of the thread pool). Checked
 * against our WebAssembly code when it loads: any difference and it stays off.
 *
 * @module
 */
import {
  LLVM_BLAKE3_CHUNK_COUNTER,
  LLVM_BLAKE3_CV_STACK,
  LLVM_BLAKE3_CV_STACK_LEN,
  LLVM_BLAKE3_HASHER_SIZE,
  type LlvmBlake3,
  llvmBlake3,
  preloadLlvmBlake3,
} from "../sys/llvm_blake3.ts";
import { blake3Hash, parentCV, subtreeCV } from "./blake3.ts";

/** BLAKE3 functions backed by native code. */
export interface NativeBlake3 {
  /** The digest of `data`, on this thread. */
  hash(data: Uint8Array): Uint8Array;
  /** {@linkcode subtreeCV} of a 1 MiB window starting at chunk `counter`, on this thread. */
  windowCV(data: Uint8Array, counter: number): Uint8Array;
  /** {@linkcode NativeBlake3.windowCV} on Deno's thread pool; `data` must not change meanwhile. */
  windowCVAsync(data: Uint8Array, counter: number): Promise<Uint8Array>;
}

/** Bytes of the windows {@linkcode NativeBlake3.windowCV} takes: 1,024 chunks. */
export const WINDOW = 1 << 20;

let active: NativeBlake3 | null = null;
let enabling: Promise<boolean> | null = null;

/**
 * The native functions once {@linkcode enableNativeBlake3} has succeeded, else null (hash with
 * `blake3.ts` then).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { blake3Hash } from "./blake3.ts";
 * import { enableNativeBlake3, nativeBlake3 } from "./blake3_native.ts";
 * if (await enableNativeBlake3()) {
 *   const data = new Uint8Array(100_000).fill(7);
 *   assert.deepEqual(nativeBlake3()!.hash(data), blake3Hash(data));
 * }
 * ```
 */
export function nativeBlake3(): NativeBlake3 | null {
  return active;
}

/**
 * Loads native BLAKE3 (on the thread pool) and switches it on for {@linkcode nativeBlake3};
 * resolves whether it is on. Safe to call many times.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { enableNativeBlake3, nativeBlake3 } from "./blake3_native.ts";
 * const on = await enableNativeBlake3();
 * assert.equal(nativeBlake3() !== null, on);
 * ```
 */
export function enableNativeBlake3(): Promise<boolean> {
  enabling ??= preloadLlvmBlake3().then(() => {
    const lib = llvmBlake3();
    if (!lib) return false;
    const native = bind(lib);
    if (!selfTest(native)) return false;
    active = native;
    return true;
  }).catch(() => false);
  return enabling;
}

function bind(lib: LlvmBlake3): NativeBlake3 {
  const h = new Uint8Array(LLVM_BLAKE3_HASHER_SIZE);
  const out = new Uint8Array(32);
  // Hashers for calls on the thread pool, reused once their call returned.
  const idle: Uint8Array[] = [];
  const start = (state: Uint8Array, counter: number) => {
    lib.llvm_blake3_hasher_init(state);
    new DataView(state.buffer, state.byteOffset).setBigUint64(
      LLVM_BLAKE3_CHUNK_COUNTER,
      BigInt(counter),
      true,
    );
  };
  // After a whole aligned 1 MiB subtree, the hasher holds its two halves' CVs on its stack (it
  // keeps the top unmerged: it might be the root); their parent is the window's CV.
  const finish = (state: Uint8Array) => {
    if (state[LLVM_BLAKE3_CV_STACK_LEN] !== 2) throw new Error("native BLAKE3: unexpected state");
    return parentCV(state.subarray(LLVM_BLAKE3_CV_STACK, LLVM_BLAKE3_CV_STACK + 64));
  };
  const checkWindow = (data: Uint8Array, counter: number) => {
    if (data.length !== WINDOW || counter % 1024 !== 0) {
      throw new RangeError(`windowCV: ${data.length} bytes at chunk ${counter}`);
    }
  };
  return {
    hash(data) {
      lib.llvm_blake3_hasher_init(h);
      lib.llvm_blake3_hasher_update(h, data, BigInt(data.length));
      lib.llvm_blake3_hasher_finalize(h, out, 32n);
      return out.slice();
    },
    windowCV(data, counter) {
      checkWindow(data, counter);
      start(h, counter);
      lib.llvm_blake3_hasher_update(h, data, BigInt(data.length));
      return finish(h);
    },
    async windowCVAsync(data, counter) {
      checkWindow(data, counter);
      const state = idle.pop() ?? new Uint8Array(LLVM_BLAKE3_HASHER_SIZE);
      try {
        start(state, counter);
        await lib.updateAsync(state, data, BigInt(data.length));
        return finish(state);
      } finally {
        idle.push(state);
      }
    },
  };
}

/**
 * The native code must agree with ours (the digest, and the struct layout the CVs rely on).
 * Kept small: it runs on this thread, while an importer may be waiting for its first chunks.
 */
function selfTest(native: NativeBlake3): boolean {
  try {
    const words = new Uint32Array(WINDOW / 4);
    let x = 0x9e3779b9;
    for (let i = 0; i < words.length; i++) words[i] = x = Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + i;
    const data = new Uint8Array(words.buffer);
    const same = (a: Uint8Array, b: Uint8Array) => a.every((v, i) => v === b[i]);
    const part = data.subarray(0, 5000); // several chunks and a partial one: the tree
    return same(native.hash(part), blake3Hash(part)) &&
      same(native.windowCV(data, 1024), subtreeCV(data, 1024));
  } catch {
    return false;
  }
}
