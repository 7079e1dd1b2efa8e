/**
 * The stream driver every native codec shares ({@linkcode codecStream}): input staged in a
 * buffer of our own, one library call at a time on Deno's thread pool, output produced only when
 * the reader pulls, and the native state freed on end, error, cancel, or garbage collection.
 *
 * @module
 */
import { DecompressionError } from "../base/errors.ts";
import { addressOf } from "../sys/libc.ts";

/** Compressed or plain bytes staged for the library: 256 KiB per call keeps calls few. */
export const IN_SIZE = 256 * 1024;
/** Output per call, and so the largest chunk a stream gives. */
export const OUT_SIZE = 512 * 1024;

/** The buffers a codec reads from and writes to, allocated once per stream. */
export interface Buffers {
  /** Staged input: the library reads `inBuf[offset, offset + length)`. */
  readonly inBuf: Uint8Array<ArrayBuffer>;
  /** The address of `inBuf[0]`. */
  readonly inAddr: bigint;
  /** Output: the library writes from `outBuf[0]`. */
  readonly outBuf: Uint8Array<ArrayBuffer>;
  /** The address of `outBuf[0]`. */
  readonly outAddr: bigint;
}

/** What one library call did. */
export interface Step {
  /** Input bytes consumed. */
  read: number;
  /** Output bytes written at `outBuf[0]`. */
  written: number;
  /** The whole (possibly concatenated) stream is complete and all its output written. */
  end: boolean;
}

/** One native (de)compressor, driven by {@linkcode codecStream}. */
export interface Codec {
  /**
   * Runs the library once on `inBuf[offset, offset + length)` into `outBuf`. `finish` says no
   * input follows what is given; `at` is the compressed offset of `inBuf[offset]` for error
   * messages (decoders). Throws {@linkcode DecompressionError} on bad data.
   */
  step(offset: number, length: number, finish: boolean, at: number): Promise<Step>;
  /** Frees the native state. Called once, never while a step runs. */
  free(): void;
}

/** How {@linkcode codecStream} runs one format. */
export interface CodecSpec {
  /** The format's name, for messages: `xz`, `zstd`, `bzip2`. */
  format: string;
  /** True for decoders: a stream that stops short is truncated input, not our bug. */
  decoding: boolean;
  /** Creates the native state (may run on the thread pool). */
  open(buffers: Buffers): Promise<Codec>;
}

interface State {
  codec: Codec | null;
  busy: Promise<unknown> | null;
  freed: boolean;
}

function release(state: State): void {
  if (state.freed) return;
  state.freed = true;
  const codec = state.codec;
  if (!codec) return;
  // A call still running on the thread pool uses the native state: free it after that call.
  if (state.busy) state.busy.finally(() => codec.free());
  else codec.free();
}

// A stream dropped half-read (no cancel) still frees its coder, whose tables can be ≈100 MiB.
const registry = new FinalizationRegistry<State>(release);

/**
 * `source` run through the codec `spec` describes: a stream of the output, in chunks of at most
 * {@linkcode OUT_SIZE} bytes, produced as it is read (memory does not grow with the data). Bad
 * input errors the stream with a {@linkcode DecompressionError}; cancelling it cancels `source`.
 */
export function codecStream(
  spec: CodecSpec,
  source: ReadableStream<Uint8Array>,
): ReadableStream<Uint8Array<ArrayBuffer>> {
  const state: State = { codec: null, busy: null, freed: false };
  const reader = source.getReader();
  // Off-heap buffers (never moved by the garbage collector), addressed from the C structs.
  const inBuf = new Uint8Array(new ArrayBuffer(IN_SIZE));
  const outBuf = new Uint8Array(new ArrayBuffer(OUT_SIZE));
  const buffers: Buffers = { inBuf, inAddr: addressOf(inBuf), outBuf, outAddr: addressOf(outBuf) };
  let inStart = 0;
  let inEnd = 0;
  let pending: Uint8Array | null = null;
  let sourceDone = false;
  let consumed = 0;
  let done = false;

  const track = <T>(p: Promise<T>): Promise<T> => {
    state.busy = p;
    return p.finally(() => {
      if (state.busy === p) state.busy = null;
    });
  };
  const finish = (stream: ReadableStream) => {
    done = true;
    registry.unregister(stream);
    release(state);
  };

  /** Tops up the staged input from `source` (at most IN_SIZE bytes staged). */
  const refill = async () => {
    if (inStart > 0) {
      inBuf.copyWithin(0, inStart, inEnd);
      inEnd -= inStart;
      inStart = 0;
    }
    while (inEnd < IN_SIZE && !sourceDone) {
      if (!pending) {
        const r = await reader.read();
        if (done) return;
        if (r.done) {
          sourceDone = true;
          break;
        }
        if (!(r.value instanceof Uint8Array)) {
          throw new TypeError(`${spec.format}: a stream chunk is not a Uint8Array`);
        }
        pending = r.value;
      }
      const n = Math.min(pending.length, IN_SIZE - inEnd);
      inBuf.set(pending.subarray(0, n), inEnd);
      inEnd += n;
      pending = n < pending.length ? pending.subarray(n) : null;
    }
  };

  const stream: ReadableStream<Uint8Array<ArrayBuffer>> = new ReadableStream({
    async pull(controller) {
      try {
        if (!state.codec) {
          const codec = await track(spec.open(buffers));
          // Cancelled (or collected) while the library started: nothing else will free it.
          if (state.freed) return codec.free();
          state.codec = codec;
        }
        let stalled = false;
        for (;;) {
          if (stalled || inEnd - inStart < IN_SIZE / 2) await refill();
          if (done) return;
          const last = sourceDone && pending === null;
          const r = await track(state.codec!.step(inStart, inEnd - inStart, last, consumed));
          if (done) return;
          inStart += r.read;
          consumed += r.read;
          if (r.written > 0) controller.enqueue(outBuf.slice(0, r.written));
          if (r.end) {
            finish(stream);
            controller.close();
            return;
          }
          if (r.written > 0) return;
          if (r.read > 0) {
            stalled = false;
            continue;
          }
          // No progress: the library wants more input than is staged.
          if (last) {
            if (!spec.decoding) throw new Error(`${spec.format}: the encoder stopped short`);
            throw new DecompressionError(
              spec.format,
              consumed,
              consumed === 0
                ? `${spec.format}: truncated: no compressed data`
                : `${spec.format}: truncated: the compressed data ends at byte ${consumed}, ` +
                  "inside a stream",
            );
          }
          if (stalled && inEnd === IN_SIZE) {
            throw new Error(`${spec.format}: no progress with ${IN_SIZE} bytes of input staged`);
          }
          stalled = true;
        }
      } catch (e) {
        if (done) return;
        finish(stream);
        reader.cancel(e).catch(() => {});
        throw e;
      }
    },
    async cancel(reason) {
      if (done) return;
      finish(stream);
      await reader.cancel(reason);
    },
  });
  registry.register(stream, state, stream);
  return stream;
}
