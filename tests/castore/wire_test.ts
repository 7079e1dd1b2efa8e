/**
 * The hand-written wire codecs against protobuf-es (the generated schemas) as the oracle:
 * identical bytes when encoding, identical messages when decoding, on random messages, on
 * concatenated encodings (merging), with unknown fields, and on malformed input.
 */
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  type Directory,
  DirectorySchema,
  type Node,
  NodeSchema,
} from "../../src/gen/tvix/castore/protos/castore_pb.ts";
import { type PathInfo, PathInfoSchema } from "../../src/gen/tvix/store/protos/pathinfo_pb.ts";
import {
  decodeDirectoryWire,
  decodeNodeWire,
  encodeDirectoryWire,
  encodeNodeWire,
  WireError,
} from "../../src/castore/wire.ts";
import { decodePathInfoWire, encodePathInfoWire } from "../../src/store/wire.ts";

// A small deterministic PRNG, so a failure can be reproduced.
let seed = 12345;
const rnd = (n: number) => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed % n;
};
const bytes = (max: number) => Uint8Array.from({ length: rnd(max + 1) }, () => rnd(256));
const size = () => [0, 1, 127, 128, 300, 65535, 2 ** 31, 2 ** 32 - 1][rnd(8)];

function randomNode(): Node {
  switch (rnd(4)) {
    case 0:
      return create(NodeSchema, {
        node: { case: "directory", value: { name: bytes(6), digest: bytes(32), size: size() } },
      });
    case 1:
      return create(NodeSchema, {
        node: {
          case: "file",
          value: { name: bytes(6), digest: bytes(32), size: size(), executable: rnd(2) === 1 },
        },
      });
    case 2:
      return create(NodeSchema, {
        node: { case: "symlink", value: { name: bytes(6), target: bytes(40) } },
      });
    default:
      return create(NodeSchema, {});
  }
}

function randomDirectory(): Directory {
  return create(DirectorySchema, {
    directories: Array.from({ length: rnd(4) }, () => ({
      name: bytes(8),
      digest: bytes(32),
      size: size(),
    })),
    files: Array.from({ length: rnd(4) }, () => ({
      name: bytes(8),
      digest: bytes(32),
      size: size(),
      executable: rnd(2) === 1,
    })),
    symlinks: Array.from({ length: rnd(3) }, () => ({ name: bytes(8), target: bytes(20) })),
  });
}

function randomPathInfo(): PathInfo {
  return create(PathInfoSchema, {
    node: rnd(5) ? randomNode() : undefined,
    references: Array.from({ length: rnd(3) }, () => bytes(20)),
    narinfo: rnd(5)
      ? {
        narSize: [0n, 1n, 2n ** 40n + 3n, 2n ** 64n - 1n][rnd(4)],
        narSha256: bytes(32),
        signatures: Array.from({ length: rnd(3) }, () => ({
          name: ["", "cache.nixos.org-1", "é"][rnd(3)],
          data: bytes(64),
        })),
        referenceNames: Array.from({ length: rnd(3) }, () => ["a-b", "", "xyz-ü"][rnd(3)]),
        deriver: rnd(2)
          ? { name: ["", "hello-2.12", "é"][rnd(3)], digest: bytes(rnd(2) * 20) }
          : undefined,
        ca: rnd(2) ? { type: [0, 4, 7, 8, 42, -3][rnd(6)], digest: bytes(rnd(3) * 16) } : undefined,
      }
      : undefined,
  });
}

/** Messages as protobuf-es decodes them, without the unknown fields it keeps and we drop. */
function known<T>(m: T): T {
  return JSON.parse(JSON.stringify(m, (k, v) => {
    if (k === "$unknown") return undefined;
    if (typeof v === "bigint") return `${v}n`;
    if (v instanceof Uint8Array) return [...v];
    return v;
  }));
}

const cases = [
  {
    what: "Directory",
    random: randomDirectory,
    encode: encodeDirectoryWire,
    decode: decodeDirectoryWire,
    oracleEncode: (m: unknown) => toBinary(DirectorySchema, m as Directory),
    oracleDecode: (b: Uint8Array) => fromBinary(DirectorySchema, b),
  },
  {
    what: "Node",
    random: randomNode,
    encode: encodeNodeWire,
    decode: decodeNodeWire,
    oracleEncode: (m: unknown) => toBinary(NodeSchema, m as Node),
    oracleDecode: (b: Uint8Array) => fromBinary(NodeSchema, b),
  },
  {
    what: "PathInfo",
    random: randomPathInfo,
    encode: encodePathInfoWire,
    decode: decodePathInfoWire,
    oracleEncode: (m: unknown) => toBinary(PathInfoSchema, m as PathInfo),
    oracleDecode: (b: Uint8Array) => fromBinary(PathInfoSchema, b),
  },
] as const;

for (const c of cases) {
  Deno.test(`${c.what}: encoding is byte-identical to protobuf-es, decoding equal`, () => {
    for (let i = 0; i < 500; i++) {
      const m = c.random();
      const ours = (c.encode as (m: unknown) => Uint8Array)(m);
      const theirs = c.oracleEncode(m);
      assert.deepEqual(ours, theirs, `message ${i}`);
      assert.deepEqual(known(c.decode(theirs)), known(c.oracleDecode(theirs)), `message ${i}`);
    }
  });

  Deno.test(`${c.what}: concatenated encodings merge as in protobuf-es`, () => {
    for (let i = 0; i < 200; i++) {
      const a = c.oracleEncode(c.random());
      const b = c.oracleEncode(c.random());
      const both = new Uint8Array([...a, ...b]);
      assert.deepEqual(known(c.decode(both)), known(c.oracleDecode(both)), `pair ${i}`);
    }
  });

  Deno.test(`${c.what}: unknown fields are skipped, malformed bytes throw`, () => {
    const m = c.oracleEncode(c.random());
    // Unknown fields 15 (varint), 16 (fixed64), 17 (bytes), 18 (fixed32), 19 (a group).
    const extra = [
      0x78,
      0x96,
      0x01, // 15: varint 150
      0x81,
      0x01,
      1,
      2,
      3,
      4,
      5,
      6,
      7,
      8, // 16: fixed64
      0x8a,
      0x01,
      2,
      9,
      9, // 17: two bytes
      0x95,
      0x01,
      1,
      2,
      3,
      4, // 18: fixed32
      0x9b,
      0x01,
      0x08,
      0x01,
      0x9c,
      0x01, // 19: group { 1: 1 }
    ];
    const withUnknown = new Uint8Array([...m, ...extra]);
    assert.deepEqual(known(c.decode(withUnknown)), known(c.oracleDecode(m)));
    for (
      const bad of [
        new Uint8Array([0x0a, 0x05, 1, 2]), // field 1: length past the end
        new Uint8Array([0x08]), // a tag without its varint
        new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        new Uint8Array([0x0f]), // wire type 7
        new Uint8Array([0x00]), // field number 0
      ]
    ) {
      assert.throws(() => c.decode(bad), WireError, `${[...bad]}`);
      assert.throws(() => c.oracleDecode(bad));
    }
  });
}
