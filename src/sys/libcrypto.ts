/**
 * OpenSSL's libcrypto through Deno FFI: the low-level SHA-256 functions, loaded where the
 * system has them (Linux), and {@linkcode preloadLibcrypto} to load the library on Deno's
 * thread pool before its first use.
 *
 * @module
 */
import { libc } from "./libc.ts";

const SYMBOLS = {
  // The low-level API on a context in our own memory: no context to allocate, no provider to
  // set up (OpenSSL 3 does that in the first EVP_DigestInit_ex, ≈1.5 ms on the thread pool),
  // so the first update goes to the pool at once instead of after three round trips, each
  // waiting for this thread to reach its event loop. Same SHA-NI code as EVP underneath.
  // SHA256_Init runs here (it only stores the initial state); the rest on the thread pool.
  SHA256_Init: { parameters: ["buffer"], result: "i32" },
  SHA256_Update: { parameters: ["buffer", "buffer", "usize"], result: "i32", nonblocking: true },
  SHA256_Final: { parameters: ["buffer", "buffer"], result: "i32", nonblocking: true },
} as const;

/** Bytes of a `SHA256_CTX` (112 in every OpenSSL since 0.9.8), with room to spare. */
export const SHA256_CTX_SIZE = 256;

/** The libcrypto symbols {@linkcode libcrypto} gives. */
export type Libcrypto = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

const NAMES = ["libcrypto.so.3", "libcrypto.so.1.1"];

let loaded: Libcrypto | null | undefined;
let preloading: Promise<unknown> | null = null;

/**
 * libcrypto's symbols, or null where it cannot be loaded (not Linux, not installed, no FFI
 * permission, or `NIXCAS_NO_LIBCRYPTO` set): then the caller hashes some other way. Decided
 * once per process.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { libcrypto, SHA256_CTX_SIZE } from "./libcrypto.ts";
 * const lib = libcrypto();
 * if (lib) {
 *   const ctx = new Uint8Array(SHA256_CTX_SIZE);
 *   const out = new Uint8Array(32);
 *   assert.equal(lib.SHA256_Init(ctx), 1);
 *   assert.equal(await lib.SHA256_Update(ctx, new TextEncoder().encode("abc"), 3n), 1);
 *   assert.equal(await lib.SHA256_Final(out, ctx), 1);
 *   assert.equal(out[0], 0xba); // SHA-256("abc") = ba7816bf...
 * }
 * ```
 */
export function libcrypto(): Libcrypto | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  if (!wanted()) return loaded;
  for (const name of NAMES) {
    try {
      loaded = Deno.dlopen(name, SYMBOLS).symbols;
      break;
    } catch { /* not there, or no FFI permission: try the next, or fall back */ }
  }
  return loaded;
}

/** Only on Linux (macOS aborts processes that load its unversioned libcrypto), unless disabled. */
function wanted(): boolean {
  if (Deno.build.os !== "linux") return false;
  try {
    return !Deno.env.get("NIXCAS_NO_LIBCRYPTO");
  } catch {
    return true; // no env permission
  }
}

/**
 * Starts loading libcrypto on Deno's thread pool, so that the first {@linkcode libcrypto} call
 * finds it loaded instead of loading it on this thread (≈5 ms). For callers that know hashing
 * will follow, such as an import about to open its store. Does nothing where libcrypto is not
 * used.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { libcrypto, preloadLibcrypto, SHA256_CTX_SIZE } from "./libcrypto.ts";
 * preloadLibcrypto();
 * // ... other start-up work runs meanwhile ...
 * const lib = libcrypto();
 * // Decided once: preloading only moves the loading off this thread.
 * assert.equal(libcrypto(), lib);
 * if (lib) assert.equal(lib.SHA256_Init(new Uint8Array(SHA256_CTX_SIZE)), 1);
 * ```
 */
export function preloadLibcrypto(): void {
  if (loaded !== undefined || preloading || !wanted()) return;
  try {
    const RTLD_NOW = 2;
    // The handle is kept for the life of the process, as Deno.dlopen keeps its own.
    preloading = libc().dlopenAsync(new TextEncoder().encode(`${NAMES[0]}\0`), RTLD_NOW)
      .catch(() => null);
  } catch { /* no FFI permission: libcrypto() decides later */ }
}
