import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { InvalidRequestError } from "../../src/base/errors.ts";
import {
  DirectoryNodeSchema,
  FileNodeSchema,
  type Node,
  NodeSchema,
  SymlinkNodeSchema,
} from "../../src/gen/tvix/castore/protos/castore_pb.ts";
import {
  NARInfo_CA_Hash,
  NARInfo_CASchema,
  NARInfoSchema,
  type PathInfo,
  PathInfoSchema,
  StorePathSchema,
} from "../../src/gen/tvix/store/protos/pathinfo_pb.ts";
import { fromNodeMessage } from "../../src/castore/directory.ts";
import {
  makePathInfo,
  mergePathInfo,
  type PathInfoErrorKind,
  validatePathInfo,
  ValidatePathInfoError,
} from "../../src/store/path_info.ts";
import { StorePath } from "../../src/store/store_path.ts";

const te = new TextEncoder();
// The seed's fixtures: DUMMY_NAME, DUMMY_DIGEST (32 bytes), DUMMY_OUTPUT_HASH (20 zero bytes).
const DUMMY_NAME = "00000000000000000000000000000000-dummy";
const DUMMY_DIGEST = Uint8Array.from({ length: 32 }, (_, i) => i);
const DUMMY_OUTPUT_HASH = new Uint8Array(20);

function dirNode(name: string, digest = DUMMY_DIGEST): Node {
  return create(NodeSchema, {
    node: {
      case: "directory",
      value: create(DirectoryNodeSchema, { name: te.encode(name), digest }),
    },
  });
}

/** The seed's PATH_INFO_WITHOUT_NARINFO. */
function withoutNarinfo(): PathInfo {
  return create(PathInfoSchema, {
    node: dirNode(DUMMY_NAME),
    references: [DUMMY_OUTPUT_HASH.slice()],
  });
}

/** The seed's PATH_INFO_WITH_NARINFO. */
function withNarinfo(): PathInfo {
  const p = withoutNarinfo();
  p.narinfo = create(NARInfoSchema, {
    narSize: 0n,
    narSha256: DUMMY_DIGEST,
    referenceNames: [DUMMY_NAME],
  });
  return p;
}

function assertKind(info: PathInfo, kind: PathInfoErrorKind, re?: RegExp): void {
  assert.throws(() => validatePathInfo(info), (e: Error) => {
    assert.ok(e instanceof ValidatePathInfoError && e instanceof InvalidRequestError, String(e));
    assert.equal(e.kind, kind, e.message);
    if (re) assert.match(e.message, re);
    return true;
  });
}

Deno.test("PathInfo: no node", () => {
  assertKind(create(PathInfoSchema, {}), "NoNodePresent");
  assertKind(create(PathInfoSchema, { node: create(NodeSchema, {}) }), "NoNodePresent");
});

Deno.test("PathInfo: root node kinds, digest lengths and names", () => {
  const ok = StorePath.parse(DUMMY_NAME);
  const cases: [string, Node, PathInfoErrorKind | null][] = [
    ["dir ok", dirNode(DUMMY_NAME), null],
    ["dir bad digest", dirNode(DUMMY_NAME, new Uint8Array()), "InvalidNodeDigestLen"],
    ["dir bad name", dirNode("invalid"), "InvalidNodeName"],
    ["file ok", fileNode(DUMMY_NAME, DUMMY_DIGEST), null],
    ["file bad digest", fileNode(DUMMY_NAME, new Uint8Array(31)), "InvalidNodeDigestLen"],
    ["file bad name", fileNode("invalid", DUMMY_DIGEST), "InvalidNodeName"],
    ["symlink ok", symlinkNode(DUMMY_NAME), null],
    ["symlink bad name", symlinkNode("invalid"), "InvalidNodeName"],
    ["name with slash", symlinkNode(`${DUMMY_NAME}/x`), "InvalidNodeName"],
  ];
  for (const [what, node, kind] of cases) {
    const info = create(PathInfoSchema, { node });
    if (kind === null) assert.ok(validatePathInfo(info).equals(ok), what);
    else assertKind(info, kind);
  }
  // The message names the bad root name and the store path problem.
  assertKind(create(PathInfoSchema, { node: dirNode("invalid") }), "InvalidNodeName", /"invalid"/);
});

function fileNode(name: string, digest: Uint8Array): Node {
  return create(NodeSchema, {
    node: { case: "file", value: create(FileNodeSchema, { name: te.encode(name), digest }) },
  });
}

function symlinkNode(name: string): Node {
  return create(NodeSchema, {
    node: {
      case: "symlink",
      value: create(SymlinkNodeSchema, { name: te.encode(name), target: te.encode("/x") }),
    },
  });
}

Deno.test("PathInfo: references with and without narinfo", () => {
  assert.equal(validatePathInfo(withoutNarinfo()).toString(), DUMMY_NAME);
  assert.equal(validatePathInfo(withNarinfo()).toString(), DUMMY_NAME);
});

Deno.test("PathInfo: inconsistent number of references", () => {
  const p = withNarinfo();
  p.narinfo!.referenceNames = [];
  assertKind(p, "InconsistentNumberOfReferences", /1 references but 0/);
});

Deno.test("PathInfo: reference digest length", () => {
  const p = withoutNarinfo();
  p.references.push(new Uint8Array([0xff, 0xff]));
  assertKind(p, "InvalidReferenceDigestLen", /reference 1 is 2 bytes/);
});

Deno.test("PathInfo: reference name is not a basename", () => {
  const p = withNarinfo();
  p.narinfo!.referenceNames[0] = "/nix/store/00000000000000000000000000000000-dummy";
  assertKind(p, "InvalidNarinfoReferenceName", /reference_names\[0\] "\/nix\/store\/0+-dummy"/);
});

Deno.test("PathInfo: reference name digest differs from the reference", () => {
  const p = withNarinfo();
  p.references[0] = new Uint8Array(20).fill(0xff);
  assertKind(p, "InconsistentNarinfoReferenceNameDigest", /reference_names\[0\]/);
});

Deno.test("PathInfo: nar_sha256 must be 32 bytes", () => {
  const p = withNarinfo();
  p.narinfo!.narSha256 = new Uint8Array(20);
  assertKind(p, "InvalidNarSha256DigestLen", /nar_sha256 is 20 bytes/);
});

Deno.test("PathInfo: checks run in the seed's order (references before node)", () => {
  const p = create(PathInfoSchema, { references: [new Uint8Array(3)] });
  assertKind(p, "InvalidReferenceDigestLen");
});

Deno.test("PathInfo: reference names sorted as Nix sorts them, each once", () => {
  const a = StorePath.parse("00bgd045z0d4icpbc2yyz4gx48ak44la-a");
  const b = StorePath.parse("11bgd045z0d4icpbc2yyz4gx48ak44la-b");
  const p = withNarinfo();
  p.references = [b.digest, a.digest];
  p.narinfo!.referenceNames = [b.toString(), a.toString()];
  assertKind(p, "UnsortedReferences", /reference_names\[1\] "00bgd.*-a" is not after/);
  p.references = [a.digest, a.digest];
  p.narinfo!.referenceNames = [a.toString(), a.toString()];
  assertKind(p, "UnsortedReferences");
  p.references = [a.digest, b.digest];
  p.narinfo!.referenceNames = [a.toString(), b.toString()];
  validatePathInfo(p);
  // makePathInfo sorts and removes duplicates.
  const made = makePathInfo({
    storePath: StorePath.parse(DUMMY_NAME),
    node: fromNodeMessage(dirNode("")),
    narSize: 1,
    narSha256: DUMMY_DIGEST,
    references: [b, a, b],
  });
  assert.deepEqual(made.narinfo?.referenceNames, [a.toString(), b.toString()]);
  validatePathInfo(made);
});

Deno.test("PathInfo: deriver digest length and name", () => {
  const p = withNarinfo();
  p.narinfo!.deriver = create(StorePathSchema, { name: "hello", digest: new Uint8Array(19) });
  assertKind(p, "InvalidDeriver", /deriver digest is 19 bytes \(want 20\)/);
  p.narinfo!.deriver = create(StorePathSchema, { name: "he/llo", digest: new Uint8Array(20) });
  assertKind(p, "InvalidDeriver", /deriver name "he\/llo"/);
  p.narinfo!.deriver = create(StorePathSchema, { name: "hello", digest: new Uint8Array(20) });
  validatePathInfo(p);
  const drv = StorePath.parse("00bgd045z0d4icpbc2yyz4gx48ak44la-hello.drv");
  const made = makePathInfo({
    storePath: StorePath.parse(DUMMY_NAME),
    node: fromNodeMessage(dirNode("")),
    narSize: 1,
    narSha256: DUMMY_DIGEST,
    deriver: drv,
  });
  assert.equal(made.narinfo?.deriver?.name, "hello");
  assert.throws(
    () =>
      makePathInfo({
        storePath: StorePath.parse(DUMMY_NAME),
        node: fromNodeMessage(dirNode("")),
        narSize: 1,
        narSha256: DUMMY_DIGEST,
        deriver: StorePath.parse(DUMMY_NAME),
      }),
    /is not a \.drv store path/,
  );
});

Deno.test("PathInfo: content address kind and digest length", () => {
  const p = withNarinfo();
  p.narinfo!.ca = create(NARInfo_CASchema, {
    type: NARInfo_CA_Hash.NAR_SHA256,
    digest: new Uint8Array(20),
  });
  assertKind(p, "InvalidCA", /NAR_SHA256 digest is 20 bytes \(want 32\)/);
  p.narinfo!.ca = create(NARInfo_CASchema, {
    type: 99 as NARInfo_CA_Hash,
    digest: new Uint8Array(32),
  });
  assertKind(p, "InvalidCA", /unknown content address hash kind 99/);
  p.narinfo!.ca = create(NARInfo_CASchema, {
    type: NARInfo_CA_Hash.FLAT_SHA1,
    digest: new Uint8Array(20),
  });
  validatePathInfo(p);
});

Deno.test("PathInfo merge: a different content address is refused, a missing one added", () => {
  const storePath = StorePath.parse(DUMMY_NAME);
  const base = () =>
    makePathInfo({
      storePath,
      node: fromNodeMessage(dirNode("")),
      narSize: 1,
      narSha256: DUMMY_DIGEST,
    });
  const withCA = (d: number) => {
    const p = base();
    p.narinfo!.ca = create(NARInfo_CASchema, {
      type: NARInfo_CA_Hash.NAR_SHA256,
      digest: new Uint8Array(32).fill(d),
    });
    return p;
  };
  assert.throws(() => mergePathInfo(storePath, withCA(1), withCA(2)), /the content address is/);
  assert.deepEqual(
    mergePathInfo(storePath, base(), withCA(1)).narinfo?.ca?.digest,
    new Uint8Array(32).fill(1),
  );
  assert.deepEqual(
    mergePathInfo(storePath, withCA(1), base()).narinfo?.ca?.digest,
    new Uint8Array(32).fill(1),
  );
});
