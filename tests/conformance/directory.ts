/**
 * The DirectoryService conformance suite, run against every backend.
 *
 * @module
 */
import assert from "node:assert/strict";
import { B3Digest } from "../../src/castore/digest.ts";
import {
  type Directory,
  directoryDigest,
  makeDirectory,
  ValidateDirectoryError,
} from "../../src/castore/directory.ts";
import { InvalidRequestError } from "../../src/base/errors.ts";
import type { DirectoryService } from "../../src/castore/directory_service.ts";
import { descendTo } from "../../src/castore/traverse.ts";
import { collect } from "../../src/base/async.ts";
import { suiteTest } from "./suite.ts";
import type { Backend } from "./backends.ts";
import {
  DIRECTORY_A,
  DIRECTORY_B,
  DIRECTORY_C,
  DIRECTORY_COMPLICATED,
  DIRECTORY_WITH_KEEP,
  DUMMY_DIGEST,
} from "../fixtures.ts";

const enc = new TextEncoder();
const digests = (dirs: Directory[]) => dirs.map((d) => directoryDigest(d).toString());

async function putAll(svc: DirectoryService, dirs: Directory[]): Promise<B3Digest> {
  const p = svc.putMultipleStart();
  for (const d of dirs) await p.put(d);
  return await p.close();
}

/**
 * Registers every DirectoryService case on `backend` as `Deno.test`s named
 * `<backend> directory: <case>`.
 */
export function directoryServiceSuite(backend: Backend): void {
  const test = suiteTest<DirectoryService>(backend, "directory", (s) => s.directories);

  test("get of an absent directory is null", async (svc) => {
    assert.equal(await svc.get(directoryDigest(DIRECTORY_A)), null);
    assert.equal(await svc.get(B3Digest.fromBytes(DUMMY_DIGEST)), null);
  });

  test("put then get", async (svc) => {
    for (const d of [DIRECTORY_A, DIRECTORY_WITH_KEEP, DIRECTORY_COMPLICATED]) {
      const digest = await svc.put(d);
      assert.equal(digest.toString(), directoryDigest(d).toString());
      assert.deepEqual(digests([(await svc.get(digest))!]), digests([d]));
    }
  });

  test("put rejects invalid directories", async (svc) => {
    const bad = makeDirectory({
      directories: [{
        $typeName: "tvix.castore.v1.DirectoryNode",
        name: enc.encode("foo"),
        digest: new Uint8Array([0, 0x42]),
        size: 42,
      }],
    });
    await assert.rejects(svc.put(bad), (e) => e instanceof InvalidRequestError);
    assert.equal(await svc.get(directoryDigest(bad)), null);
  });

  test("putter: leaves first, root digest back, recursive get root-first", async (svc) => {
    const root = await putAll(svc, [DIRECTORY_A, DIRECTORY_B]);
    assert.equal(root.toString(), directoryDigest(DIRECTORY_B).toString());
    assert.deepEqual(digests([(await svc.get(root))!]), digests([DIRECTORY_B]));
    assert.deepEqual(
      digests(await collect(svc.getRecursive(root))),
      digests([DIRECTORY_B, DIRECTORY_A]),
    );
  });

  test("putter: duplicates are sent once by recursive get", async (svc) => {
    const root = await putAll(svc, [DIRECTORY_A, DIRECTORY_A, DIRECTORY_C]);
    assert.equal(root.toString(), directoryDigest(DIRECTORY_C).toString());
    assert.deepEqual(
      digests(await collect(svc.getRecursive(root))),
      digests([DIRECTORY_C, DIRECTORY_A]),
    );
  });

  test("recursive get is breadth-first", async (svc) => {
    const root = await putAll(svc, [DIRECTORY_WITH_KEEP, DIRECTORY_COMPLICATED]);
    const outer = makeDirectory({
      directories: [
        {
          $typeName: "tvix.castore.v1.DirectoryNode",
          name: enc.encode("a"),
          digest: root.bytes,
          size: 4,
        },
        {
          $typeName: "tvix.castore.v1.DirectoryNode",
          name: enc.encode("b"),
          digest: directoryDigest(DIRECTORY_WITH_KEEP).bytes,
          size: 1,
        },
      ],
    });
    const top = await putAll(svc, [DIRECTORY_WITH_KEEP, DIRECTORY_COMPLICATED, outer]);
    assert.deepEqual(
      digests(await collect(svc.getRecursive(top))),
      digests([outer, DIRECTORY_COMPLICATED, DIRECTORY_WITH_KEEP]),
    );
  });

  test("putter rejects a child not sent before, and stores nothing", async (svc) => {
    const p = svc.putMultipleStart();
    await assert.rejects(
      (async () => {
        await p.put(DIRECTORY_B);
        await p.close();
      })(),
      (e) => e instanceof InvalidRequestError && /not sent before/.test((e as Error).message),
    );
    assert.equal(await svc.get(directoryDigest(DIRECTORY_B)), null);
  });

  test("putter rejects a wrong child size, and stores nothing", async (svc) => {
    const wrong = makeDirectory({
      directories: [{
        $typeName: "tvix.castore.v1.DirectoryNode",
        name: enc.encode("foo"),
        digest: directoryDigest(DIRECTORY_WITH_KEEP).bytes,
        size: 42,
      }],
    });
    const p = svc.putMultipleStart();
    await assert.rejects(
      (async () => {
        await p.put(DIRECTORY_WITH_KEEP);
        await p.put(wrong);
        await p.close();
      })(),
      (e) => e instanceof InvalidRequestError && /size/.test((e as Error).message),
    );
    assert.equal(await svc.get(directoryDigest(DIRECTORY_WITH_KEEP)), null);
  });

  test("putter rejects an invalid directory", async (svc) => {
    const bad = makeDirectory({
      symlinks: [{
        $typeName: "tvix.castore.v1.SymlinkNode",
        name: enc.encode("a/b"),
        target: enc.encode("x"),
      }],
    });
    const p = svc.putMultipleStart();
    await assert.rejects(
      (async () => {
        await p.put(bad);
        await p.close();
      })(),
      (e) => e instanceof InvalidRequestError,
    );
  });

  test("putter with no directories fails", async (svc) => {
    await assert.rejects(svc.putMultipleStart().close(), (e) => e instanceof InvalidRequestError);
  });

  test("recursive get fails on a hole", async (svc) => {
    // put() alone does not require children, so B can be stored without A. Behind a gRPC
    // daemon it cannot: the wire's Put rejects a child not sent in the same stream (wire.md),
    // so the remote put() refuses up front instead, and there is no hole to find.
    let b;
    try {
      b = await svc.put(DIRECTORY_B);
    } catch (e) {
      if (e instanceof InvalidRequestError && /not on the server/.test(e.message)) return;
      throw e;
    }
    await assert.rejects(collect(svc.getRecursive(b)), /does not exist/);
  });

  test("descendTo finds nodes by path", async (svc) => {
    const root = await putAll(svc, [DIRECTORY_WITH_KEEP, DIRECTORY_COMPLICATED]);
    const rootNode = {
      case: "directory" as const,
      value: {
        $typeName: "tvix.castore.v1.DirectoryNode" as const,
        name: enc.encode("root"),
        digest: root.bytes,
        size: 4,
      },
    };
    assert.equal((await descendTo(svc, rootNode, ""))?.value.name, rootNode.value.name);
    const keep = await descendTo(svc, rootNode, "keep/.keep");
    assert.equal(keep?.case, "file");
    assert.equal((await descendTo(svc, rootNode, "aa"))?.case, "symlink");
    assert.equal(await descendTo(svc, rootNode, "nope"), null);
    assert.equal(await descendTo(svc, rootNode, "aa/x"), null);
  });

  test("validation errors carry the seed's kinds", async (svc) => {
    const bad = makeDirectory({
      files: [{
        $typeName: "tvix.castore.v1.FileNode",
        name: enc.encode(".."),
        digest: DUMMY_DIGEST,
        size: 1,
        executable: false,
      }],
    });
    await assert.rejects(
      svc.put(bad),
      (e) => e instanceof ValidateDirectoryError && e.kind === "InvalidName",
    );
  });

  test("names longer than 255 bytes are refused, 255 are fine", async (svc) => {
    const link = (name: string) =>
      makeDirectory({
        symlinks: [{
          $typeName: "tvix.castore.v1.SymlinkNode",
          name: enc.encode(name),
          target: enc.encode("x"),
        }],
      });
    const ok = link("n".repeat(255));
    assert.equal((await svc.put(ok)).toString(), directoryDigest(ok).toString());
    const long = link("n".repeat(256));
    await assert.rejects(
      svc.put(long),
      (e) => e instanceof ValidateDirectoryError && e.kind === "InvalidName",
    );
    await assert.rejects(putAll(svc, [long]), InvalidRequestError);
    assert.equal(await svc.get(directoryDigest(long)), null);
  });

  test("symlink targets: empty, with a NUL or over 4095 bytes are refused", async (svc) => {
    const link = (target: Uint8Array) =>
      makeDirectory({
        symlinks: [{ $typeName: "tvix.castore.v1.SymlinkNode", name: enc.encode("l"), target }],
      });
    const ok = link(new Uint8Array(4095).fill(0x61));
    await putAll(svc, [ok]);
    assert.notEqual(await svc.get(directoryDigest(ok)), null);
    for (
      const [target, why] of [
        [new Uint8Array(), /symlink "l" has an invalid target: it is empty/],
        [enc.encode("a\0b"), /symlink "l" has an invalid target: it contains a NUL byte/],
        [new Uint8Array(4096).fill(0x61), /it is 4096 bytes \(at most 4095\)/],
      ] as const
    ) {
      const bad = link(target);
      await assert.rejects(
        svc.put(bad),
        (e) =>
          e instanceof ValidateDirectoryError && e.kind === "InvalidSymlinkTarget" &&
          why.test(e.message),
      );
      await assert.rejects(putAll(svc, [bad]), why);
      assert.equal(await svc.get(directoryDigest(bad)), null);
    }
  });

  test("putter rejects a directory nothing after it refers to, naming it", async (svc) => {
    // DIRECTORY_WITH_KEEP is valid and sent first, but the root does not refer to it.
    await assert.rejects(
      putAll(svc, [DIRECTORY_WITH_KEEP, DIRECTORY_A, DIRECTORY_B]),
      (e) =>
        e instanceof InvalidRequestError &&
        e.message.includes(directoryDigest(DIRECTORY_WITH_KEEP).toString()) &&
        /not referred to by any directory sent after it/.test(e.message),
    );
    for (const d of [DIRECTORY_WITH_KEEP, DIRECTORY_A, DIRECTORY_B]) {
      assert.equal(await svc.get(directoryDigest(d)), null);
    }
    // A root sent again at the end leaves the directory that referred to it stranded.
    await assert.rejects(
      putAll(svc, [DIRECTORY_A, DIRECTORY_B, DIRECTORY_A]),
      (e) =>
        e instanceof InvalidRequestError &&
        e.message.includes(directoryDigest(DIRECTORY_B).toString()),
    );
    assert.equal(await svc.get(directoryDigest(DIRECTORY_B)), null);
    // The same directory twice in a row is one closure.
    const root = await putAll(svc, [DIRECTORY_A, DIRECTORY_A]);
    assert.equal(root.toString(), directoryDigest(DIRECTORY_A).toString());
  });
}
