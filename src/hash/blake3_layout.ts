/**
 * BLAKE3's constants and the memory layout of our WebAssembly module, shared by the runtime
 * (`blake3.ts`) and the generator that emits the module (`scripts/blake3_gen.ts`).
 *
 * @module
 */

/** Bytes per chunk: the leaves of the BLAKE3 tree. */
export const CHUNK_LEN = 1024;
/** Bytes per compressed block. */
export const BLOCK_LEN = 64;
/** Blocks per chunk. */
export const CHUNK_BLOCKS = CHUNK_LEN / BLOCK_LEN;
/** Bytes per chaining value (and of the default digest). */
export const OUT_LEN = 32;

export const CHUNK_START = 1;
export const CHUNK_END = 2;
export const PARENT = 4;
export const ROOT = 8;

/** The initial chaining value (the SHA-256 IV). */
export const IV = [
  0x6a09e667,
  0xbb67ae85,
  0x3c6ef372,
  0xa54ff53a,
  0x510e527f,
  0x9b05688c,
  0x1f83d9ab,
  0x5be0cd19,
];

/**
 * Chunks hashed per SIMD batch (a power of two ≥ 4, and a batch must hold a hasher's buffer):
 * 1 MiB of input.
 */
export const BATCH_CHUNKS = 1024;

// Memory layout. Nothing in it survives a call: per-hasher state lives in the Blake3 objects.
/** Input of a SIMD batch, or a whole input of up to a batch. */
export const IN = 0;
/** Chaining values of a batch, one tree level at a time, reduced in place. */
export const CVS = IN + BATCH_CHUNKS * CHUNK_LEN;
/** Per-lane `hash4` parameters: counter low and high words, block counts, last block lengths. */
export const LANES = CVS + BATCH_CHUNKS * OUT_LEN;
/** Input of `hash1`: one chunk, or the two children of a parent node. */
export const ONE = LANES + 64;
/** Output of `hash1`. */
export const OUT = ONE + CHUNK_LEN;
/** Where the odd chaining value of a tree level waits while the level is reduced. */
export const SPARE = OUT + OUT_LEN;
export const MEMORY_END = SPARE + OUT_LEN;
