/**
 * The import progress line: redrawn on a timer at least every 250 ms, with files, bytes, the
 * rate over the last seconds, and totals once every import knows them. A fake clock, timer and
 * terminal stand in for the real ones.
 */
import assert from "node:assert/strict";
import { Progress, type ProgressEnv } from "../../src/cli/progress.ts";

const MiB = 1 << 20;

function fakeEnv() {
  const fake = {
    t: 0,
    written: [] as string[],
    ticks: [] as { ms: number; fn: () => void; stopped: boolean }[],
    /** Advances the clock by `ms`, firing every timer each time its period passes. */
    advance(ms: number) {
      for (const tick of fake.ticks) {
        for (let left = ms; left >= tick.ms && !tick.stopped; left -= tick.ms) {
          fake.t += tick.ms;
          tick.fn();
        }
      }
    },
    last: () => fake.written.at(-1),
    /** The last line drawn, without the erase-line prefix every redraw starts with. */
    line: () => {
      const w = fake.written.at(-1)!;
      assert.ok(w.startsWith("\r\x1b[K"), JSON.stringify(w));
      return w.slice(4);
    },
  };
  const env: ProgressEnv = {
    write: (text) => void fake.written.push(text),
    now: () => fake.t,
    every: (ms, fn) => {
      const tick = { ms, fn, stopped: false };
      fake.ticks.push(tick);
      return () => void (tick.stopped = true);
    },
  };
  return { fake, env };
}

Deno.test("progress: redrawn at least every 250 ms with files, bytes, rate and totals", () => {
  const { fake, env } = fakeEnv();
  const progress = new Progress(true, env);
  assert.equal(fake.ticks.length, 1);
  assert.ok(fake.ticks[0].ms <= 250, `redraw period ${fake.ticks[0].ms} ms`);

  const a = progress.track("a")!;
  const b = progress.track("b")!;
  a({ files: 3, bytes: 3 * MiB });
  fake.advance(1000);
  const draws = fake.written.length;
  assert.ok(draws >= 4, `${draws} redraws in one second`);
  assert.equal(fake.last(), "\r\x1b[K3 files, 3.0 MiB, 3.0 MiB/s");

  // Totals only once every import knows its own.
  b({ files: 1, bytes: MiB, totalFiles: 1, totalBytes: MiB });
  fake.advance(250);
  assert.match(fake.line(), /^4 files, 4\.0 MiB, /);
  a({ files: 4, bytes: 5 * MiB, totalFiles: 9, totalBytes: 19 * MiB });
  fake.advance(250);
  assert.match(fake.line(), /^5\/10 files, 6\.0\/20\.0 MiB \(30%\), \d+\.\d MiB\/s$/);

  // The rate is the current one: it falls to zero when nothing moves for a while.
  fake.advance(5000);
  assert.equal(fake.last(), "\r\x1b[K5/10 files, 6.0/20.0 MiB (30%), 0.0 MiB/s");
  // 8 MiB more in the next second: 8 MiB/s over that second.
  a({ files: 9, bytes: 13 * MiB, totalFiles: 9, totalBytes: 19 * MiB });
  fake.advance(1000);
  assert.match(fake.line(), /, [4-8]\.\d MiB\/s$/);
  fake.advance(3000);
  assert.match(fake.line(), / 0\.0 MiB\/s$/);

  // clear() erases the line before a result is printed; the next tick draws it again.
  progress.clear();
  assert.equal(fake.last(), "\r\x1b[K");
  fake.advance(250);
  assert.match(fake.line(), /^10\/10 files/);
  progress.stop();
  assert.equal(fake.last(), "\r\x1b[K");
  const n = fake.written.length;
  fake.advance(1000);
  progress.clear(); // nothing shown: nothing to erase
  assert.equal(fake.written.length, n);
});

Deno.test("progress: disabled (not a terminal, or --quiet) shows nothing and starts no timer", () => {
  const { fake, env } = fakeEnv();
  const progress = new Progress(false, env);
  assert.equal(progress.track("a"), undefined);
  assert.equal(fake.ticks.length, 0);
  progress.clear();
  progress.stop();
  assert.deepEqual(fake.written, []);
});
