/**
 * The PathInfoService conformance suite, run against every backend.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import type { BlobService } from "../../src/castore/blob_service.ts";
import { putBlob } from "../../src/castore/blob_util.ts";
import { collect } from "../../src/base/async.ts";
import { type AnyNode, directoryDigest, toNodeMessage } from "../../src/castore/directory.ts";
import { InvalidRequestError, PreconditionError } from "../../src/base/errors.ts";
import type { DirectoryService } from "../../src/castore/directory_service.ts";
import {
  NARInfo_SignatureSchema,
  NARInfoSchema,
  type PathInfo,
  PathInfoSchema,
} from "../../src/gen/tvix/store/protos/pathinfo_pb.ts";
import { renderNar } from "../../src/nar/render.ts";
import type { PathInfoService } from "../../src/store/path_info_service.ts";
import { StorePath } from "../../src/store/store_path.ts";
import { suiteTest } from "./suite.ts";
import type { Backend } from "./backends.ts";
import {
  BLOB_B,
  BLOB_B_DIGEST,
  DIRECTORY_COMPLICATED,
  DIRECTORY_WITH_KEEP,
  EMPTY,
} from "../fixtures.ts";

const te = new TextEncoder();
const HASH_A = "00bgd045z0d4icpbc2yyz4gx48ak44la";
const HASH_B = "1c8jvhk4wx1qmkznhvw3k6h7hk3ngd5y";

function infoFor(
  basename: string,
  node: AnyNode,
  narSize = 1,
  narSha256 = new Uint8Array(32),
): PathInfo {
  const named = { ...node, value: { ...node.value, name: te.encode(basename) } } as AnyNode;
  return create(PathInfoSchema, {
    node: toNodeMessage(named),
    narinfo: create(NARInfoSchema, { narSize: BigInt(narSize), narSha256 }),
  });
}

const symlink = (target: string): AnyNode => ({
  case: "symlink",
  value: {
    $typeName: "tvix.castore.v1.SymlinkNode",
    name: te.encode("x"),
    target: te.encode(target),
  },
});

/**
 * Registers every PathInfoService case on `backend` as `Deno.test`s named
 * `<backend> path info: <case>`; a case gets the store's three services, `svc` its path info.
 */
export function pathInfoServiceSuite(backend: Backend): void {
  const test = suiteTest<
    { svc: PathInfoService; blobs: BlobService; directories: DirectoryService }
  >(
    backend,
    "path info",
    (s) => ({ svc: s.pathInfos, blobs: s.blobs, directories: s.directories }),
  );

  test("get of an absent path is null", async ({ svc }) => {
    assert.equal(await svc.get(StorePath.parse(`${HASH_A}-foo`).digest), null);
  });

  test("get with a digest that is not 20 bytes is rejected", async ({ svc }) => {
    await assert.rejects(svc.get(new Uint8Array(19)), (e) => e instanceof InvalidRequestError);
  });

  test("put returns what was stored; get and list find it", async ({ svc }) => {
    const a = infoFor(`${HASH_A}-a`, symlink("/nix/store/x"), 120);
    const b = infoFor(`${HASH_B}-b`, symlink("y"), 112);
    const putA = await svc.put(a);
    assert.deepEqual(putA.node, a.node);
    await svc.put(b);
    const got = await svc.get(StorePath.parse(`${HASH_A}-a`).digest);
    assert.ok(got);
    assert.deepEqual(got.node, a.node);
    assert.equal(got.narinfo?.narSize, 120n);
    const listed = (await collect(svc.list())).map((i) =>
      new TextDecoder().decode(i.node!.node.value!.name)
    );
    assert.deepEqual(listed.sort(), [`${HASH_A}-a`, `${HASH_B}-b`]);
  });

  test("put rejects an invalid PathInfo and stores nothing", async ({ svc }) => {
    await assert.rejects(
      svc.put(infoFor("not-a-store-path", symlink("x"))),
      (e) => e instanceof InvalidRequestError,
    );
    await assert.rejects(
      svc.put(create(PathInfoSchema, {})),
      (e) => e instanceof InvalidRequestError,
    );
    assert.equal((await collect(svc.list())).length, 0);
  });

  test("calculateNar matches the rendered NAR and is stable", async ({ svc, blobs, directories }) => {
    await putBlob(blobs, EMPTY);
    await putBlob(blobs, BLOB_B);
    const p = directories.putMultipleStart();
    await p.put(DIRECTORY_WITH_KEEP);
    await p.put(DIRECTORY_COMPLICATED);
    const root = await p.close();
    const nodes: AnyNode[] = [
      {
        case: "directory",
        value: {
          $typeName: "tvix.castore.v1.DirectoryNode",
          name: te.encode("d"),
          digest: root.bytes,
          size: 4,
        },
      },
      {
        case: "file",
        value: {
          $typeName: "tvix.castore.v1.FileNode",
          name: te.encode("f"),
          digest: BLOB_B_DIGEST.bytes,
          size: BLOB_B.length,
          executable: true,
        },
      },
      symlink("/nix/store/somewhereelse"),
    ];
    for (const node of nodes) {
      const h = createHash("sha256");
      let size = 0;
      for await (const c of renderNar(node, blobs, directories)) {
        h.update(c);
        size += c.length;
      }
      const want = new Uint8Array(h.digest());
      for (let i = 0; i < 2; i++) {
        const got = await svc.calculateNar(node);
        assert.equal(got.narSize, size);
        assert.deepEqual(new Uint8Array(got.narSha256), want);
      }
    }
  });

  test("calculateNar fails when referenced data is missing", async ({ svc }) => {
    const missing: AnyNode = {
      case: "directory",
      value: {
        $typeName: "tvix.castore.v1.DirectoryNode",
        name: te.encode("d"),
        digest: directoryDigest(DIRECTORY_COMPLICATED).bytes,
        size: 4,
      },
    };
    await assert.rejects(svc.calculateNar(missing));
    const file: AnyNode = {
      case: "file",
      value: {
        $typeName: "tvix.castore.v1.FileNode",
        name: te.encode("f"),
        digest: BLOB_B_DIGEST.bytes,
        size: BLOB_B.length,
        executable: false,
      },
    };
    await assert.rejects(svc.calculateNar(file));
  });

  test("put refuses a symlink root with an empty, NUL or too long target", async ({ svc }) => {
    for (const target of ["", "a\0b", "a".repeat(4096)]) {
      await assert.rejects(
        svc.put(infoFor(`${HASH_A}-a`, symlink(target), 120)),
        (e) => e instanceof InvalidRequestError && /invalid target/.test(e.message),
      );
    }
    assert.equal((await collect(svc.list())).length, 0);
  });

  test("a stored path is immutable: other content is refused, naming it", async ({ svc }) => {
    const first = infoFor(`${HASH_A}-a`, symlink("/nix/store/x"), 120, new Uint8Array(32));
    await svc.put(first);
    const changes: [string, PathInfo][] = [
      ["the root node", infoFor(`${HASH_A}-a`, symlink("/nix/store/y"), 120)],
      ["the root node", infoFor(`${HASH_A}-other`, symlink("/nix/store/x"), 120)],
      ["the NAR size", infoFor(`${HASH_A}-a`, symlink("/nix/store/x"), 121)],
      [
        "the NAR hash",
        infoFor(`${HASH_A}-a`, symlink("/nix/store/x"), 120, new Uint8Array(32).fill(1)),
      ],
    ];
    for (const [what, changed] of changes) {
      await assert.rejects(
        svc.put(changed),
        (e) =>
          e instanceof PreconditionError && e.message.includes(`/nix/store/${HASH_A}-`) &&
          e.message.includes(what),
        what,
      );
    }
    const got = await svc.get(StorePath.parse(`${HASH_A}-a`).digest);
    assert.deepEqual(got?.node, first.node);
    assert.equal(got?.narinfo?.narSize, 120n);
    assert.deepEqual(got?.narinfo?.narSha256, new Uint8Array(32));
  });

  test("a put of the same content adds its signatures, each once, in order", async ({ svc }) => {
    const sig = (name: string, byte: number) =>
      create(NARInfo_SignatureSchema, { name, data: new Uint8Array(64).fill(byte) });
    const withSigs = (...sigs: ReturnType<typeof sig>[]) => {
      const info = infoFor(`${HASH_A}-a`, symlink("/nix/store/x"), 120);
      info.narinfo!.signatures = sigs;
      return info;
    };
    const names = (i: PathInfo | null) =>
      i?.narinfo?.signatures.map((s) => `${s.name}:${s.data[0]}`);
    await svc.put(withSigs(sig("a-1", 1)));
    const merged = await svc.put(withSigs(sig("b-1", 2), sig("a-1", 1), sig("b-1", 2)));
    assert.deepEqual(names(merged), ["a-1:1", "b-1:2"]);
    // The same key name with other data is another signature.
    await svc.put(withSigs(sig("a-1", 3)));
    await svc.put(withSigs());
    const got = await svc.get(StorePath.parse(`${HASH_A}-a`).digest);
    assert.deepEqual(names(got), ["a-1:1", "b-1:2", "a-1:3"]);
    assert.equal((await collect(svc.list())).length, 1);
  });

  test("put refuses a root whose directory or blob is not in the store", async ({ svc, blobs, directories }) => {
    const dirRoot: AnyNode = {
      case: "directory",
      value: {
        $typeName: "tvix.castore.v1.DirectoryNode",
        name: te.encode("d"),
        digest: directoryDigest(DIRECTORY_WITH_KEEP).bytes,
        size: 1,
      },
    };
    const fileRoot: AnyNode = {
      case: "file",
      value: {
        $typeName: "tvix.castore.v1.FileNode",
        name: te.encode("f"),
        digest: BLOB_B_DIGEST.bytes,
        size: BLOB_B.length,
        executable: false,
      },
    };
    const dirInfo = infoFor(`${HASH_A}-d`, dirRoot);
    const fileInfo = infoFor(`${HASH_B}-f`, fileRoot);
    await assert.rejects(
      svc.put(dirInfo),
      (e) =>
        e instanceof PreconditionError && e.message.includes(`/nix/store/${HASH_A}-d`) &&
        e.message.includes(directoryDigest(DIRECTORY_WITH_KEEP).toString()),
    );
    await assert.rejects(
      svc.put(fileInfo),
      (e) =>
        e instanceof PreconditionError && e.message.includes(`/nix/store/${HASH_B}-f`) &&
        e.message.includes(BLOB_B_DIGEST.toString()),
    );
    assert.equal((await collect(svc.list())).length, 0);
    // Once the data is there, the same puts succeed.
    await putBlob(blobs, EMPTY);
    const p = directories.putMultipleStart();
    await p.put(DIRECTORY_WITH_KEEP);
    await p.close();
    await putBlob(blobs, BLOB_B);
    await svc.put(dirInfo);
    await svc.put(fileInfo);
    assert.equal((await collect(svc.list())).length, 2);
  });
}
