/**
 * The WebAssembly module behind `blake3.ts`, emitted from TypeScript: a minimal binary emitter
 * and the BLAKE3 compression functions written with it (`hash1` scalar, `hash4` and
 * `hash4ragged` four lanes at once). `scripts/gen_blake3_wasm.ts` runs it once and stores the
 * bytes in `blake3_wasm.ts`, so starting a program does not pay for emitting them (~15 ms);
 * `deno task check` and a test verify the stored bytes are what this module emits.
 *
 * @module
 */

import { BLOCK_LEN, IV, MEMORY_END, OUT_LEN } from "../src/hash/blake3_layout.ts";

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
    if (n === 16) {
      // Swapping the 16-bit halves is one byte shuffle instead of shift+shift+or. Rotating by 8
      // the same way needs pshufb, whose mask V8 builds anew each time: shift+shift+or measured
      // 10% faster there (64 MiB: 43.4 → 38.7 ms).
      f.get(tmp).simd(SIMD.shuffle, ...ROTATE_16);
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

/** The module's bytes: the three functions and a memory large enough for the layout above. */
export function buildBlake3Wasm(): Uint8Array<ArrayBuffer> {
  return buildModule(Math.ceil(MEMORY_END / 65536));
}
