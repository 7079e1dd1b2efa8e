/**
 * BLAKE3 (32-byte default hash mode) with WebAssembly SIMD.
 *
 * The heavy lifting is a wasm function that compresses four independent inputs at once, one per
 * 32-bit lane of the v128 registers (the reference implementation's `hash4`/`hash_many` design):
 * four whole 1 KiB chunks, or four parent nodes. A run of 2^k chunks is reduced to its two top
 * chaining values inside the shared wasm memory, level by level, so big inputs stay on the fast
 * path. A variant lets each lane stop after its own number of blocks, so that the last, partial
 * chunk of an input shares a call with full ones. Lone chunks and the parents along the right
 * edge of the tree use a scalar wasm function generated from the same code.
 *
 * The wasm binary is emitted from TypeScript when this module loads (a few hundred lines of
 * emitter instead of a checked-in artifact), so the module works bundled or imported by URL.
 *
 * @example
 * ```ts
 * import { Blake3, blake3Hash } from "./blake3.ts";
 * const data = new TextEncoder().encode("hello");
 * const h = new Blake3().update(data.subarray(0, 2)).update(data.subarray(2)).digest();
 * console.log(h.join() === blake3Hash(data).join()); // true
 * ```
 *
 * @module
 */

// ---------------------------------------------------------------------------------------------
// BLAKE3 constants
// ---------------------------------------------------------------------------------------------

/** Bytes per chunk: the leaves of the BLAKE3 tree. */
const CHUNK_LEN = 1024;
/** Bytes per compressed block. */
const BLOCK_LEN = 64;
/** Blocks per chunk. */
const CHUNK_BLOCKS = CHUNK_LEN / BLOCK_LEN;
/** Bytes per chaining value (and of the default digest). */
const OUT_LEN = 32;

const CHUNK_START = 1;
const CHUNK_END = 2;
const PARENT = 4;
const ROOT = 8;

/** The initial chaining value (the SHA-256 IV). */
const IV = [
  0x6a09e667,
  0xbb67ae85,
  0x3c6ef372,
  0xa54ff53a,
  0x510e527f,
  0x9b05688c,
  0x1f83d9ab,
  0x5be0cd19,
];

/** How the message words are permuted between rounds. */
const MSG_PERMUTATION = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];

/**
 * For each of the 7 rounds, which original message word sits at each position. Precomputed so
 * the generated code reads the right word directly instead of permuting at run time.
 */
const SCHEDULE: number[][] = (() => {
  const rounds = [Array.from({ length: 16 }, (_, i) => i)];
  for (let r = 1; r < 7; r++) rounds.push(MSG_PERMUTATION.map((i) => rounds[r - 1][i]));
  return rounds;
})();

// ---------------------------------------------------------------------------------------------
// A minimal WebAssembly binary emitter
// ---------------------------------------------------------------------------------------------

const I32 = 0x7f;
const V128 = 0x7b;

/** Unsigned LEB128. */
function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    const byte = n & 0x7f;
    n >>>= 7;
    out.push(n === 0 ? byte : byte | 0x80);
  } while (n !== 0);
  return out;
}

/** Signed LEB128 of a 32-bit integer. */
function sleb(n: number): number[] {
  const out: number[] = [];
  n |= 0;
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

/** Concatenates byte arrays (with a loop: spreading large arrays is slow). */
function concat(...parts: number[][]): number[] {
  const out: number[] = [];
  for (const part of parts) for (const b of part) out.push(b);
  return out;
}

/** The bytes of a wasm `vec`: a length, then the items. */
function vec(items: number[][]): number[] {
  return concat(uleb(items.length), ...items);
}

/** A wasm name (ASCII only here). */
function name(s: string): number[] {
  return vec([...s].map((c) => [c.charCodeAt(0)]));
}

/** One function body under construction: its locals and its instruction bytes. */
class FnBuilder {
  readonly #code: number[] = [];
  readonly #locals: number[] = [];
  readonly params: number[];

  constructor(params: number[]) {
    this.params = params;
  }

  /** Declares a local of `type` and returns its index. */
  local(type: number): number {
    this.#locals.push(type);
    return this.params.length + this.#locals.length - 1;
  }

  /** Declares `n` locals of `type`. */
  locals(type: number, n: number): number[] {
    return Array.from({ length: n }, () => this.local(type));
  }

  /** Appends raw instruction bytes. */
  op(...bytes: number[]): this {
    for (const b of bytes) this.#code.push(b);
    return this;
  }

  /** `local.get i` */
  get(i: number): this {
    return this.op(0x20, ...uleb(i));
  }

  /** `local.set i` */
  set(i: number): this {
    return this.op(0x21, ...uleb(i));
  }

  /** `local.tee i` */
  tee(i: number): this {
    return this.op(0x22, ...uleb(i));
  }

  /** `i32.const n` */
  i32(n: number): this {
    return this.op(0x41, ...sleb(n));
  }

  /** A SIMD (0xFD-prefixed) instruction followed by its immediates. */
  simd(code: number, ...imm: number[]): this {
    return this.op(0xfd, ...uleb(code), ...imm);
  }

  /** The `code` section entry: size, run-length encoded locals, instructions, `end`. */
  encode(): number[] {
    const groups: number[][] = [];
    for (let i = 0; i < this.#locals.length;) {
      let j = i;
      while (j < this.#locals.length && this.#locals[j] === this.#locals[i]) j++;
      groups.push([...uleb(j - i), this.#locals[i]]);
      i = j;
    }
    const body = concat(vec(groups), this.#code, [0x0b]);
    return concat(uleb(body.length), body);
  }
}

// Opcodes (core and 0xFD-prefixed SIMD, final SIMD numbering).
const OP = {
  loop: 0x03,
  end: 0x0b,
  brIf: 0x0d,
  select: 0x1b,
  i32Load: 0x28,
  i32Store: 0x36,
  i32Eqz: 0x45,
  i32Eq: 0x46,
  i32LtU: 0x49,
  i32Add: 0x6a,
  i32Mul: 0x6c,
  i32Or: 0x72,
  i32Xor: 0x73,
  i32Rotr: 0x78,
} as const;
/** The block type of a `loop` that takes and leaves nothing on the stack. */
const EMPTY_BLOCK = 0x40;
const SIMD = {
  load: 0x00,
  store: 0x0b,
  shuffle: 0x0d,
  i32x4Splat: 0x11,
  i32x4Eq: 0x37,
  i32x4GtS: 0x3b,
  and: 0x4e,
  or: 0x50,
  xor: 0x51,
  bitselect: 0x52,
  i32x4Shl: 0xab,
  i32x4ShrU: 0xad,
  i32x4Add: 0xae,
} as const;

/** `i8x16.shuffle` immediates selecting 32-bit words: 0–3 from the first operand, 4–7 the second. */
function wordShuffle(words: number[]): number[] {
  return words.flatMap((w) => [4 * w, 4 * w + 1, 4 * w + 2, 4 * w + 3]);
}

/** `i8x16.shuffle` immediates rotating each 32-bit lane right by `bytes` whole bytes. */
function byteRotation(bytes: number): number[] {
  return Array.from({ length: 16 }, (_, j) => (j & ~3) | ((j + bytes) & 3));
}
const ROTATE_8 = byteRotation(1);
const ROTATE_16 = byteRotation(2);

/**
 * The arithmetic the compression function needs, for one lane type: plain i32 (one input) or
 * v128 with one input per 32-bit lane.
 */
interface Lanes {
  add(f: FnBuilder): void;
  xor(f: FnBuilder): void;
  /** Rotates the value on the stack right by `n` bits (`tmp` is a scratch local). */
  rotr(f: FnBuilder, n: number, tmp: number): void;
  /** Pushes `value` in every lane. */
  constant(f: FnBuilder, value: number): void;
}

const SCALAR: Lanes = {
  add: (f) => f.op(OP.i32Add),
  xor: (f) => f.op(OP.i32Xor),
  rotr: (f, n) => f.i32(n).op(OP.i32Rotr),
  constant: (f, value) => f.i32(value),
};

const VECTOR: Lanes = {
  add: (f) => f.simd(SIMD.i32x4Add),
  xor: (f) => f.simd(SIMD.xor),
  rotr(f, n, tmp) {
    f.tee(tmp);
    if (n === 8 || n === 16) {
      // Whole-byte rotations are a single byte shuffle (pshufb) instead of shift+shift+or.
      f.get(tmp).simd(SIMD.shuffle, ...(n === 8 ? ROTATE_8 : ROTATE_16));
    } else {
      f.i32(n).simd(SIMD.i32x4ShrU).get(tmp).i32(32 - n).simd(SIMD.i32x4Shl).simd(SIMD.or);
    }
  },
  constant: (f, value) => f.i32(value).simd(SIMD.i32x4Splat),
};

/**
 * Emits one round (columns, then diagonals) on the state locals `v`. `msg(k)` pushes message
 * word k. The four quarter-rounds of each half are emitted step-interleaved, like the reference
 * SIMD code, so independent operations sit next to each other.
 */
function emitRound(
  f: FnBuilder,
  lanes: Lanes,
  v: number[],
  words: number[],
  msg: (k: number) => void,
  tmp: number,
): void {
  const halves = [
    [[0, 4, 8, 12], [1, 5, 9, 13], [2, 6, 10, 14], [3, 7, 11, 15]],
    [[0, 5, 10, 15], [1, 6, 11, 12], [2, 7, 8, 13], [3, 4, 9, 14]],
  ];
  halves.forEach((quads, half) => {
    const steps = quads.map(([a, b, c, d], i) =>
      quarterRoundSteps(
        f,
        lanes,
        v[a],
        v[b],
        v[c],
        v[d],
        () => msg(words[8 * half + 2 * i]),
        () => msg(words[8 * half + 2 * i + 1]),
        tmp,
      )
    );
    for (let s = 0; s < steps[0].length; s++) for (const quad of steps) quad[s]();
  });
}

/** The BLAKE3 `G` function on locals a, b, c, d, split into its eight steps. */
function quarterRoundSteps(
  f: FnBuilder,
  lanes: Lanes,
  a: number,
  b: number,
  c: number,
  d: number,
  x: () => void,
  y: () => void,
  tmp: number,
): (() => void)[] {
  const addMsg = (m: () => void) => () => {
    f.get(a).get(b);
    lanes.add(f);
    m();
    lanes.add(f);
    f.set(a);
  };
  const mix = (dst: number, src: number, rot: number) => () => {
    f.get(dst).get(src);
    lanes.xor(f);
    lanes.rotr(f, rot, tmp);
    f.set(dst);
  };
  const accumulate = () => {
    f.get(c).get(d);
    lanes.add(f);
    f.set(c);
  };
  return [
    addMsg(x),
    mix(d, a, 16),
    accumulate,
    mix(b, c, 12),
    addMsg(y),
    mix(d, a, 8),
    accumulate,
    mix(b, c, 7),
  ];
}

/**
 * Emits the compression of one block into the chaining value held in `v[0..8]`: initialises
 * `v[8..16]` (the counter, block length and flags are pushed by the callbacks), runs 7 rounds,
 * and folds the result back into `v[0..8]`.
 */
function emitCompress(
  f: FnBuilder,
  lanes: Lanes,
  v: number[],
  init: { counterLo(): void; counterHi(): void; blockLen(): void; flags(): void },
  msg: (k: number) => void,
  tmp: number,
): void {
  for (let i = 0; i < 4; i++) {
    lanes.constant(f, IV[i]);
    f.set(v[8 + i]);
  }
  init.counterLo();
  f.set(v[12]);
  init.counterHi();
  f.set(v[13]);
  init.blockLen();
  f.set(v[14]);
  init.flags();
  f.set(v[15]);
  for (const words of SCHEDULE) emitRound(f, lanes, v, words, msg, tmp);
  for (let i = 0; i < 8; i++) {
    f.get(v[i]).get(v[i + 8]);
    lanes.xor(f);
    f.set(v[i]);
  }
}

/** Pushes 1 if block `blk` (a local) is the last of `n` (a local), else 0. */
function emitIsLast(f: FnBuilder, blk: number, n: number): void {
  f.get(blk).i32(1).op(OP.i32Add).get(n).op(OP.i32Eq);
}

/** Pushes the flags every block gets (`all`), plus `first` if block `blk` is block 0. */
function emitStartFlags(f: FnBuilder, blk: number, all: number, first: number): void {
  f.get(all).get(first).i32(0).get(blk).op(OP.i32Eqz, OP.select, OP.i32Or);
}

/** Pushes the flags of block `blk` of `n`: `all`, plus `first` on block 0 and `last` on n-1. */
function emitBlockFlags(
  f: FnBuilder,
  blk: number,
  n: number,
  all: number,
  first: number,
  last: number,
): void {
  emitStartFlags(f, blk, all, first);
  f.get(last).i32(0);
  emitIsLast(f, blk, n);
  f.op(OP.select, OP.i32Or);
}

/**
 * `hash1(in, nBlocks, lastLen, ctrLo, ctrHi, flagsAll, flagsFirst, flagsLast, out)`: compresses
 * `nBlocks` consecutive blocks at `in` (the last one `lastLen` bytes, zero padded) starting from
 * the IV, and stores the 32-byte chaining value at `out`. A chunk or a parent node, one at a time.
 */
function buildHash1(): FnBuilder {
  const f = new FnBuilder(Array(9).fill(I32));
  const [input, nBlocks, lastLen, ctrLo, ctrHi, all, first, last, out] = f.params.keys();
  const blk = f.local(I32);
  const v = f.locals(I32, 16);
  const tmp = f.local(I32);
  for (let i = 0; i < 8; i++) f.i32(IV[i]).set(v[i]);
  f.op(OP.loop, EMPTY_BLOCK);
  emitCompress(
    f,
    SCALAR,
    v,
    {
      counterLo: () => f.get(ctrLo),
      counterHi: () => f.get(ctrHi),
      blockLen: () => {
        f.get(lastLen).i32(BLOCK_LEN);
        emitIsLast(f, blk, nBlocks);
        f.op(OP.select);
      },
      flags: () => emitBlockFlags(f, blk, nBlocks, all, first, last),
    },
    (k) => f.get(input).op(OP.i32Load, 2, ...uleb(4 * k)),
    tmp,
  );
  f.get(input).i32(BLOCK_LEN).op(OP.i32Add).set(input);
  f.get(blk).i32(1).op(OP.i32Add).tee(blk).get(nBlocks).op(OP.i32LtU, OP.brIf, 0);
  f.op(OP.end);
  for (let i = 0; i < 8; i++) f.get(out).get(v[i]).op(OP.i32Store, 2, ...uleb(4 * i));
  return f;
}

/**
 * Emits a 4×4 transpose of 32-bit words: `out[j]` lane i = `rows[i]` lane j. Four 2-operand
 * shuffles interleave word pairs, four more interleave the 64-bit halves (unpck*ps/pd on x86).
 */
function emitTranspose(f: FnBuilder, rows: number[], out: number[], t: number[]): void {
  const shuffle = (a: number, b: number, words: number[], dst: number) =>
    f.get(a).get(b).simd(SIMD.shuffle, ...wordShuffle(words)).set(dst);
  shuffle(rows[0], rows[1], [0, 4, 1, 5], t[0]);
  shuffle(rows[0], rows[1], [2, 6, 3, 7], t[1]);
  shuffle(rows[2], rows[3], [0, 4, 1, 5], t[2]);
  shuffle(rows[2], rows[3], [2, 6, 3, 7], t[3]);
  shuffle(t[0], t[2], [0, 1, 4, 5], out[0]);
  shuffle(t[0], t[2], [2, 3, 6, 7], out[1]);
  shuffle(t[1], t[3], [0, 1, 4, 5], out[2]);
  shuffle(t[1], t[3], [2, 3, 6, 7], out[3]);
}

/**
 * `hash4(in, stride, nBlocks, flagsAll, flagsFirst, flagsLast, out, lanes)`: four independent
 * hashes at once, lane i reading `nBlocks` full blocks at `in + i * stride`. `lanes` points to
 * the per-lane counters: a vector of low words, then one of high words. The four 32-byte chaining
 * values are stored contiguously at `out`. With stride 1024 and 16 blocks these are four chunks;
 * with stride 64 and one block (flag PARENT, counter 0) four parent nodes whose children are
 * consecutive CVs, so a tree level is reduced in place.
 *
 * With `ragged`, the function is `hash4ragged`: lane i hashes only its own number of blocks (the
 * third vector at `lanes`), the last of which has the length in the fourth vector (zero padded)
 * and gets `flagsLast`; `nBlocks` is the largest count. Finished lanes keep their result while
 * the others go on. This lets the last, partial chunk of an input share a call with full ones.
 */
function buildHash4(ragged: boolean): FnBuilder {
  const f = new FnBuilder(Array(8).fill(I32));
  const [input, stride, nBlocks, all, first, last, out, lanes] = f.params.keys();
  const blk = f.local(I32);
  const lane = f.locals(I32, 4);
  const v = f.locals(V128, 16);
  const m = f.locals(V128, 16);
  const rows = f.locals(V128, 4);
  const t = f.locals(V128, 4);
  const tmp = f.local(V128);
  const [laneBlocks, laneLastLen, isLast] = f.locals(V128, 3);
  const saved = f.locals(V128, ragged ? 8 : 0);
  for (let i = 0; i < 4; i++) f.get(input).get(stride).i32(i).op(OP.i32Mul, OP.i32Add).set(lane[i]);
  for (let i = 0; i < 8; i++) {
    VECTOR.constant(f, IV[i]);
    f.set(v[i]);
  }
  if (ragged) {
    f.get(lanes).simd(SIMD.load, 4, 32).set(laneBlocks);
    f.get(lanes).simd(SIMD.load, 4, 48).set(laneLastLen);
  }
  f.op(OP.loop, EMPTY_BLOCK);
  // Transpose the block so that vector m[k] holds word k of all four inputs.
  for (let k = 0; k < 4; k++) {
    for (let i = 0; i < 4; i++) f.get(lane[i]).simd(SIMD.load, 4, ...uleb(16 * k)).set(rows[i]);
    emitTranspose(f, rows, m.slice(4 * k, 4 * k + 4), t);
  }
  if (ragged) {
    // isLast: all ones in the lanes for which this block is the last.
    f.get(blk).i32(1).op(OP.i32Add).simd(SIMD.i32x4Splat).get(laneBlocks).simd(SIMD.i32x4Eq);
    f.set(isLast);
    for (let i = 0; i < 8; i++) f.get(v[i]).set(saved[i]);
  }
  emitCompress(
    f,
    VECTOR,
    v,
    {
      counterLo: () => f.get(lanes).simd(SIMD.load, 4, 0),
      counterHi: () => f.get(lanes).simd(SIMD.load, 4, 16),
      blockLen: () => {
        if (!ragged) return VECTOR.constant(f, BLOCK_LEN);
        f.get(laneLastLen);
        VECTOR.constant(f, BLOCK_LEN);
        f.get(isLast).simd(SIMD.bitselect);
      },
      flags: () => {
        if (!ragged) {
          emitBlockFlags(f, blk, nBlocks, all, first, last);
          f.simd(SIMD.i32x4Splat);
          return;
        }
        // CHUNK_END goes to the lanes at their last block only.
        emitStartFlags(f, blk, all, first);
        f.simd(SIMD.i32x4Splat).get(last).simd(SIMD.i32x4Splat).get(isLast).simd(SIMD.and);
        f.simd(SIMD.or);
      },
    },
    (k) => f.get(m[k]),
    tmp,
  );
  if (ragged) {
    // Lanes whose input has ended (blk >= their block count) keep the state they had.
    f.get(laneBlocks).get(blk).simd(SIMD.i32x4Splat).simd(SIMD.i32x4GtS).set(tmp);
    for (let i = 0; i < 8; i++) f.get(v[i]).get(saved[i]).get(tmp).simd(SIMD.bitselect).set(v[i]);
  }
  for (let i = 0; i < 4; i++) f.get(lane[i]).i32(BLOCK_LEN).op(OP.i32Add).set(lane[i]);
  f.get(blk).i32(1).op(OP.i32Add).tee(blk).get(nBlocks).op(OP.i32LtU, OP.brIf, 0);
  f.op(OP.end);
  // Transpose back: v[0..8] lane i is word 0..8 of chaining value i.
  for (let half = 0; half < 2; half++) {
    emitTranspose(f, v.slice(4 * half, 4 * half + 4), rows, t);
    for (let i = 0; i < 4; i++) {
      f.get(out).get(rows[i]).simd(SIMD.store, 4, ...uleb(OUT_LEN * i + 16 * half));
    }
  }
  return f;
}

/** Assembles the module: the three functions and one memory of `pages` 64 KiB pages, all exported. */
function buildModule(pages: number): Uint8Array<ArrayBuffer> {
  const fns = [buildHash1(), buildHash4(false), buildHash4(true)];
  const section = (id: number, content: number[]) => concat([id], uleb(content.length), content);
  const bytes = concat(
    [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    section(1, vec(fns.map((fn) => concat([0x60], vec(fn.params.map((p) => [p])), [0])))),
    section(3, vec(fns.map((_, i) => uleb(i)))),
    section(5, vec([concat([0x00], uleb(pages))])),
    section(
      7,
      vec([
        [...name("hash1"), 0x00, 0],
        [...name("hash4"), 0x00, 1],
        [...name("hash4ragged"), 0x00, 2],
        [...name("memory"), 0x02, 0],
      ]),
    ),
    section(10, vec(fns.map((fn) => fn.encode()))),
  );
  return new Uint8Array(bytes);
}

// ---------------------------------------------------------------------------------------------
// The shared wasm instance: a scratch area used synchronously inside each call
// ---------------------------------------------------------------------------------------------

/**
 * Chunks hashed per SIMD batch (a power of two ≥ 4, and a batch must hold a hasher's buffer):
 * 1 MiB of input.
 */
const BATCH_CHUNKS = 1024;

// Memory layout. Nothing in it survives a call: per-hasher state lives in the Blake3 objects.
/** Input of a SIMD batch, or a whole input of up to a batch. */
const IN = 0;
/** Chaining values of a batch, one tree level at a time, reduced in place. */
const CVS = IN + BATCH_CHUNKS * CHUNK_LEN;
/** Per-lane `hash4` parameters: counter low and high words, block counts, last block lengths. */
const LANES = CVS + BATCH_CHUNKS * OUT_LEN;
/** Input of `hash1`: one chunk, or the two children of a parent node. */
const ONE = LANES + 64;
/** Output of `hash1`. */
const OUT = ONE + CHUNK_LEN;
/** Where the odd chaining value of a tree level waits while the level is reduced. */
const SPARE = OUT + OUT_LEN;
const MEMORY_END = SPARE + OUT_LEN;

interface Exports {
  hash1(
    input: number,
    nBlocks: number,
    lastLen: number,
    ctrLo: number,
    ctrHi: number,
    flagsAll: number,
    flagsFirst: number,
    flagsLast: number,
    out: number,
  ): void;
  hash4(
    input: number,
    stride: number,
    nBlocks: number,
    flagsAll: number,
    flagsFirst: number,
    flagsLast: number,
    out: number,
    lanes: number,
  ): void;
  hash4ragged: Exports["hash4"];
  memory: WebAssembly.Memory;
}

const wasm = new WebAssembly.Instance(
  new WebAssembly.Module(buildModule(Math.ceil(MEMORY_END / 65536))),
).exports as unknown as Exports;
// The memory never grows, so these views stay valid.
const mem = new Uint8Array(wasm.memory.buffer);
const lanes = new Uint32Array(wasm.memory.buffer, LANES, 16);

const TWO_32 = 2 ** 32;

/** Number of set bits of a chunk count (< 2^53). */
function popcount(n: number): number {
  let bits = 0;
  for (let x = n; x > 0; x = Math.floor(x / 2)) bits += x % 2;
  return bits;
}

/**
 * Hashes `src` (at most one chunk) as chunk number `counter` into `OUT`. With `ROOT` in `last`
 * the result is the digest of a one-chunk input.
 */
function hashChunk(src: Uint8Array, counter: number, last: number): void {
  const nBlocks = Math.max(1, Math.ceil(src.length / BLOCK_LEN));
  mem.set(src, ONE);
  mem.fill(0, ONE + src.length, ONE + nBlocks * BLOCK_LEN);
  wasm.hash1(
    ONE,
    nBlocks,
    src.length - (nBlocks - 1) * BLOCK_LEN,
    counter >>> 0,
    Math.floor(counter / TWO_32),
    0,
    CHUNK_START,
    CHUNK_END | last,
    OUT,
  );
}

/** Hashes the parent node whose two children are the 64 bytes at `ONE`, into `OUT`. */
function hashParent(flags: number): void {
  wasm.hash1(ONE, 1, BLOCK_LEN, 0, 0, PARENT | flags, 0, 0, OUT);
}

/** Sets the `hash4` lane counters to `first`, `first + step`, … (`step` 1 for chunks, 0). */
function setCounters(first: number, step: number): void {
  for (let i = 0; i < 4; i++) {
    const c = first + i * step;
    lanes[i] = c >>> 0;
    lanes[4 + i] = Math.floor(c / TWO_32);
  }
}

/**
 * A 4-lane call costs about as much as this many single-lane blocks (measured: ~140 vs ~78 ns),
 * so two chunks where the second is short are cheaper one after the other.
 */
const LANE_CALL_COST = 1.8;

/** Hashes chunk `j` at `IN` (`len` bytes, zero padded) alone into its slot at `CVS`. */
function hashLeafAlone(j: number, len: number, counter: number): void {
  const blocks = Math.ceil(len / BLOCK_LEN);
  const c = counter + j;
  wasm.hash1(
    IN + j * CHUNK_LEN,
    blocks,
    len - (blocks - 1) * BLOCK_LEN,
    c >>> 0,
    Math.floor(c / TWO_32),
    0,
    CHUNK_START,
    CHUNK_END,
    CVS + j * OUT_LEN,
  );
}

/**
 * Hashes the `n` chunks of the `len` bytes at `IN` (zero padded to a whole block), the first
 * being chunk number `counter`, into `n` chaining values at `CVS`. None of them is the root.
 */
function hashLeaves(len: number, n: number, counter: number): void {
  const lastLen = len - (n - 1) * CHUNK_LEN;
  const lastBlocks = Math.ceil(lastLen / BLOCK_LEN);
  for (let i = 0; i < n; i += 4) {
    const input = IN + i * CHUNK_LEN;
    const out = CVS + i * OUT_LEN;
    const count = Math.min(4, n - i);
    setCounters(counter + i, 1);
    if ((i + 4) * CHUNK_LEN <= len) {
      // Four full chunks.
      wasm.hash4(input, CHUNK_LEN, CHUNK_BLOCKS, 0, CHUNK_START, CHUNK_END, out, LANES);
    } else if (
      count === 1 || (count === 2 && CHUNK_BLOCKS + lastBlocks < LANE_CALL_COST * CHUNK_BLOCKS)
    ) {
      for (let j = i; j < n; j++) hashLeafAlone(j, j < n - 1 ? CHUNK_LEN : lastLen, counter);
    } else {
      // The last 2–4 chunks, the last of which may be partial; spare lanes get 0 blocks.
      for (let l = 0; l < 4; l++) {
        const chunkLen = l < count - 1 ? CHUNK_LEN : l === count - 1 ? lastLen : 0;
        const blocks = Math.ceil(chunkLen / BLOCK_LEN);
        lanes[8 + l] = blocks;
        lanes[12 + l] = chunkLen - (blocks - 1) * BLOCK_LEN;
      }
      wasm.hash4ragged(input, CHUNK_LEN, CHUNK_BLOCKS, 0, CHUNK_START, CHUNK_END, out, LANES);
    }
  }
}

/**
 * Replaces the `cvs` chaining values at `CVS` (at least 3) by their parents: neighbours are
 * paired, and an odd last one is carried up unchanged. Returns the new count. Done in place:
 * call j reads CVs 8j..8j+8 and writes CVs 4j..4j+4, which earlier calls have consumed.
 */
function hashLevel(cvs: number): number {
  const pairs = Math.floor(cvs / 2);
  const odd = cvs % 2;
  // A 4-lane call with spare lanes writes past its pairs; keep the odd CV out of the way.
  if (odd) mem.copyWithin(SPARE, CVS + (cvs - 1) * OUT_LEN, CVS + cvs * OUT_LEN);
  setCounters(0, 0);
  for (let j = 0; j < pairs; j += 4) {
    const input = CVS + 2 * j * OUT_LEN;
    const out = CVS + j * OUT_LEN;
    if (pairs - j >= 2) wasm.hash4(input, BLOCK_LEN, 1, PARENT, 0, 0, out, LANES);
    else wasm.hash1(input, 1, BLOCK_LEN, 0, 0, PARENT, 0, 0, out);
  }
  if (odd) mem.copyWithin(CVS + pairs * OUT_LEN, SPARE, SPARE + OUT_LEN);
  return pairs + odd;
}

/**
 * Hashes the `n` chunks (a power of two, 2 ≤ n ≤ BATCH_CHUNKS) at `src[pos..]`, the first being
 * chunk number `counter`, down to the two chaining values below the subtree's top; they are left
 * at `CVS`. (The top itself is not computed: it could be the root, which needs the ROOT flag.)
 */
function hashSubtree(src: Uint8Array, pos: number, n: number, counter: number): void {
  mem.set(src.subarray(pos, pos + n * CHUNK_LEN), IN);
  hashLeaves(n * CHUNK_LEN, n, counter);
  for (let cvs = n; cvs > 2;) cvs = hashLevel(cvs);
}

/**
 * Hashes a whole input of more than one chunk and at most a batch into `OUT`. Pairing the chunk
 * CVs level by level, odd ones carried up, gives exactly BLAKE3's left-heavy tree.
 */
function hashWhole(data: Uint8Array): void {
  const n = Math.ceil(data.length / CHUNK_LEN);
  mem.set(data, IN);
  mem.fill(0, IN + data.length, IN + Math.ceil(data.length / BLOCK_LEN) * BLOCK_LEN);
  hashLeaves(data.length, n, 0);
  for (let cvs = n; cvs > 2;) cvs = hashLevel(cvs);
  wasm.hash1(CVS, 1, BLOCK_LEN, 0, 0, PARENT | ROOT, 0, 0, OUT);
}

// ---------------------------------------------------------------------------------------------
// The hasher
// ---------------------------------------------------------------------------------------------

/** CV stack depth: a chunk count below 2^53 needs at most 53 entries, plus one pending pair. */
const MAX_DEPTH = 64;

/**
 * Input a hasher keeps before hashing it: 16 chunks, so that small updates are still hashed
 * four chunks at a time, and a small whole input takes the one-shot path (so at most a batch).
 */
const BUFFER_LEN = 16 * CHUNK_LEN;

/**
 * An incremental BLAKE3 hasher (default hash mode, 32-byte digests).
 *
 * Each hasher owns about 18 KiB (an input buffer and a stack of chaining values); the wasm
 * memory is only scratch space used during a call, so any number of hashers can be fed in any
 * interleaving. `update` accepts any split of the input. `digest` does not consume the state: it
 * can be called again, and more input can follow (the digest then covers all input so far).
 * `reset` starts a new hash.
 *
 * @example
 * ```ts
 * import { Blake3 } from "./blake3.ts";
 * const h = new Blake3();
 * h.update(new TextEncoder().encode("hello "));
 * h.update(new TextEncoder().encode("world"));
 * console.log(h.digest().length); // 32
 * ```
 */
export class Blake3 {
  /** Input not hashed yet. It holds the last chunk, which may turn out to be the root. */
  readonly #buf = new Uint8Array(BUFFER_LEN);
  #bufLen = 0;
  /** Chunks hashed so far (all of them before the buffered input). */
  #chunks = 0;
  /** Chaining values of hashed subtrees, left to right (32 bytes each). */
  readonly #stack = new Uint8Array(MAX_DEPTH * OUT_LEN);
  #depth = 0;

  /** Feeds `data` (any length, including 0). Returns this hasher. */
  update(data: Uint8Array): this {
    let pos = 0;
    if (this.#bufLen > 0 || data.length <= BUFFER_LEN) {
      pos = Math.min(BUFFER_LEN - this.#bufLen, data.length);
      this.#buf.set(data.subarray(0, pos), this.#bufLen);
      this.#bufLen += pos;
      if (pos === data.length) return this;
      // The buffer is full and more input follows, so none of it is the last chunk.
      this.#absorb(this.#buf, 0, BUFFER_LEN, true);
      this.#bufLen = 0;
    }
    pos = this.#absorb(data, pos, data.length, false);
    this.#buf.set(data.subarray(pos));
    this.#bufLen = data.length - pos;
    return this;
  }

  /**
   * The 32-byte digest of all input so far. Leaves the hasher usable: `update` may continue (and
   * `digest` be called again) as if `digest` had not been called.
   */
  digest(): Uint8Array {
    if (this.#chunks === 0) {
      // Everything is still buffered: hash it as a whole.
      if (this.#bufLen <= CHUNK_LEN) hashChunk(this.#buf.subarray(0, this.#bufLen), 0, ROOT);
      else hashWhole(this.#buf.subarray(0, this.#bufLen));
      return mem.slice(OUT, OUT + OUT_LEN);
    }
    // Hash all buffered chunks but the last, then fold the tree's right edge bottom-up.
    const pos = this.#absorb(this.#buf, 0, this.#bufLen, false);
    this.#buf.copyWithin(0, pos, this.#bufLen);
    this.#bufLen -= pos;
    let i = this.#depth - 1;
    if (this.#bufLen > 0) {
      this.#merge(this.#chunks);
      i = this.#depth - 1;
      hashChunk(this.#buf.subarray(0, this.#bufLen), this.#chunks, 0);
    } else {
      // The input ended on a subtree boundary: the top two CVs are the last parent's children.
      mem.set(this.#stack.subarray((i - 1) * OUT_LEN, (i + 1) * OUT_LEN), ONE);
      hashParent(i === 1 ? ROOT : 0);
      i -= 2;
    }
    // Each remaining stacked CV is the left sibling of everything to its right.
    for (; i >= 0; i--) {
      mem.set(this.#stack.subarray(i * OUT_LEN, (i + 1) * OUT_LEN), ONE);
      mem.copyWithin(ONE + OUT_LEN, OUT, OUT + OUT_LEN);
      hashParent(i === 0 ? ROOT : 0);
    }
    return mem.slice(OUT, OUT + OUT_LEN);
  }

  /** Forgets all input: the hasher is as new. Returns this hasher. */
  reset(): this {
    this.#bufLen = 0;
    this.#chunks = 0;
    this.#depth = 0;
    return this;
  }

  /**
   * Hashes whole subtrees of `src[pos..end)` onto the stack, as long as more than a chunk is
   * left (or, with `all`, as long as a chunk is left: the caller knows more input follows).
   * Returns the position of the first byte not hashed.
   */
  #absorb(src: Uint8Array, pos: number, end: number, all: boolean): number {
    while (end - pos > CHUNK_LEN || (all && end - pos === CHUNK_LEN)) {
      // The largest power-of-two run of chunks that fits and that starts on a multiple of its
      // own size: only such runs are subtrees of the final tree, whatever input follows.
      let n = BATCH_CHUNKS;
      while (n * CHUNK_LEN > end - pos || this.#chunks % n !== 0) n /= 2;
      this.#merge(this.#chunks);
      if (n === 1) {
        hashChunk(src.subarray(pos, pos + CHUNK_LEN), this.#chunks, 0);
        this.#push(OUT);
      } else {
        hashSubtree(src, pos, n, this.#chunks);
        // Push the subtree's two halves rather than its top: if no input follows, the top is
        // the root, which is hashed differently. (The stack merges them when input follows.)
        this.#push(CVS);
        this.#push(CVS + OUT_LEN);
      }
      this.#chunks += n;
      pos += n * CHUNK_LEN;
    }
    return pos;
  }

  /** Pushes the chaining value at wasm offset `at`. */
  #push(at: number): void {
    this.#stack.set(mem.subarray(at, at + OUT_LEN), this.#depth * OUT_LEN);
    this.#depth += 1;
  }

  /**
   * Merges completed sibling pairs so that the stack holds one CV per set bit of `chunks` (the
   * chunks hashed so far). Merging only when more input arrives keeps the root from being
   * hashed as an ordinary parent.
   */
  #merge(chunks: number): void {
    const depth = popcount(chunks);
    while (this.#depth > depth) {
      mem.set(this.#stack.subarray((this.#depth - 2) * OUT_LEN, this.#depth * OUT_LEN), ONE);
      hashParent(0);
      this.#depth -= 1;
      this.#stack.set(mem.subarray(OUT, OUT + OUT_LEN), (this.#depth - 1) * OUT_LEN);
    }
  }
}

// One-shot hashing is synchronous and calls no user code, so one hasher can serve every call.
const oneShot = new Blake3();

/**
 * BLAKE3 of `data` (32 bytes), computed synchronously. Large inputs are streamed through the
 * fixed wasm buffer, never copied whole.
 *
 * @example
 * ```ts
 * import { blake3Hash } from "./blake3.ts";
 * console.log(blake3Hash(new Uint8Array()).length); // 32
 * ```
 */
export function blake3Hash(data: Uint8Array): Uint8Array {
  if (data.length <= CHUNK_LEN) hashChunk(data, 0, ROOT);
  else if (data.length <= BATCH_CHUNKS * CHUNK_LEN) hashWhole(data);
  else return oneShot.reset().update(data).digest();
  return mem.slice(OUT, OUT + OUT_LEN);
}
