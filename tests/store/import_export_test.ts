// readExport: export streams built here byte by byte (NARs whose names, contents and targets are
// `(`, `)`, `name`, `contents`, `target`, a file past the chunk size) read through every kind of
// source and chunking; renderExport round trips; one malformed stream per rule, with its byte
// offset and nothing registered for the bad path; every truncation of a stream; references;
// memory that stays flat for a 256 MiB NAR.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { concat } from "../../src/base/bytes.ts";
import { InvalidRequestError } from "../../src/base/errors.ts";
import { openStore, type Store } from "../../src/backends/open.ts";
import { fromNodeMessage } from "../../src/castore/directory.ts";
import { NarParseError, type NarReader, type NarSource } from "../../src/nar/ingest.ts";
import { renderNar } from "../../src/nar/render.ts";
import { NarWriter } from "../../src/nar/writer.ts";
import { EXPORT_MAGIC, renderExport } from "../../src/store/export.ts";
import {
  type ExportErrorKind,
  ExportParseError,
  readExport,
} from "../../src/store/import_export.ts";
import { StorePath } from "../../src/store/store_path.ts";
import { runJsonChild } from "../child.ts";
import { bytes } from "../fixtures.ts";

const te = new TextEncoder();

function u64(n: number | bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return b;
}

/** A wire string; `padByte` fills its padding (non-zero to break the rule). */
function str(s: string | Uint8Array, padByte = 0): Uint8Array {
  const b = typeof s === "string" ? te.encode(s) : s;
  const out = new Uint8Array(8 + Math.ceil(b.length / 8) * 8).fill(padByte, 8 + b.length);
  out.set(u64(b.length));
  out.set(b, 8);
  return out;
}

const sha256 = (b: Uint8Array) => new Uint8Array(createHash("sha256").update(b).digest());

function storePath(name: string, seed: number): StorePath {
  return new StorePath(bytes(20, seed), name);
}

function narOf(build: (w: NarWriter) => void): Uint8Array {
  const parts: Uint8Array[] = [];
  const w = new NarWriter((b) => void parts.push(b.slice()));
  build(w);
  w.finish();
  return concat(parts);
}

const e = (s: string) => te.encode(s);

/** Every token the boundary finder must not misread, and a file past the chunk size. */
const TRICKY = narOf((w) => {
  w.directoryStart();
  w.entry(e("("));
  w.file(false, e("("));
  w.entry(e(")"));
  w.symlink(e(")"));
  w.entry(e("big"));
  w.file(false, bytes((3 << 20) + 5, 1));
  w.entry(e("contents"));
  w.directoryStart();
  w.entry(e("name"));
  w.file(false, e(")"));
  w.directoryEnd();
  w.entry(e("e"));
  w.file(false, new Uint8Array());
  w.entry(e("exe"));
  w.file(true, e("#!/bin/sh\n"));
  w.entry(e("name"));
  w.symlink(e("("));
  w.entry(e("sub"));
  w.directoryStart();
  w.entry(e(")"));
  w.directoryStart();
  w.directoryEnd();
  w.entry(e("contents"));
  w.file(false, e("name"));
  w.directoryEnd();
  w.entry(e("target"));
  w.file(false, e("contents"));
  w.directoryEnd();
});
const FILE_X = narOf((w) => w.file(false, e("x")));
const FILE_PAREN = narOf((w) => w.file(false, e(")")));
const SYMLINK = narOf((w) => w.symlink(e("/nix/store/somewhereelse")));

const A = storePath("a", 1);
const B = storePath("b", 2);
const C = storePath("c", 3);
const DRV = storePath("c.drv", 4);
const ELSEWHERE = storePath("elsewhere", 5);

interface Entry {
  nar: Uint8Array;
  path: StorePath | string;
  refs?: (StorePath | string)[];
  deriver?: string;
  /** The legacy signature (flag 1), or a flag value of its own. */
  signature?: string;
  flag?: bigint;
  marker?: bigint;
  magic?: bigint;
}

const text = (p: StorePath | string) => typeof p === "string" ? p : p.absolute;

function entryParts(x: Entry): Uint8Array[] {
  const refs = x.refs ?? [];
  return [
    u64(x.marker ?? 1n),
    x.nar,
    u64(x.magic ?? BigInt(EXPORT_MAGIC)),
    str(text(x.path)),
    u64(refs.length),
    ...refs.map((r) => str(text(r))),
    str(x.deriver ?? ""),
    ...(x.flag !== undefined
      ? [u64(x.flag)]
      : x.signature !== undefined
      ? [u64(1), str(x.signature)]
      : [u64(0)]),
  ];
}

/** The stream of `entries` and where each entry starts (and, last, where the final 0 is). */
function exportOf(entries: Entry[]): { bytes: Uint8Array; at: number[] } {
  const at: number[] = [];
  const parts: Uint8Array[] = [];
  let o = 0;
  for (const x of entries) {
    at.push(o);
    for (const p of entryParts(x)) {
      parts.push(p);
      o += p.length;
    }
  }
  at.push(o);
  parts.push(u64(0));
  return { bytes: concat(parts), at };
}

/** A stream yielding `data` in chunks of the sizes in `sizes`, over and over. */
function chunked(data: Uint8Array, sizes: number[]): ReadableStream<Uint8Array> {
  let at = 0;
  let i = 0;
  return new ReadableStream({
    pull(c) {
      if (at === data.length) return c.close();
      const n = Math.min(sizes[i++ % sizes.length], data.length - at);
      c.enqueue(data.slice(at, at + n));
      at += n;
    },
  });
}

/** A reader returning at most the sizes in `sizes`, over and over. */
function reader(data: Uint8Array, sizes: number[]): NarReader {
  let at = 0;
  let i = 0;
  return {
    read(p) {
      if (at === data.length) return Promise.resolve(null);
      const n = Math.min(sizes[i++ % sizes.length], p.length, data.length - at);
      p.set(data.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
  };
}

async function registered(store: Store): Promise<string[]> {
  const names: string[] = [];
  for await (const info of store.pathInfos.list()) {
    names.push(StorePath.fromBytes(fromNodeMessage(info.node).value.name).absolute);
  }
  return names.sort();
}

/** Checks what `store` holds for `path`: the NAR's size, hash and bytes, references, deriver. */
async function assertPath(
  store: Store,
  path: StorePath,
  nar: Uint8Array,
  refs: StorePath[],
  deriver?: StorePath,
) {
  const info = await store.pathInfos.get(path.digest);
  assert.ok(info, `${path.absolute} is registered`);
  assert.equal(info.narinfo?.narSize, BigInt(nar.length));
  assert.deepEqual(info.narinfo?.narSha256, sha256(nar));
  assert.deepEqual(info.narinfo?.referenceNames, refs.map(String).sort());
  assert.equal(
    info.narinfo?.deriver ? `${info.narinfo.deriver.name}.drv` : undefined,
    deriver?.name,
  );
  const node = fromNodeMessage(info.node);
  const rendered = concat(await Array.fromAsync(renderNar(node, store.blobs, store.directories)));
  assert.ok(rendered.length === nar.length && rendered.every((b, i) => b === nar[i]), "NAR");
}

const THREE: Entry[] = [
  { nar: FILE_X, path: A },
  { nar: TRICKY, path: B, refs: [A], signature: "cache.example.org-1:AAAA" },
  // References out of order, repeated, and the path itself.
  { nar: SYMLINK, path: C, refs: [C, B, A, B], deriver: DRV.absolute },
];

async function assertThree(store: Store) {
  assert.deepEqual(await registered(store), [A, B, C].map((p) => p.absolute).sort());
  await assertPath(store, A, FILE_X, []);
  await assertPath(store, B, TRICKY, [A]);
  await assertPath(store, C, SYMLINK, [A, B, C], DRV);
}

Deno.test("readExport: every kind of source and chunking, the NAR boundary found exactly", async (t) => {
  const { bytes: data } = exportOf(THREE);
  const sources: [string, () => NarSource | Promise<NarSource>][] = [
    ["one chunk", () => ReadableStream.from([data])],
    ["odd chunks", () => chunked(data, [1, 3, 7, 13, 64 << 10, 1, (1 << 20) + 3])],
    ["async iterable", () => chunked(data, [5000])[Symbol.asyncIterator]()],
    ["reader, odd reads", () => reader(data, [1, 3, 7, 13, 64 << 10, 1, (1 << 20) + 3])],
    ["reader, whole reads", () => reader(data, [Infinity])],
  ];
  for (const [name, make] of sources) {
    await t.step(name, async () => {
      const store = await openStore("memory://");
      try {
        const seen: string[] = [];
        const paths = await readExport(await make(), store, {
          onPath: (p) => void seen.push(p.absolute),
        });
        assert.deepEqual(paths.map((p) => p.absolute), [A, B, C].map((p) => p.absolute));
        assert.deepEqual(seen, paths.map((p) => p.absolute));
        await assertThree(store);
      } finally {
        await store.close();
      }
    });
  }
  await t.step("a file (Deno.FsFile)", async () => {
    const file = await Deno.makeTempFile();
    await Deno.writeFile(file, data);
    const store = await openStore("memory://");
    const f = await Deno.open(file);
    try {
      assert.equal((await readExport(f, store)).length, 3);
      await assertThree(store);
    } finally {
      f.close();
      await store.close();
      await Deno.remove(file);
    }
  });
  await t.step("every chunk and read size from 1 to 24 (small paths)", async () => {
    const small = exportOf([
      { nar: FILE_PAREN, path: A },
      { nar: SYMLINK, path: B, refs: [A] },
    ]).bytes;
    for (let n = 1; n <= 24; n++) {
      for (const source of [chunked(small, [n]), reader(small, [n])]) {
        const store = await openStore("memory://");
        try {
          assert.equal((await readExport(source, store)).length, 2, `size ${n}`);
          await assertPath(store, A, FILE_PAREN, []);
          await assertPath(store, B, SYMLINK, [A]);
        } finally {
          await store.close();
        }
      }
    }
  });
  await t.step("an empty export", async () => {
    const store = await openStore("memory://");
    try {
      assert.deepEqual(await readExport(ReadableStream.from([u64(0)]), store), []);
    } finally {
      await store.close();
    }
  });
});

Deno.test("readExport reads what renderExport writes, into another store", async () => {
  const a = await openStore("memory://");
  const b = await openStore("memory://");
  try {
    await readExport(ReadableStream.from([exportOf(THREE).bytes]), a);
    const infos = await Promise.all([A, B, C].map((p) => a.pathInfos.get(p.digest)));
    const written = concat(await Array.fromAsync(renderExport(infos.map((i) => i!), a)));
    // Our writer drops the legacy signature and writes references sorted, each once, as Nix
    // does; otherwise the same bytes.
    const withoutSig = exportOf(THREE.map((x) => ({
      ...x,
      signature: undefined,
      refs: [...new Set((x.refs ?? []).map(text))].sort(),
    }))).bytes;
    assert.ok(written.length === withoutSig.length && written.every((x, i) => x === withoutSig[i]));
    await readExport(ReadableStream.from([written]), b);
    await assertThree(b);
  } finally {
    await a.close();
    await b.close();
  }
});

/** Reads `data` into a fresh store (from chunks and from a reader): the error and what stayed. */
async function refusal(data: Uint8Array, prepare?: (s: Store) => Promise<void>) {
  const results: { error: ExportParseError; left: string[] }[] = [];
  for (const source of [chunked(data, [7, 4096]), reader(data, [7, 4096])]) {
    const store = await openStore("memory://");
    try {
      await prepare?.(store);
      const before = await registered(store);
      const error = await readExport(source, store).then(
        () => assert.fail("accepted"),
        (e) => e,
      );
      if (!(error instanceof ExportParseError)) throw error;
      assert.ok(error instanceof InvalidRequestError);
      const left = (await registered(store)).filter((p) => !before.includes(p));
      results.push({ error, left });
    } finally {
      await store.close();
    }
  }
  // Both kinds of source fail alike.
  assert.equal(results[0].error.message, results[1].error.message);
  assert.deepEqual(results[0].left, results[1].left);
  return results[0];
}

Deno.test("readExport refuses a malformed stream at the byte at fault, nothing of the bad path registered", async (t) => {
  const good = { nar: FILE_X, path: A };
  /** `bad` follows a good entry: its offsets are past it, and the good path stays. */
  const cases: {
    name: string;
    bad: Entry | { raw: Uint8Array };
    kind: ExportErrorKind;
    /** The offset from the start of the bad entry. */
    at: (bad: Entry) => number;
    message: RegExp;
  }[] = [];
  const trailerAt = (x: Entry) => 8 + x.nar.length;
  const pathAt = (x: Entry) => trailerAt(x) + 8;
  const countAt = (x: Entry) => pathAt(x) + str(text(x.path)).length;
  const refsLen = (x: Entry) => (x.refs ?? []).reduce((n, r) => n + str(text(r)).length, 0);
  const deriverAt = (x: Entry) => countAt(x) + 8 + refsLen(x);
  const flagAt = (x: Entry) => deriverAt(x) + str(x.deriver ?? "").length;
  cases.push(
    {
      name: "a marker other than 0 and 1",
      bad: { nar: FILE_X, path: B, marker: 2n },
      kind: "Marker",
      at: () => 0,
      message: /the marker before path 2 is 2, not 1 \(a path follows\) or 0/,
    },
    {
      name: "a wrong export magic",
      bad: { nar: FILE_X, path: B, magic: 0x4558494fn },
      kind: "Magic",
      at: trailerAt,
      message: /after the NAR of path 2: 0x4558494f is not the export magic 0x4558494e/,
    },
    {
      name: "not an absolute store path",
      bad: { nar: FILE_X, path: "nix/store/x" },
      kind: "StorePath",
      at: pathAt,
      message: /the store path of path 2: invalid store path "nix\/store\/x"/,
    },
    {
      name: "a bad digest",
      bad: { nar: FILE_X, path: "/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-b" },
      kind: "StorePath",
      at: pathAt,
      message: /invalid store path "e{32}-b": invalid nixbase32/,
    },
    {
      name: "a bad reference",
      bad: { nar: FILE_X, path: B, refs: [A, "/nix/store/short"] },
      kind: "StorePath",
      at: (x) => countAt(x) + 8 + str(A.absolute).length,
      message: new RegExp(`reference 2 of ${B.absolute}: invalid store path`),
    },
    {
      name: "a deriver that is not a .drv",
      bad: { nar: FILE_X, path: B, deriver: C.absolute },
      kind: "StorePath",
      at: deriverAt,
      message: new RegExp(`the deriver ${C.absolute} of ${B.absolute} is not a \\.drv`),
    },
    {
      name: "a bad deriver",
      bad: { nar: FILE_X, path: B, deriver: "hello.drv" },
      kind: "StorePath",
      at: deriverAt,
      message: /deriver: invalid store path "hello\.drv"/,
    },
    {
      name: "a signature flag other than 0 and 1",
      bad: { nar: FILE_X, path: B, flag: 7n },
      kind: "Signature",
      at: flagAt,
      message: new RegExp(`the signature flag of ${B.absolute} is 7, not 0 or 1`),
    },
    {
      name: "a NAR ingestNar refuses",
      bad: { nar: narOf((w) => w.file(false, e("x"))).map((b, i) => i === 16 ? 0x53 : b), path: B },
      kind: "Nar",
      at: () => 8, // the NAR's first token
      message: /the NAR of path 2 \(from byte \d+\): invalid NAR at byte 0: expected "nix-arch/,
    },
    {
      name: "a reference to a later path",
      bad: { nar: FILE_X, path: B, refs: [C] },
      kind: "MissingReference",
      at: (x) => countAt(x) + 8,
      message: new RegExp(
        `${B.absolute} refers to ${C.absolute}, which is neither in the store nor earlier`,
      ),
    },
  );
  for (const c of cases) {
    await t.step(c.name, async () => {
      const bad = c.bad as Entry;
      const { bytes: data, at } = exportOf([good, bad, { nar: FILE_X, path: C }]);
      const { error, left } = await refusal(data);
      assert.equal(error.kind, c.kind, error.message);
      assert.equal(error.offset, at[1] + c.at(bad), error.message);
      assert.match(error.message, new RegExp(`^invalid export at byte ${error.offset}: `));
      assert.match(error.message, c.message);
      assert.deepEqual(left, [A.absolute]);
    });
  }

  await t.step("non-zero padding: in the trailer and in the NAR", async () => {
    const { bytes: data, at } = exportOf([good, { nar: FILE_X, path: B }]);
    // The store path of B is 45 bytes long: the second of its 3 padding bytes.
    const x = { nar: FILE_X, path: B };
    const trailerPad = at[1] + pathAt(x) + 8 + B.absolute.length + 1;
    const broken = data.slice();
    broken[trailerPad] = 1;
    let r = await refusal(broken);
    assert.equal(r.error.kind, "Padding");
    assert.equal(r.error.offset, trailerPad);
    assert.match(r.error.message, /padding byte after the store path of path 2 is 0x01, not zero/);
    assert.deepEqual(r.left, [A.absolute]);
    // In the NAR: the padding after its "x".
    const narPad = at[1] + 8 + 97; // after the marker; the NAR's "x" is at 96
    const inNar = data.slice();
    inNar[narPad] = 2;
    r = await refusal(inNar);
    assert.equal(r.error.kind, "Padding");
    assert.equal(r.error.offset, narPad);
    assert.ok(r.error.cause instanceof NarParseError && r.error.cause.kind === "Padding");
    assert.deepEqual(r.left, [A.absolute]);
  });

  await t.step("a string or count longer than its field", async () => {
    const { bytes: data, at } = exportOf([good, { nar: FILE_X, path: B, refs: [A] }]);
    const x = { nar: FILE_X, path: B, refs: [A] };
    const long = data.slice();
    long.set(u64(1n << 40n), at[1] + pathAt(x));
    let r = await refusal(long);
    assert.equal(r.error.kind, "Length");
    assert.equal(r.error.offset, at[1] + pathAt(x));
    assert.match(r.error.message, /the store path of path 2 is 1099511627776 bytes long/);
    const many = data.slice();
    many.set(u64(1n << 60n), at[1] + countAt(x));
    r = await refusal(many);
    assert.equal(r.error.kind, "Length");
    assert.equal(r.error.offset, at[1] + countAt(x));
    assert.deepEqual(r.left, [A.absolute]);
  });

  await t.step("bytes after the final 0", async () => {
    const { bytes: data } = exportOf([good]);
    const r = await refusal(concat([data, new Uint8Array(1)]));
    assert.equal(r.error.kind, "TrailingData");
    assert.equal(r.error.offset, data.length);
    assert.deepEqual(r.left, [A.absolute]);
  });

  await t.step("a reference neither in the stream nor in the store", async () => {
    const { bytes: data } = exportOf([{ nar: FILE_X, path: B, refs: [B, ELSEWHERE] }]);
    const r = await refusal(data);
    assert.equal(r.error.kind, "MissingReference");
    assert.match(r.error.message, new RegExp(`${B.absolute} refers to ${ELSEWHERE.absolute}`));
    assert.deepEqual(r.left, []);
    // Once the store has it, the same stream is read.
    const store = await openStore("memory://");
    try {
      await readExport(
        ReadableStream.from([exportOf([{ nar: SYMLINK, path: ELSEWHERE }]).bytes]),
        store,
      );
      assert.equal((await readExport(ReadableStream.from([data]), store)).length, 1);
      await assertPath(store, B, FILE_X, [B, ELSEWHERE]);
    } finally {
      await store.close();
    }
  });
});

Deno.test("readExport: every truncation fails at the stream's end, registering only whole entries", async () => {
  const entries: Entry[] = [
    { nar: FILE_PAREN, path: A, signature: "k-1:AAAA" },
    {
      nar: narOf((w) => {
        w.directoryStart();
        w.entry(e("name"));
        w.symlink(e(")"));
        w.directoryEnd();
      }),
      path: B,
      refs: [A],
      deriver: DRV.absolute,
    },
  ];
  const { bytes: data, at } = exportOf(entries);
  for (let n = 0; n < data.length; n++) {
    const prefix = data.subarray(0, n);
    const source = n % 2 ? chunked(prefix, [5, 11]) : reader(prefix, [5, 11]);
    const store = await openStore("memory://");
    try {
      const error = await readExport(source, store).then(() => assert.fail(`${n}`), (e) => e);
      assert.ok(error instanceof ExportParseError, `${n}: ${error}`);
      assert.equal(error.kind, "Truncated", `${n}: ${error.message}`);
      assert.equal(error.offset, n, error.message);
      const whole = [A, B].filter((_, i) => at[i + 1] <= n).map((p) => p.absolute);
      assert.deepEqual(await registered(store), whole.sort(), `${n}`);
    } finally {
      await store.close();
    }
  }
});

Deno.test({
  name: "readExport: a 256 MiB NAR between two small paths, from a reader, in bounded memory",
  fn: async () => {
    const size = 256 << 20;
    const head = concat([
      exportOf([{ nar: FILE_X, path: A }]).bytes.subarray(0, -8),
      u64(1),
      str("nix-archive-1"),
      str("("),
      str("type"),
      str("regular"),
      str("contents"),
      u64(size),
    ]);
    const tail = concat([
      str(")"),
      ...entryParts({ nar: new Uint8Array(), path: B, refs: [A] }).slice(2),
      ...entryParts({ nar: SYMLINK, path: C, refs: [B] }),
      u64(0),
    ]);
    const dir = await Deno.makeTempDir({ prefix: "nixcas-export-mem-" });
    try {
      Deno.writeFileSync(`${dir}/head.bin`, head);
      Deno.writeFileSync(`${dir}/tail.bin`, tail);
      // In a process of its own: the other test files share this one's RSS.
      const { grew, paths } = await runJsonChild<{ grew: number; paths: string[] }>(
        new URL("./import_export_child.ts", import.meta.url),
        [dir, `${size}`],
      );
      assert.deepEqual(paths, [A, B, C].map(String));
      const store = await openStore(`sqlite://${dir}/store.db`);
      try {
        assert.deepEqual(await registered(store), [A, B, C].map((p) => p.absolute).sort());
        const info = await store.pathInfos.get(B.digest);
        assert.equal(info?.narinfo?.narSize, BigInt(24 + 4 * 16 + 8 + size + 16));
      } finally {
        await store.close();
      }
      assert.ok(grew < 150, `RSS grew by ${grew.toFixed(0)} MiB`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
