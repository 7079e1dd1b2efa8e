// ingestNar: round trips (fixtures, generated trees, real `nix-store --dump`) on every backend,
// one malformed NAR per rule with its offset, expected size and hash, a fuzz of mutated NARs,
// and memory that stays flat for a NAR of a 512 MiB file.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import { concat, fromBase64, toHex } from "../../src/base/bytes.ts";
import { InvalidRequestError } from "../../src/base/errors.ts";
import { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import { openStore } from "../../src/backends/open.ts";
import type { BlobService } from "../../src/castore/blob_service.ts";
import { B3Digest } from "../../src/castore/digest.ts";
import type { DirectoryService } from "../../src/castore/directory_service.ts";
import { fromNodeMessage } from "../../src/castore/directory.ts";
import { NodeSchema } from "../../src/gen/tvix/castore/protos/castore_pb.ts";
import { calculateNar } from "../../src/nar/hash.ts";
import {
  ingestNar,
  MAX_NAR_DEPTH,
  type NarErrorKind,
  type NarIngestOptions,
  NarParseError,
  type NarReader,
  type NarSource,
} from "../../src/nar/ingest.ts";
import { renderNar } from "../../src/nar/render.ts";
import { NarWriter } from "../../src/nar/writer.ts";
import { BACKENDS, warmUp } from "../conformance/backends.ts";
import { runJsonChild } from "../child.ts";
import { bytes } from "../fixtures.ts";
import { have, slow } from "../prereq.ts";
import {
  NAR_CONTENTS_COMPLICATED,
  NAR_CONTENTS_HELLOWORLD,
  NAR_CONTENTS_SYMLINK,
} from "./fixtures.ts";
import { bigNar } from "./ingest_child.ts";

const te = new TextEncoder();

// --- NARs written token by token, independently of the parser, so that any byte can be wrong ---

/** A token: a string or bytes (encoded with length and padding), or raw bytes as they are. */
type T = string | Uint8Array | { raw: Uint8Array };

function encodeToken(t: T): Uint8Array {
  if (typeof t === "object" && "raw" in t) return t.raw;
  const b = typeof t === "string" ? te.encode(t) : t;
  const out = new Uint8Array(8 + Math.ceil(b.length / 8) * 8);
  new DataView(out.buffer).setBigUint64(0, BigInt(b.length), true);
  out.set(b, 8);
  return out;
}

/** The NAR of `tokens` and the offset of each token in it. */
function nar(...tokens: T[]): { bytes: Uint8Array; at: number[] } {
  const parts = tokens.map(encodeToken);
  const at: number[] = [];
  let o = 0;
  for (const p of parts) {
    at.push(o);
    o += p.length;
  }
  return { bytes: concat(parts), at };
}

/** A u64 as raw bytes (a length field with no string after it). */
function u64(n: bigint): { raw: Uint8Array } {
  const raw = new Uint8Array(8);
  new DataView(raw.buffer).setBigUint64(0, n, true);
  return { raw };
}

const FILE = (contents: T) => ["(", "type", "regular", "contents", contents, ")"];
const LINK = (target: T) => ["(", "type", "symlink", "target", target, ")"];
const ENTRY = (name: T, node: T[]) => ["entry", "(", "name", name, "node", ...node, ")"];
const DIR = (...entries: T[][]) => ["(", "type", "directory", ...entries.flat(), ")"];

// --- helpers ---

function sha256(b: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(b).digest());
}

/** `data` in pieces of the given sizes (cycled), as a ReadableStream. */
function chunked(data: Uint8Array, sizes: number[]): ReadableStream<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (let o = 0, i = 0; o < data.length; i++) {
    const n = Math.max(1, sizes[i % sizes.length]);
    parts.push(data.slice(o, o + n));
    o += n;
  }
  return ReadableStream.from(parts);
}

/** `data` as a {@linkcode NarReader} whose reads return at most `max` bytes. */
function readerOf(data: Uint8Array, max = Infinity): NarReader & { reads: number } {
  let at = 0;
  return {
    reads: 0,
    read(p) {
      this.reads++;
      if (at === data.length) return Promise.resolve(null);
      const n = Math.min(p.length, data.length - at, max);
      p.set(data.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
  };
}

async function render(
  node: Parameters<typeof renderNar>[0],
  blobs: BlobService,
  dirs: DirectoryService,
) {
  return concat(await Array.fromAsync(renderNar(node, blobs, dirs)));
}

/**
 * Ingests `data` (split as `sizes` says, or through a reader whose reads return at most
 * `sizes[0]` bytes), re-renders it and checks size, hash and bytes.
 */
async function roundTrip(
  data: Uint8Array,
  blobs: BlobService,
  dirs: DirectoryService,
  sizes = [data.length],
  what = "",
  reader = false,
): Promise<void> {
  const source: NarSource = reader ? readerOf(data, sizes[0]) : chunked(data, sizes);
  const r = await ingestNar(source, blobs, dirs);
  assert.equal(r.narSize, data.length, `${what}: narSize`);
  assert.deepEqual(r.narSha256, sha256(data), `${what}: narSha256`);
  const again = await render(r.node, blobs, dirs);
  assert.equal(again.length, data.length, `${what}: re-rendered length`);
  assert.ok(again.every((b, i) => b === data[i]), `${what}: re-rendered bytes differ`);
}

/** A seeded PRNG (xorshift32) returning integers in [0, n). */
function prng(seed: number): (n: number) => number {
  let x = (seed * 2654435761) | 1;
  return (n) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}

/**
 * The NAR of a random tree, written by our NarWriter: nested directories, empty and executable
 * files, symlinks, names with non-UTF-8 bytes, and files of `bigSize` bytes (over 1 MiB: the
 * big-file path) when given.
 */
function randomTreeNar(seed: number, opts: { bigSize?: number; entries?: number } = {}) {
  const rnd = prng(seed);
  const parts: Uint8Array[] = [];
  const w = new NarWriter((b) => parts.push(b));
  let budget = opts.entries ?? 40;
  let bigs = opts.bigSize ? 2 : 0;
  const node = (depth: number): void => {
    const kind = depth === 0 ? 0 : rnd(depth > 4 ? 2 : 3) + 1;
    if (kind === 0 || kind === 3) {
      w.directoryStart();
      const n = Math.min(budget, rnd(6));
      budget -= n;
      const names = new Set<string>();
      while (names.size < n) {
        const len = 1 + rnd(12);
        const name = Array.from({ length: len }, () => {
          const c = 1 + rnd(255);
          return c === 0x2f ? 0x2e : c;
        });
        const s = String.fromCharCode(...name);
        if (s !== "." && s !== "..") names.add(s);
      }
      const sorted = [...names].map((s) => Uint8Array.from(s, (c) => c.charCodeAt(0)))
        .sort((a, b) => {
          for (let i = 0; i < Math.min(a.length, b.length); i++) {
            if (a[i] !== b[i]) return a[i] - b[i];
          }
          return a.length - b.length;
        });
      for (const name of sorted) {
        w.entry(name);
        node(depth + 1);
      }
      w.directoryEnd();
    } else if (kind === 1) {
      const size = bigs > 0 && rnd(3) === 0
        ? (bigs--, opts.bigSize!)
        : [0, 1, 7, 8, 9, 100][rnd(6)];
      w.file(rnd(2) === 1, bytes(size, seed * 31 + size));
    } else {
      w.symlink(te.encode(["../x", "/nix/store/somewhereelse", "a".repeat(200)][rnd(3)]));
    }
  };
  node(0);
  w.finish();
  return concat(parts);
}

/** Builds a directory with what NARs hold: modes, symlinks, odd names, padding, a big file. */
async function buildTree(root: string): Promise<void> {
  const w = (p: string, s: string | Uint8Array) =>
    Deno.writeFile(`${root}/${p}`, typeof s === "string" ? te.encode(s) : s);
  await Deno.mkdir(`${root}/sub/deeper`, { recursive: true });
  await Deno.mkdir(`${root}/empty-dir`);
  await w("a", "hello\n");
  await w("B", "upper case sorts first\n");
  await w(".hidden", "");
  await w("a-b", "1234567");
  await w("a.b", "12345678");
  await w("run.sh", "#!/bin/sh\necho hi\n");
  await Deno.chmod(`${root}/run.sh`, 0o755);
  await w("sub/big.bin", bytes((3 << 20) + 12345, 5));
  await w("sub/deeper/leaf", "leaf");
  await Deno.symlink("a", `${root}/link-rel`);
  await Deno.symlink("/nix/store/somewhereelse", `${root}/sub/link-abs`);
}

const NIX = have("ingest: nix-store --dump as the source of real NARs", ["nix-store"]);

/** `nix-store --dump` of a built tree, of one file in it, and of a symlink (no store needed). */
async function nixDumps(): Promise<[string, Uint8Array][]> {
  if (!NIX) return [];
  const tmp = await Deno.makeTempDir({ prefix: "nixcas-ingest-" });
  try {
    await Deno.mkdir(`${tmp}/tree`);
    await buildTree(`${tmp}/tree`);
    const out: [string, Uint8Array][] = [];
    for (const p of ["tree", "tree/sub/big.bin", "tree/link-rel"]) {
      const r = await new Deno.Command("nix-store", { args: ["--dump", `${tmp}/${p}`] }).output();
      assert.ok(r.success, `nix-store --dump ${p}`);
      out.push([`nix-store --dump ${p}`, r.stdout]);
    }
    return out;
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

/** Every NAR the round trips use, named. */
async function corpus(): Promise<[string, Uint8Array][]> {
  return [
    ["NAR_CONTENTS_SYMLINK", NAR_CONTENTS_SYMLINK],
    ["NAR_CONTENTS_HELLOWORLD", NAR_CONTENTS_HELLOWORLD],
    ["NAR_CONTENTS_COMPLICATED", NAR_CONTENTS_COMPLICATED],
    ["an empty file", nar("nix-archive-1", ...FILE("")).bytes],
    ["an empty directory", nar("nix-archive-1", ...DIR()).bytes],
    ["a random tree", randomTreeNar(1)],
    ["a random tree with big files", randomTreeNar(2, { bigSize: (2 << 20) + 5 })],
    ["a file of exactly 1 MiB", nar("nix-archive-1", ...FILE(bytes(1 << 20, 3))).bytes],
    ["a file of 1 MiB + 1", nar("nix-archive-1", ...FILE(bytes((1 << 20) + 1, 4))).bytes],
    ...await nixDumps(),
  ];
}

// --- round trips ---

Deno.test("ingest: the corpus renders back byte for byte, however it is split", async () => {
  for (const [what, data] of await corpus()) {
    // Whole; in 1-byte pieces (small ones only); in pieces that cut tokens at every phase; in
    // 64 KiB pieces, as a pipe gives them; in pieces larger than the bridge copies.
    const splits = [[data.length], [7, 13, 1, 64], [65536], [300_000, 1]];
    if (data.length < 4096) splits.push([1]);
    for (const sizes of splits) {
      for (const reader of [false, true]) {
        await roundTrip(
          data,
          new MemoryBlobService(),
          new MemoryDirectoryService(),
          sizes,
          `${what} in ${sizes}${reader ? " (reader)" : ""}`,
          reader,
        );
      }
    }
  }
});

Deno.test("ingest: the root gets the name asked for; the executable bit is kept", async () => {
  const data = nar("nix-archive-1", "(", "type", "regular", "executable", "", "contents", "x", ")")
    .bytes;
  const r = await ingestNar(
    ReadableStream.from([data]),
    new MemoryBlobService(),
    new MemoryDirectoryService(),
    { name: te.encode("tool") },
  );
  assert.equal(r.node.case, "file");
  assert.equal(new TextDecoder().decode(r.node.value.name), "tool");
  assert.equal(r.node.case === "file" && r.node.value.executable, true);
  await assert.rejects(
    ingestNar(ReadableStream.from([data]), new MemoryBlobService(), new MemoryDirectoryService(), {
      name: te.encode("a/b"),
    }),
    InvalidRequestError,
  );
});

Deno.test("ingest: a NAR file read as a Deno.FsFile, the reader path", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "nixcas-ingest-file-" });
  try {
    for (const [what, data] of await corpus()) {
      await Deno.writeFile(`${tmp}/x.nar`, data);
      using file = await Deno.open(`${tmp}/x.nar`);
      const blobs = new MemoryBlobService();
      const dirs = new MemoryDirectoryService();
      const r = await ingestNar(file, blobs, dirs);
      assert.deepEqual(r.narSha256, sha256(data), what);
      assert.deepEqual(await render(r.node, blobs, dirs), data, what);
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("ingest: an async generator is a source as good as a ReadableStream", async () => {
  const data = randomTreeNar(3);
  async function* gen() {
    for (let o = 0; o < data.length; o += 100) yield data.slice(o, o + 100);
  }
  const blobs = new MemoryBlobService();
  const dirs = new MemoryDirectoryService();
  const r = await ingestNar(gen(), blobs, dirs);
  assert.deepEqual(await render(r.node, blobs, dirs), data);
});

await warmUp(BACKENDS);
for (const backend of BACKENDS) {
  Deno.test({
    name: `${backend.name} ingest: the corpus round-trips through the backend`,
    sanitizeResources: backend.sanitize.resources,
    sanitizeOps: backend.sanitize.ops,
    async fn() {
      const store = await backend.open();
      try {
        for (const [what, data] of await corpus()) {
          await roundTrip(data, store.blobs, store.directories, [65536], what);
          // What the path info service computes from the stored tree agrees (a daemon wants
          // the root named).
          const r = await ingestNar(ReadableStream.from([data]), store.blobs, store.directories, {
            name: te.encode("root"),
          });
          assert.deepEqual(await store.pathInfos.calculateNar(r.node), {
            narSize: data.length,
            narSha256: sha256(data),
          }, what);
        }
      } finally {
        await store.cleanup();
      }
    },
  });
}

// --- malformed NARs: one per rule, each with its offset ---

const M = "nix-archive-1";

/**
 * Ingests `data` into fresh memory services, as chunks (split as `sizes` says) and through a
 * reader (reads of at most `sizes[0]` bytes), and expects a NarParseError of `kind` at `offset`
 * from both.
 */
async function refused(
  data: Uint8Array,
  kind: NarErrorKind,
  offset: number,
  options: NarIngestOptions = {},
  sizes = [data.length],
): Promise<NarParseError> {
  let error: NarParseError | undefined;
  for (const source of [chunked(data, sizes), readerOf(data, sizes[0])]) {
    let caught: unknown;
    try {
      await ingestNar(source, new MemoryBlobService(), new MemoryDirectoryService(), options);
    } catch (e) {
      caught = e;
    }
    assert.ok(caught instanceof NarParseError, `expected a NarParseError, got ${caught}`);
    assert.ok(caught instanceof InvalidRequestError);
    assert.equal(caught.kind, kind, caught.message);
    assert.equal(caught.offset, offset, caught.message);
    assert.match(caught.message, new RegExp(`at byte ${offset}\\b`));
    error = caught;
  }
  return error!;
}

/** Sets byte `i` of a copy of `data` to `v`. */
function poke(data: Uint8Array, i: number, v: number): Uint8Array {
  const out = data.slice();
  out[i] = v;
  return out;
}

Deno.test("ingest refuses: a wrong magic", async () => {
  const e = await refused(nar("nix-archive-2", ...FILE("")).bytes, "Token", 0);
  assert.match(e.message, /expected "nix-archive-1", found "nix-archive-2"/);
});

Deno.test("ingest refuses: an empty input, and inputs cut short anywhere", async () => {
  await refused(new Uint8Array(), "Truncated", 0);
  const whole = nar(M, ...DIR(ENTRY("a", FILE("hello")), ENTRY("b", LINK("a")))).bytes;
  // Every cut, in one piece and in pieces of 3 bytes: always Truncated at the input's end.
  for (let n = 1; n < whole.length; n++) {
    await refused(whole.subarray(0, n), "Truncated", n);
    await refused(whole.subarray(0, n), "Truncated", n, {}, [3]);
  }
});

Deno.test("ingest refuses: a cut inside big file contents", async () => {
  const whole = nar(M, ...FILE(bytes(3 << 20, 9))).bytes;
  await refused(whole.subarray(0, 2 << 20), "Truncated", 2 << 20, {}, [65536]);
});

Deno.test("ingest refuses: an unknown node type", async () => {
  const n = nar(M, "(", "type", "fifo", ")");
  const e = await refused(n.bytes, "Token", n.at[3]);
  assert.match(e.message, /expected a node type, found "fifo"/);
});

Deno.test("ingest refuses: a misspelt field", async () => {
  const n = nar(M, "(", "tpye", "regular", "contents", "", ")");
  await refused(n.bytes, "Token", n.at[2]);
});

Deno.test("ingest refuses: a field another node type has", async () => {
  const n = nar(M, "(", "type", "symlink", "contents", "x", ")");
  await refused(n.bytes, "Token", n.at[4]);
});

Deno.test("ingest refuses: an executable marker that is not empty", async () => {
  const n = nar(M, "(", "type", "regular", "executable", "yes", "contents", "", ")");
  await refused(n.bytes, "Token", n.at[5]);
});

Deno.test("ingest refuses: a token where a node's ) belongs", async () => {
  const n = nar(M, "(", "type", "regular", "contents", "x", "contents", "y", ")");
  const e = await refused(n.bytes, "Token", n.at[6]);
  assert.match(e.message, /expected "\)", found "contents"/);
});

Deno.test("ingest refuses: an entry without its node token", async () => {
  const n = nar(M, "(", "type", "directory", "entry", "(", "name", "a", "nod", ...FILE(""));
  await refused(n.bytes, "Token", n.at[8]);
});

Deno.test("ingest refuses: a huge token where a short one belongs", async () => {
  const n = nar(M, "(", u64(1n << 62n));
  const e = await refused(n.bytes, "Token", n.at[2]);
  assert.match(e.message, /found a string of \d+ bytes/);
});

Deno.test("ingest refuses: a padding byte that is not zero", async () => {
  // After an entry name ("a" + 7 padding bytes): the third padding byte.
  const named = nar(M, ...DIR(ENTRY("a", FILE(""))));
  const nameAt = named.at[7]; // the name's length field
  await refused(poke(named.bytes, nameAt + 8 + 3, 1), "Padding", nameAt + 11);
  // After file contents ("hello" + 3).
  const file = nar(M, ...FILE("hello"));
  await refused(poke(file.bytes, file.at[5] + 8 + 5, 0xff), "Padding", file.at[5] + 13);
  // In the contents of a big file's last piece.
  const big = nar(M, ...FILE(bytes((1 << 20) + 3, 2)));
  const padAt = big.at[5] + 8 + (1 << 20) + 3;
  await refused(poke(big.bytes, padAt + 4, 9), "Padding", padAt + 4, {}, [4096]);
  // After a symlink target.
  const link = nar(M, ...LINK("abc"));
  await refused(poke(link.bytes, link.at[5] + 8 + 4, 1), "Padding", link.at[5] + 12);
  // After a structural token: "type" padded with a 1.
  const typed = nar(M, ...FILE(""));
  await refused(poke(typed.bytes, typed.at[2] + 8 + 6, 1), "Padding", typed.at[2] + 14);
});

Deno.test("ingest refuses: directory entries out of byte order", async () => {
  const n = nar(M, ...DIR(ENTRY("b", FILE("")), ENTRY("a", FILE(""))));
  const e = await refused(n.bytes, "Order", n.at[7 + 12]);
  assert.match(e.message, /"a" comes after "b"/);
  // Byte order, not locale order: "B" (0x42) sorts before "a" (0x61).
  const upper = nar(M, ...DIR(ENTRY("a", FILE("")), ENTRY("B", FILE(""))));
  await refused(upper.bytes, "Order", upper.at[7 + 12]);
});

Deno.test("ingest refuses: a duplicate entry name", async () => {
  const n = nar(M, ...DIR(ENTRY("a", FILE("")), ENTRY("a", LINK("x"))));
  await refused(n.bytes, "Duplicate", n.at[7 + 12]);
});

Deno.test("ingest refuses: invalid entry names", async () => {
  for (const name of ["", ".", "..", "a/b", "/", "a\0b"]) {
    const n = nar(M, ...DIR(ENTRY(name, FILE(""))));
    await refused(n.bytes, "Name", n.at[7]);
  }
});

Deno.test("ingest refuses: an entry name over 255 bytes", async () => {
  const ok = nar(M, ...DIR(ENTRY("n".repeat(255), FILE(""))));
  await roundTrip(ok.bytes, new MemoryBlobService(), new MemoryDirectoryService());
  const n = nar(M, ...DIR(ENTRY("n".repeat(256), FILE(""))));
  await refused(n.bytes, "Length", n.at[7]);
});

Deno.test("ingest refuses: bad symlink targets", async () => {
  const empty = nar(M, ...LINK(""));
  await refused(empty.bytes, "Target", empty.at[5]);
  const nul = nar(M, ...LINK("ab\0c"));
  await refused(nul.bytes, "Target", nul.at[5] + 8 + 2); // the NUL byte itself
  const long = nar(M, ...LINK("t".repeat(4096)));
  await refused(long.bytes, "Length", long.at[5]);
  await roundTrip(
    nar(M, ...LINK("t".repeat(4095))).bytes,
    new MemoryBlobService(),
    new MemoryDirectoryService(),
  );
});

Deno.test("ingest refuses: bytes after the root node", async () => {
  const whole = nar(M, ...DIR(ENTRY("a", FILE("x")))).bytes;
  await refused(concat([whole, new Uint8Array(1)]), "TrailingData", whole.length);
  // Also when they come in a chunk of their own, after the NAR's last one.
  await refused(concat([whole, te.encode("junk")]), "TrailingData", whole.length, {}, [
    whole.length,
  ]);
  // A second NAR after the first.
  await refused(concat([whole, whole]), "TrailingData", whole.length);
});

Deno.test("ingest refuses: a length past the rest of the expected size", async () => {
  const n = nar(M, ...FILE(bytes(1000, 1)));
  // The size field claims 2^40 bytes; with the expected size known it fails at once.
  const claimed = n.bytes.slice();
  new DataView(claimed.buffer).setBigUint64(n.at[5], 1n << 32n, true);
  await refused(claimed, "Length", n.at[5], { expectedNarSize: n.bytes.length });
  const fits = n.bytes.slice();
  new DataView(fits.buffer).setBigUint64(n.at[5], 100_000n, true);
  await refused(fits, "Length", n.at[5], { expectedNarSize: n.bytes.length });
  // A name that claims more than is left.
  const named = nar(M, ...DIR(ENTRY("abc", FILE(""))));
  const b = named.bytes.slice();
  b[named.at[7]] = 200;
  await refused(b, "Length", named.at[7], { expectedNarSize: named.bytes.length });
});

Deno.test("ingest refuses: a file larger than castore stores", async () => {
  const n = nar(M, "(", "type", "regular", "contents", u64(1n << 32n));
  await refused(n.bytes, "Length", n.at[5]);
});

Deno.test("ingest refuses: directories nested deeper than MAX_NAR_DEPTH", async () => {
  const nested = (levels: number) => {
    const open = ["(", "type", "directory"];
    const tokens: T[] = [M, ...open];
    for (let i = 1; i < levels; i++) tokens.push("entry", "(", "name", "d", "node", ...open);
    for (let i = 1; i < levels; i++) tokens.push(")", ")");
    tokens.push(")");
    return nar(...tokens);
  };
  await roundTrip(
    nested(MAX_NAR_DEPTH).bytes,
    new MemoryBlobService(),
    new MemoryDirectoryService(),
  );
  const deep = nested(MAX_NAR_DEPTH + 1);
  // The last directory's ( is token 1 + 3 + 8 * (MAX_NAR_DEPTH - 1) + 5; refused after its type.
  const last = 1 + 3 + 8 * (MAX_NAR_DEPTH - 1) + 5;
  await refused(deep.bytes, "Depth", deep.at[last + 3]);
});

// --- expected size and hash ---

Deno.test("ingest: an unexpected size or hash is refused, nothing committed", async () => {
  const data = nar(M, ...DIR(ENTRY("a", FILE("hello")), ENTRY("sub", DIR(ENTRY("b", LINK("a"))))))
    .bytes;
  const good = sha256(data);
  const bad = good.slice();
  bad[0] ^= 1;
  const cases: [NarIngestOptions, NarErrorKind, number][] = [
    [{ expectedNarSize: data.length - 8 }, "SizeMismatch", data.length - 8],
    [{ expectedNarSize: BigInt(data.length + 8) }, "SizeMismatch", data.length],
    [{ expectedNarSha256: bad }, "HashMismatch", data.length],
    [{ expectedNarSize: data.length, expectedNarSha256: bad }, "HashMismatch", data.length],
  ];
  for (const [options, kind, offset] of cases) {
    for (const sizes of [[data.length], [16]]) {
      const blobs = new MemoryBlobService();
      const dirs = new MemoryDirectoryService();
      let caught: unknown;
      await ingestNar(chunked(data, sizes), blobs, dirs, options).catch((e) => caught = e);
      assert.ok(caught instanceof NarParseError, String(caught));
      assert.equal(caught.kind, kind);
      assert.equal(caught.offset, offset, caught.message);
      // The directories were put through a putter that was never closed: none is stored.
      const ok = await ingestNar(
        ReadableStream.from([data]),
        new MemoryBlobService(),
        new MemoryDirectoryService(),
      );
      assert(ok.node.case === "directory");
      assert.equal(await dirs.get(B3Digest.fromBytes(ok.node.value.digest)), null);
    }
  }
  // The right ones are accepted.
  const r = await ingestNar(
    ReadableStream.from([data]),
    new MemoryBlobService(),
    new MemoryDirectoryService(),
    { expectedNarSize: data.length, expectedNarSha256: good },
  );
  assert.equal(r.narSize, data.length);
  await assert.rejects(
    ingestNar(ReadableStream.from([data]), new MemoryBlobService(), new MemoryDirectoryService(), {
      expectedNarSha256: new Uint8Array(20),
    }),
    InvalidRequestError,
  );
});

// --- failures of the source and the services ---

Deno.test("ingest: an abort, a failing source or a failing blob service fails it", async () => {
  const data = nar(M, ...FILE(bytes(5 << 20, 1))).bytes;
  const ac = new AbortController();
  let pulled = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (pulled === 10) ac.abort(new Error("stop"));
      const o = pulled++ * 65536;
      if (o >= data.length) c.close();
      else c.enqueue(data.slice(o, o + 65536));
    },
  });
  await assert.rejects(
    ingestNar(stream, new MemoryBlobService(), new MemoryDirectoryService(), { signal: ac.signal }),
    /stop/,
  );
  // A source that throws.
  async function* failing() {
    yield data.slice(0, 100_000);
    throw new Error("disk on fire");
  }
  await assert.rejects(
    ingestNar(failing(), new MemoryBlobService(), new MemoryDirectoryService()),
    /disk on fire/,
  );
  // A blob service whose writes fail: its error, and the writer aborted.
  const blobs = new MemoryBlobService();
  let aborted = 0;
  const broken: BlobService = {
    has: (d) => blobs.has(d),
    openRead: (d) => blobs.openRead(d),
    openWrite: () =>
      Promise.resolve({
        write: () => Promise.reject(new Error("no space left")),
        close: () => Promise.reject(new Error("unreachable")),
        abort: () => {
          aborted++;
          return Promise.resolve();
        },
      }),
    close: () => Promise.resolve(),
  };
  await assert.rejects(
    ingestNar(ReadableStream.from([data]), broken, new MemoryDirectoryService()),
    /no space left/,
  );
  assert.equal(aborted, 1);
});

// --- fuzz ---

Deno.test({
  name: "ingest fuzz: 10,000 mutated NARs give a NarParseError or a NAR that renders back",
  async fn() {
    const seeds = [
      NAR_CONTENTS_COMPLICATED,
      NAR_CONTENTS_HELLOWORLD,
      NAR_CONTENTS_SYMLINK,
      randomTreeNar(7, { entries: 12 }),
      nar(M, "(", "type", "regular", "executable", "", "contents", "abcdefghi", ")").bytes,
    ];
    const rnd = prng(20240601);
    const blobs = new MemoryBlobService();
    const dirs = new MemoryDirectoryService();
    const counts = { refused: 0, accepted: 0 };
    for (let i = 0; i < 10_000; i++) {
      let m: Uint8Array = seeds[rnd(seeds.length)].slice();
      for (let k = 1 + rnd(3); k > 0; k--) {
        const at = rnd(m.length + 1);
        switch (rnd(5)) {
          case 0: // flip a bit
            if (at < m.length) m[at] ^= 1 << rnd(8);
            break;
          case 1: // set a byte (length fields and padding are where the rules are)
            if (at < m.length) m[at] = [0, 1, 0xff, 0x2f, 0x2e, 8, 16][rnd(7)];
            break;
          case 2: // truncate
            m = m.slice(0, at);
            break;
          case 3: { // insert random bytes
            const ins = bytes(1 + rnd(16), i);
            m = concat([m.subarray(0, at), ins, m.subarray(at)]);
            break;
          }
          case 4: { // duplicate or drop an aligned 8..32-byte run (a token, whole)
            const a = at - (at % 8);
            const len = 8 * (1 + rnd(4));
            m = rnd(2)
              ? concat([m.subarray(0, a), m.subarray(a, a + len), m.subarray(a)])
              : concat([m.subarray(0, a), m.subarray(a + len)]);
            break;
          }
        }
      }
      const size = [m.length, 1 + rnd(64)][rnd(2)];
      try {
        const source = rnd(2) ? readerOf(m, size) : chunked(m, [size]);
        const r = await ingestNar(source, blobs, dirs);
        assert.equal(r.narSize, m.length);
        const again = await render(r.node, blobs, dirs);
        assert.ok(
          again.length === m.length && again.every((b, j) => b === m[j]),
          `mutation ${i} was accepted but renders differently`,
        );
        counts.accepted++;
      } catch (e) {
        if (!(e instanceof NarParseError)) throw new Error(`mutation ${i}: ${e}`, { cause: e });
        counts.refused++;
      }
    }
    // Both outcomes happen: the fuzz reaches past the first token.
    assert.ok(counts.accepted > 50 && counts.refused > 5000, JSON.stringify(counts));
  },
});

// --- memory ---

Deno.test({
  name: "ingest: a NAR of a 512 MiB file, streamed, into SQLite in bounded memory",
  ignore: slow(), // ≈7 s alone, twice that beside the other suites
  fn: async () => {
    const size = 512 << 20;
    const header = nar(M, "(", "type", "regular", "contents", u64(BigInt(size))).bytes;
    const trailer = nar(")").bytes;
    const { total, produce } = bigNar(header, size, trailer);
    // The expected hash, through one reused buffer (the NAR is never held whole).
    const sha = createHash("sha256");
    const buf = new Uint8Array(1 << 20);
    for (let at = 0; at < total;) {
      const n = produce(at, buf);
      sha.update(buf.subarray(0, n));
      at += n;
    }
    const expected = sha.digest("hex");
    for (const mode of ["generator", "reader"]) {
      const dir = await Deno.makeTempDir({ prefix: "nixcas-ingest-mem-" });
      try {
        Deno.writeFileSync(`${dir}/header.bin`, header);
        Deno.writeFileSync(`${dir}/trailer.bin`, trailer);
        // In a process of its own: the other test files share this one's RSS.
        const r = await runJsonChild<
          { grew: number; narSize: number; narSha256: string; node: string }
        >(new URL("./ingest_child.ts", import.meta.url), [mode, dir, `${size}`]);
        const node = fromNodeMessage(fromBinary(NodeSchema, fromBase64(r.node)));
        assert.equal(r.narSize, total);
        assert.equal(r.narSha256, expected);
        assert.equal(node.case === "file" && node.value.size, size);
        assert.ok(r.grew < 150, `${mode}: RSS grew by ${r.grew.toFixed(0)} MiB`);
        if (mode === "reader") {
          // What is stored renders to the same NAR.
          const store = await openStore(`sqlite://${dir}/store.db`);
          try {
            const again = await calculateNar(node, store.blobs, store.directories);
            assert.equal(again.narSize, total);
            assert.equal(toHex(again.narSha256), expected);
          } finally {
            await store.close();
          }
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    }
  },
});
