/**
 * The BLAKE3 that ships inside LLVM's shared library (`llvm_blake3_*`, LLVM 15 and later: the
 * reference C code with its SSE4.1/AVX2/AVX-512 kernels), through Deno FFI, where the system has
 * the library (Debian's `libllvm*`, which Mesa pulls in). It hashes ≈2.5x faster than our
 * WebAssembly on one core here, and its calls can run on Deno's thread pool. Loading the
 * 117 MB library costs ≈14 ms, so only callers with much to hash load it
 * ({@linkcode preloadLlvmBlake3} does it on the thread pool).
 *
 * @module
 */
import { libc } from "./libc.ts";

const SYMBOLS = {
  llvm_blake3_hasher_init: { parameters: ["buffer"], result: "void" },
  llvm_blake3_hasher_update: { parameters: ["buffer", "buffer", "usize"], result: "void" },
  llvm_blake3_hasher_finalize: { parameters: ["buffer", "buffer", "usize"], result: "void" },
  /** `llvm_blake3_hasher_update` on Deno's blocking thread pool. */
  updateAsync: {
    name: "llvm_blake3_hasher_update",
    parameters: ["buffer", "buffer", "usize"],
    result: "void",
    nonblocking: true,
  },
} as const;

/** The symbols {@linkcode llvmBlake3} gives. */
export type LlvmBlake3 = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/**
 * Bytes of an `llvm_blake3_hasher` (1,900 in `llvm-c/blake3.h`: key, chunk state, CV stack),
 * with room to spare.
 */
export const LLVM_BLAKE3_HASHER_SIZE = 2048;
/** Offset of `chunk.chunk_counter` (u64) in an `llvm_blake3_hasher`. */
export const LLVM_BLAKE3_CHUNK_COUNTER = 64;
/**
 * Offset of `cv_stack_len` (u8) in an `llvm_blake3_hasher`: after the key (32 bytes) and the
 * chunk state (107 bytes, padded to 112 for its u64).
 */
export const LLVM_BLAKE3_CV_STACK_LEN = 144;
/** Offset of `cv_stack` (32 bytes per entry) in an `llvm_blake3_hasher`. */
export const LLVM_BLAKE3_CV_STACK = 145;

// Newest first; Debian names them libLLVM-N.so.1 up to 17 and libLLVM.so.N.1 from 18 on.
const NAMES = [20, 19, 18, 17, 16, 15].flatMap((v) => [
  `libLLVM.so.${v}.1`,
  `libLLVM-${v}.so.1`,
  `libLLVM-${v}.so`,
]);

let loaded: LlvmBlake3 | null | undefined;
let loadedName = "";
let preloading: Promise<unknown> | null = null;

/**
 * LLVM's BLAKE3 symbols, or null where no LLVM library with them can be loaded (not Linux, not
 * installed, no FFI permission, or `NIXCAS_NO_NATIVE_BLAKE3` set). Decided once per process;
 * loading takes ≈14 ms on this thread unless {@linkcode preloadLlvmBlake3} ran first.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LLVM_BLAKE3_HASHER_SIZE, llvmBlake3 } from "./llvm_blake3.ts";
 * const lib = llvmBlake3();
 * if (lib) {
 *   const h = new Uint8Array(LLVM_BLAKE3_HASHER_SIZE);
 *   const out = new Uint8Array(32);
 *   lib.llvm_blake3_hasher_init(h);
 *   lib.llvm_blake3_hasher_finalize(h, out, 32n);
 *   assert.equal(out[0], 0xaf); // BLAKE3("") = af1349b9...
 * }
 * ```
 */
export function llvmBlake3(): LlvmBlake3 | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  if (!wanted()) return loaded;
  for (const name of NAMES) {
    try {
      loaded = Deno.dlopen(name, SYMBOLS).symbols;
      loadedName = name;
      break;
    } catch { /* not there, too old, or no FFI permission: try the next, or fall back */ }
  }
  return loaded;
}

function wanted(): boolean {
  if (Deno.build.os !== "linux") return false;
  try {
    return !Deno.env.get("NIXCAS_NO_NATIVE_BLAKE3");
  } catch {
    return true; // no env permission
  }
}

/**
 * Loads the LLVM library on Deno's thread pool, so that {@linkcode llvmBlake3} then finds it
 * loaded (≈1 ms instead of ≈14 on this thread). Resolves once it is loaded or known absent;
 * never rejects.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { llvmBlake3, preloadLlvmBlake3 } from "./llvm_blake3.ts";
 * await preloadLlvmBlake3();
 * const lib = llvmBlake3();
 * assert.equal(llvmBlake3(), lib); // decided once
 * ```
 */
export function preloadLlvmBlake3(): Promise<void> {
  if (loaded !== undefined || !wanted()) return Promise.resolve();
  if (!preloading) {
    preloading = (async () => {
      const RTLD_NOW = 2;
      const enc = new TextEncoder();
      // The handle is kept for the life of the process, as Deno.dlopen keeps its own.
      for (const name of NAMES) {
        const h = await libc().dlopenAsync(enc.encode(`${name}\0`), RTLD_NOW);
        if (h !== null) return;
      }
    })().catch(() => {});
  }
  return preloading.then(() => {});
}

/**
 * A worker thread hashing many byte ranges of a shared buffer with LLVM's BLAKE3, one message
 * per batch (a call on the thread pool per small blob would cost this thread more than hashing
 * it). Stop it with {@linkcode LlvmBlake3Worker.close}: it keeps the process alive.
 */
export interface LlvmBlake3Worker {
  /**
   * Hashes `buf[starts[i] .. starts[i] + sizes[i])` for each `i` and compares the digest with
   * `expected[32 i .. 32 i + 32)`; resolves with the indices that differ. `buf` must not change
   * until it settles.
   */
  check(
    buf: SharedArrayBuffer,
    starts: Float64Array,
    sizes: Float64Array,
    expected: Uint8Array,
  ): Promise<number[]>;
  /**
   * Reads `runs` (triples: position in the file `fd`, offset in `buf`, length) with `pread` on
   * the worker, then checks like {@linkcode LlvmBlake3Worker.check}: the bytes are hashed while
   * still in the cache, and this thread neither copies them nor wakes a pool thread. Rejects when
   * a read fails or comes up short (the caller reads them itself to learn why).
   */
  readAndCheck(
    fd: number,
    runs: Float64Array,
    buf: SharedArrayBuffer,
    starts: Float64Array,
    sizes: Float64Array,
    expected: Uint8Array,
  ): Promise<number[]>;
  /** Stops the worker; pending checks reject. */
  close(): void;
}

// The worker's whole program: it binds the library the main thread loaded (already in the
// process, so the binding is quick).
const WORKER_CODE = `
let lib = null;
const libc = Deno.dlopen("libc.so.6", {
  pread64: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
}).symbols;
const h = new Uint8Array(${LLVM_BLAKE3_HASHER_SIZE});
const out = new Uint8Array(32);
self.onmessage = (e) => {
  const m = e.data;
  if (m.open) {
    lib = Deno.dlopen(m.open, {
      llvm_blake3_hasher_init: { parameters: ["buffer"], result: "void" },
      llvm_blake3_hasher_update: { parameters: ["buffer", "buffer", "usize"], result: "void" },
      llvm_blake3_hasher_finalize: { parameters: ["buffer", "buffer", "usize"], result: "void" },
    }).symbols;
    return;
  }
  const view = new Uint8Array(m.buf);
  if (m.runs) {
    for (let r = 0; r < m.runs.length; r += 3) {
      for (let got = 0; got < m.runs[r + 2];) {
        const at = m.runs[r + 1] + got;
        const n = Number(libc.pread64(m.fd, view.subarray(at, m.runs[r + 1] + m.runs[r + 2]),
          BigInt(m.runs[r + 2] - got), BigInt(m.runs[r] + got)));
        if (n <= 0) {
          self.postMessage({ id: m.id, failed: true });
          return;
        }
        got += n;
      }
    }
  }
  const bad = [];
  for (let i = 0; i < m.sizes.length; i++) {
    const s = m.starts[i], n = m.sizes[i];
    lib.llvm_blake3_hasher_init(h);
    if (n > 0) lib.llvm_blake3_hasher_update(h, view.subarray(s, s + n), BigInt(n));
    lib.llvm_blake3_hasher_finalize(h, out, 32n);
    const x = m.expected;
    for (let k = 0; k < 32; k++) if (out[k] !== x[32 * i + k]) { bad.push(i); break; }
  }
  self.postMessage({ id: m.id, bad });
};
`;

/**
 * Starts an {@linkcode LlvmBlake3Worker}, or null where {@linkcode llvmBlake3} has nothing (or
 * workers cannot start). Creating it costs this thread ≈15–50 ms: for big jobs only.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { llvmBlake3, startLlvmBlake3Worker } from "./llvm_blake3.ts";
 * if (llvmBlake3()) {
 *   const w = startLlvmBlake3Worker()!;
 *   const buf = new SharedArrayBuffer(8);
 *   // BLAKE3("") = af1349b9...: the first range (empty) matches, the second does not.
 *   const expected = new Uint8Array(64);
 *   expected.set([0xaf, 0x13, 0x49, 0xb9, 0xf5, 0xf9, 0xa1, 0xa6, 0xa0, 0x40, 0x4d, 0xea, 0x36,
 *     0xdc, 0xc9, 0x49, 0x9b, 0xcb, 0x25, 0xc9, 0xad, 0xc1, 0x12, 0xb7, 0xcc, 0x9a, 0x93, 0xca,
 *     0xe4, 0x1f, 0x32, 0x62]);
 *   const bad = await w.check(buf, new Float64Array([0, 0]), new Float64Array([0, 8]), expected);
 *   assert.deepEqual(bad, [1]);
 *   w.close();
 * }
 * ```
 */
export function startLlvmBlake3Worker(): LlvmBlake3Worker | null {
  if (!llvmBlake3()) return null;
  let worker: Worker;
  try {
    const url = URL.createObjectURL(new Blob([WORKER_CODE], { type: "text/javascript" }));
    worker = new Worker(url, { type: "module" });
    URL.revokeObjectURL(url);
  } catch {
    return null;
  }
  const pending = new Map<number, { resolve(bad: number[]): void; reject(e: unknown): void }>();
  let next = 0;
  let failure: Error | null = null;
  const failAll = (e: Error) => {
    failure ??= e;
    for (const p of pending.values()) p.reject(failure);
    pending.clear();
  };
  worker.onmessage = (e: MessageEvent<{ id: number; bad?: number[]; failed?: boolean }>) => {
    const p = pending.get(e.data.id);
    pending.delete(e.data.id);
    if (e.data.failed) p?.reject(new Error("BLAKE3 worker: a read failed or came up short"));
    else p?.resolve(e.data.bad!);
  };
  worker.onerror = (e) => {
    e.preventDefault();
    failAll(new Error(`BLAKE3 worker failed: ${e.message}`));
  };
  worker.postMessage({ open: loadedName });
  return {
    check(buf, starts, sizes, expected) {
      if (failure) return Promise.reject(failure);
      const id = next++;
      return new Promise<number[]>((resolve, reject) => {
        pending.set(id, { resolve, reject });
        worker.postMessage({ id, buf, starts, sizes, expected });
      });
    },
    readAndCheck(fd, runs, buf, starts, sizes, expected) {
      if (failure) return Promise.reject(failure);
      const id = next++;
      return new Promise<number[]>((resolve, reject) => {
        pending.set(id, { resolve, reject });
        worker.postMessage({ id, fd, runs, buf, starts, sizes, expected });
      });
    },
    close() {
      failAll(new Error("BLAKE3 worker closed"));
      worker.terminate();
    },
  };
}
