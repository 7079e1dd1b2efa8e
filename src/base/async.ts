/**
 * Small async helpers every floor may use: a counting semaphore, waiting for two promises
 * without leaving either running, tracking promises in flight, marking a promise handled,
 * collecting an async iterable, and a one-slot channel.
 *
 * @module
 */

/**
 * A counting semaphore, as {@linkcode semaphore} returns it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type Semaphore, semaphore } from "./async.ts";
 * const permits: Semaphore = semaphore(1);
 * await permits.acquire();
 * let second = false;
 * const waiting = permits.acquire().then(() => second = true);
 * await Promise.resolve();
 * assert.equal(second, false); // the only permit is taken
 * permits.release();
 * await waiting;
 * assert.equal(second, true);
 * ```
 */
export interface Semaphore {
  /** Resolves once a permit is free, and takes it. */
  acquire(): Promise<void>;
  /** Gives a permit back, waking the longest waiter. */
  release(): void;
}

/**
 * A counting semaphore with `n` permits; waiters are woken in the order they came.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { semaphore } from "./async.ts";
 * // At most two tasks at once.
 * const permits = semaphore(2);
 * let running = 0;
 * let most = 0;
 * await Promise.all([1, 2, 3, 4, 5].map(async () => {
 *   await permits.acquire();
 *   most = Math.max(most, ++running);
 *   await new Promise((r) => setTimeout(r, 1));
 *   running--;
 *   permits.release();
 * }));
 * assert.equal(most, 2);
 * ```
 */
export function semaphore(n: number): Semaphore {
  let free = n;
  const waiters: (() => void)[] = [];
  return {
    async acquire() {
      while (free === 0) await new Promise<void>((r) => waiters.push(r));
      free--;
    },
    release() {
      free++;
      waiters.shift()?.();
    },
  };
}

/**
 * Waits for both; the first failure wins, but only once both settled, so no read, hash or
 * write is still using a buffer the caller is about to reuse or give back. Either may be
 * `undefined` (nothing to wait for).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { both } from "./async.ts";
 * let slowDone = false;
 * const slow = new Promise<void>((r) => setTimeout(r, 5)).then(() => void (slowDone = true));
 * await assert.rejects(both(Promise.reject(new Error("write failed")), slow), /write failed/);
 * assert.equal(slowDone, true); // rejected only after the other one settled
 * await both(undefined, Promise.resolve());
 * ```
 */
export async function both(
  a: Promise<void> | undefined,
  b: Promise<void> | undefined,
): Promise<void> {
  const [ra, rb] = await Promise.allSettled([a, b]);
  if (ra.status === "rejected") throw ra.reason;
  if (rb.status === "rejected") throw rb.reason;
}

/**
 * Keeps `p` in `set` until it settles (either way); `p`'s rejection stays the caller's to
 * handle.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { track } from "./async.ts";
 * const busy = new Set<Promise<void>>();
 * const p = new Promise<void>((r) => setTimeout(r, 1));
 * track(busy, p);
 * assert.equal(busy.size, 1);
 * await p;
 * await Promise.resolve();
 * assert.equal(busy.size, 0);
 * ```
 */
export function track<T>(set: Set<Promise<T>>, p: Promise<T>): void {
  set.add(p);
  p.then(() => set.delete(p), () => set.delete(p));
}

/**
 * Marks `p` handled and returns it: a promise nobody awaits for a while must not count as an
 * unhandled rejection when its error reaches the caller another way (whoever awaits it later
 * still gets the rejection).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { quiet } from "./async.ts";
 * const p = quiet(Promise.reject(new Error("later")));
 * await new Promise((r) => setTimeout(r, 1)); // no unhandled rejection meanwhile
 * await assert.rejects(p, /later/);
 * ```
 */
export function quiet<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

/**
 * Collects an async iterable into an array.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { collect } from "./async.ts";
 * async function* countdown(n: number) {
 *   while (n > 0) yield n--;
 * }
 * assert.deepEqual(await collect(countdown(3)), [3, 2, 1]);
 * ```
 */
export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/**
 * A one-slot async channel: push() resolves when the consumer took the item, so a writer
 * never runs ahead of its consumer (e.g. the network) by more than one item.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Channel, collect } from "./async.ts";
 * const ch = new Channel<string>();
 * const received = collect(ch);
 * await ch.push("a"); // resolves once the consumer took it
 * await ch.push("b");
 * ch.end();
 * assert.deepEqual(await received, ["a", "b"]);
 *
 * const failed = new Channel<string>();
 * failed.fail(new Error("peer went away"));
 * await assert.rejects(failed.push("c"), /peer went away/);
 * ```
 */
export class Channel<T> implements AsyncIterable<T> {
  #item: { value: T; taken: () => void; failed: (e: Error) => void } | null = null;
  #waiter: (() => void) | null = null;
  #ended = false;
  #error: Error | null = null;

  /** Offers an item; resolves once it was taken, rejects when the channel failed. */
  push(value: T): Promise<void> {
    if (this.#error) return Promise.reject(this.#error);
    if (this.#ended) return Promise.reject(new Error("channel ended"));
    return new Promise((taken, failed) => {
      this.#item = { value, taken, failed };
      this.#wake();
    });
  }

  /** No more items: the consumer's loop ends after the current one. */
  end(): void {
    this.#ended = true;
    this.#wake();
  }

  /** Fails the channel: a pending and all future pushes reject with `e`; the consumer stops. */
  fail(e: Error): void {
    this.#error ??= e;
    this.#item?.failed(this.#error);
    this.#item = null;
    this.#ended = true;
    this.#wake();
  }

  #wake() {
    const w = this.#waiter;
    this.#waiter = null;
    w?.();
  }

  /** Yields items as they are pushed, until end() or fail(). */
  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for (;;) {
      while (!this.#item && !this.#ended) {
        await new Promise<void>((r) => (this.#waiter = r));
      }
      const item = this.#item;
      if (!item) return;
      this.#item = null;
      item.taken();
      yield item.value;
    }
  }
}
