import assert from "node:assert/strict";
import { InvalidRequestError } from "../../src/base/errors.ts";
import { NarWriter } from "../../src/nar/writer.ts";
import { concat } from "../../src/base/bytes.ts";
import { NAR_CONTENTS_COMPLICATED, NAR_CONTENTS_HELLOWORLD } from "./fixtures.ts";

const te = new TextEncoder();

function collectWriter(options = {}): { w: NarWriter; bytes: () => Uint8Array } {
  const parts: Uint8Array[] = [];
  const w = new NarWriter((b) => parts.push(b.slice()), options);
  return {
    w,
    bytes: () => concat(parts),
  };
}

Deno.test("writer: file in one call or in chunks gives the seed's bytes", () => {
  const a = collectWriter();
  a.w.file(false, te.encode("Hello World!"));
  a.w.finish();
  assert.deepEqual(a.bytes(), NAR_CONTENTS_HELLOWORLD);
  assert.equal(a.w.bytesWritten, NAR_CONTENTS_HELLOWORLD.length);

  const b = collectWriter();
  b.w.fileStart(false, 12);
  for (const part of ["Hel", "", "lo World", "!"]) b.w.fileChunk(te.encode(part));
  b.w.fileEnd();
  b.w.finish();
  assert.deepEqual(b.bytes(), NAR_CONTENTS_HELLOWORLD);
});

Deno.test("writer: complicated directory by hand, tiny reused buffer", () => {
  // A 1 KiB reused buffer forces many flushes mid-token.
  const c = collectWriter({ reuseBuffer: true, bufferSize: 1024 });
  const { w } = c;
  w.directoryStart();
  w.entry(te.encode(".keep"));
  w.file(false, new Uint8Array());
  w.entry(te.encode("aa"));
  w.symlink(te.encode("/nix/store/somewhereelse"));
  w.entry(te.encode("keep"));
  w.directoryStart();
  w.entry(te.encode(".keep"));
  w.fileStart(false, 0);
  w.fileEnd();
  w.directoryEnd();
  w.directoryEnd();
  w.finish();
  assert.deepEqual(c.bytes(), NAR_CONTENTS_COMPLICATED);
});

Deno.test("writer: large chunks pass through without a copy", () => {
  const seen: Uint8Array[] = [];
  const w = new NarWriter((b) => seen.push(b));
  const big = new Uint8Array(100_000);
  w.fileStart(true, big.length);
  w.fileChunk(big);
  w.fileEnd();
  w.finish();
  assert.ok(seen.includes(big));
});

Deno.test("writer: misuse is InvalidRequestError", () => {
  const cases: [string, (w: NarWriter) => void][] = [
    ["unsorted entries", (w) => {
      w.directoryStart();
      w.entry(te.encode("b"));
      w.symlink(te.encode("x"));
      w.entry(te.encode("a"));
    }],
    ["duplicate entries", (w) => {
      w.directoryStart();
      w.entry(te.encode("a"));
      w.symlink(te.encode("x"));
      w.entry(te.encode("a"));
    }],
    ["bad name /", (w) => {
      w.directoryStart();
      w.entry(te.encode("a/b"));
    }],
    ["bad name ..", (w) => {
      w.directoryStart();
      w.entry(te.encode(".."));
    }],
    ["empty name", (w) => {
      w.directoryStart();
      w.entry(new Uint8Array());
    }],
    ["too many bytes", (w) => {
      w.fileStart(false, 2);
      w.fileChunk(te.encode("abc"));
    }],
    ["too few bytes", (w) => {
      w.fileStart(false, 2);
      w.fileChunk(te.encode("a"));
      w.fileEnd();
    }],
    ["two roots", (w) => {
      w.symlink(te.encode("x"));
      w.symlink(te.encode("y"));
    }],
    ["node without entry", (w) => {
      w.directoryStart();
      w.symlink(te.encode("y"));
    }],
    ["incomplete", (w) => {
      w.directoryStart();
      w.finish();
    }],
    ["entry then end", (w) => {
      w.directoryStart();
      w.entry(te.encode("a"));
      w.directoryEnd();
    }],
    ["empty symlink target", (w) => w.symlink(new Uint8Array())],
    ["chunk outside file", (w) => w.fileChunk(te.encode("a"))],
  ];
  for (const [what, f] of cases) {
    const w = new NarWriter(() => {});
    assert.throws(() => f(w), InvalidRequestError, what);
    // A failed writer stays failed.
    assert.throws(() => w.finish(), InvalidRequestError, what);
  }
});
