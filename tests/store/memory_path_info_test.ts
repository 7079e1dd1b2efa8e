import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { collect } from "../../src/base/async.ts";
import {
  type AnyNode,
  directoryNodeFor,
  renameNode,
  toNodeMessage,
} from "../../src/castore/directory.ts";
import { InvalidRequestError, NotFoundError } from "../../src/base/errors.ts";
import {
  NARInfo_SignatureSchema,
  NARInfoSchema,
  PathInfoSchema,
} from "../../src/gen/tvix/store/protos/pathinfo_pb.ts";
import { ValidatePathInfoError } from "../../src/store/path_info.ts";
import { MemoryPathInfoService } from "../../src/backends/memory/path_info.ts";
import { StorePath } from "../../src/store/store_path.ts";
import {
  DIRECTORY_COMPLICATED,
  DIRECTORY_WITH_KEEP,
  fixtureServices,
  NAR_CONTENTS_COMPLICATED,
} from "../nar/fixtures.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import type { DirectoryService } from "../../src/castore/directory_service.ts";

const te = new TextEncoder();
const NAME_A = "00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60";
const NAME_B = "00000000000000000000000000000000-dummy";

function info(name: string) {
  const node: AnyNode = {
    case: "directory",
    value: directoryNodeFor(te.encode(name), DIRECTORY_COMPLICATED),
  };
  return create(PathInfoSchema, {
    node: toNodeMessage(node),
    references: [new Uint8Array(20)],
    narinfo: create(NARInfoSchema, {
      narSize: BigInt(NAR_CONTENTS_COMPLICATED.length),
      narSha256: new Uint8Array(createHash("sha256").update(NAR_CONTENTS_COMPLICATED).digest()),
      referenceNames: [NAME_B],
    }),
  });
}

Deno.test("MemoryPathInfoService: put, get, list", async () => {
  const { blobs, directories } = await fixtureServices();
  const svc = new MemoryPathInfoService(blobs, directories);
  const a = StorePath.parse(NAME_A);
  assert.equal(await svc.get(a.digest), null);

  const stored = await svc.put(info(NAME_A));
  assert.deepEqual(stored, info(NAME_A));
  const got = await svc.get(a.digest);
  assert.ok(got);
  assert.deepEqual(got, info(NAME_A));

  // What get returns is a copy: changing it does not change the store.
  got.references[0][0] = 1;
  assert.equal((await svc.get(a.digest))!.references[0][0], 0);

  await svc.put(info(NAME_B));
  const names = (await collect(svc.list())).map((p) =>
    new TextDecoder().decode(p.node!.node.value!.name)
  );
  assert.deepEqual(names.sort(), [NAME_B, NAME_A].sort());

  // A second put of the same content adds its signatures.
  const again = info(NAME_A);
  again.narinfo!.signatures.push(
    create(NARInfo_SignatureSchema, { name: "cache.example.org-1", data: new Uint8Array(64) }),
  );
  await svc.put(again);
  assert.equal((await svc.get(a.digest))!.narinfo!.signatures.length, 1);
  assert.equal((await collect(svc.list())).length, 2);
  await svc.close();
});

Deno.test("MemoryPathInfoService: bad requests", async () => {
  const { blobs, directories } = await fixtureServices();
  const svc = new MemoryPathInfoService(blobs, directories);
  await assert.rejects(svc.get(new Uint8Array(19)), InvalidRequestError);
  await assert.rejects(svc.get(new Uint8Array(32)), /digest length: 32/);
  const bad = info(NAME_A);
  bad.references = [];
  await assert.rejects(svc.put(bad), ValidatePathInfoError);
  await assert.rejects(svc.put(create(PathInfoSchema, {})), { kind: "NoNodePresent" });
  assert.equal((await collect(svc.list())).length, 0);
});

Deno.test("MemoryPathInfoService: calculateNar, cached by node", async () => {
  const { blobs, directories } = await fixtureServices();
  // Counts directory lookups, to see the cache at work.
  let gets = 0;
  const counting: DirectoryService = {
    get: (d) => {
      gets++;
      return directories.get(d);
    },
    put: (d) => directories.put(d),
    getRecursive: (d) => directories.getRecursive(d),
    putMultipleStart: () => directories.putMultipleStart(),
    close: () => directories.close(),
  };
  const svc = new MemoryPathInfoService(blobs, counting);
  const node: AnyNode = {
    case: "directory",
    value: directoryNodeFor(te.encode("x"), DIRECTORY_COMPLICATED),
  };
  const want = new Uint8Array(createHash("sha256").update(NAR_CONTENTS_COMPLICATED).digest());
  const r = await svc.calculateNar(node);
  assert.equal(r.narSize, NAR_CONTENTS_COMPLICATED.length);
  assert.deepEqual(r.narSha256, want);
  assert.equal(gets, 2);
  r.narSha256.fill(0); // must not corrupt the cache

  // From the cache (the root name does not matter), also for concurrent callers.
  const [c1, c2] = await Promise.all([
    svc.calculateNar(renameNode(node, te.encode("other"))),
    svc.calculateNar(node),
  ]);
  assert.deepEqual(c1.narSha256, want);
  assert.deepEqual(c2.narSha256, want);
  assert.equal(gets, 2);

  // Missing data: NotFoundError, and failures are not cached.
  const fresh = new MemoryPathInfoService(blobs, new MemoryDirectoryService());
  await assert.rejects(fresh.calculateNar(node), NotFoundError);
  const dirs2 = new MemoryDirectoryService();
  const again = new MemoryPathInfoService(blobs, dirs2);
  await assert.rejects(again.calculateNar(node), NotFoundError);
  for (const d of [DIRECTORY_WITH_KEEP, DIRECTORY_COMPLICATED]) await dirs2.put(d);
  assert.deepEqual((await again.calculateNar(node)).narSha256, want);
  await svc.close();
});
