import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import { putBlob } from "../../src/castore/blob_util.ts";
import { B3Digest } from "../../src/castore/digest.ts";
import {
  type AnyNode,
  directoryDigest,
  directoryNodeFor,
  makeDirectory,
} from "../../src/castore/directory.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import { NotFoundError, StorageError } from "../../src/base/errors.ts";
import {
  DirectoryNodeSchema,
  FileNodeSchema,
  SymlinkNodeSchema,
} from "../../src/gen/tvix/castore/protos/castore_pb.ts";
import { calculateNar } from "../../src/nar/hash.ts";
import { renderNar } from "../../src/nar/render.ts";
import { collect } from "../../src/base/async.ts";
import { concat } from "../../src/base/bytes.ts";
import {
  DIRECTORY_COMPLICATED,
  EMPTY_BLOB_DIGEST,
  fixtureServices,
  HELLOWORLD_BLOB_CONTENTS,
  HELLOWORLD_BLOB_DIGEST,
  NAR_CONTENTS_COMPLICATED,
  NAR_CONTENTS_HELLOWORLD,
  NAR_CONTENTS_SYMLINK,
} from "./fixtures.ts";

const te = new TextEncoder();
const NAME = te.encode("doesntmatter");

async function render(
  node: AnyNode,
  blobs = new MemoryBlobService(),
  dirs = new MemoryDirectoryService(),
): Promise<Uint8Array> {
  return concat(await collect(renderNar(node, blobs, dirs)));
}

function fileNode(digest: Uint8Array, size: number, executable = false): AnyNode {
  return { case: "file", value: create(FileNodeSchema, { name: NAME, digest, size, executable }) };
}

const sha256 = (b: Uint8Array) => new Uint8Array(createHash("sha256").update(b).digest());

Deno.test("single symlink renders the seed's NAR_CONTENTS_SYMLINK", async () => {
  const node: AnyNode = {
    case: "symlink",
    value: create(SymlinkNodeSchema, { name: NAME, target: te.encode("/nix/store/somewhereelse") }),
  };
  // Nothing in the services: a symlink needs no lookups.
  assert.deepEqual(await render(node), NAR_CONTENTS_SYMLINK);
});

Deno.test("single file renders the seed's NAR_CONTENTS_HELLOWORLD", async () => {
  const { blobs, directories } = await fixtureServices();
  const node = fileNode(HELLOWORLD_BLOB_DIGEST.bytes, HELLOWORLD_BLOB_CONTENTS.length);
  assert.deepEqual(await render(node, blobs, directories), NAR_CONTENTS_HELLOWORLD);
});

Deno.test("empty file is 112 bytes, empty directory 96", async () => {
  const { blobs, directories } = await fixtureServices();
  const f = await render(fileNode(EMPTY_BLOB_DIGEST.bytes, 0), blobs, directories);
  assert.equal(f.length, 112);
  const x = await render(fileNode(EMPTY_BLOB_DIGEST.bytes, 0, true), blobs, directories);
  assert.equal(x.length, 112 + 32); // "executable" + "" tokens
  const empty = makeDirectory({});
  await directories.put(empty);
  const d = await render(
    { case: "directory", value: directoryNodeFor(NAME, empty) },
    blobs,
    directories,
  );
  assert.equal(d.length, 96);
});

Deno.test("complicated directory renders NAR_CONTENTS_COMPLICATED; calculateNar agrees", async () => {
  const { blobs, directories } = await fixtureServices();
  const node: AnyNode = {
    case: "directory",
    value: directoryNodeFor(NAME, DIRECTORY_COMPLICATED),
  };
  assert.deepEqual(await render(node, blobs, directories), NAR_CONTENTS_COMPLICATED);
  const calc = await calculateNar(node, blobs, directories);
  assert.equal(calc.narSize, NAR_CONTENTS_COMPLICATED.length);
  assert.deepEqual(calc.narSha256, sha256(NAR_CONTENTS_COMPLICATED));
});

Deno.test("missing blob is NotFoundError naming the digest", async () => {
  const node = fileNode(HELLOWORLD_BLOB_DIGEST.bytes, HELLOWORLD_BLOB_CONTENTS.length);
  await assert.rejects(render(node), (e: Error) => {
    assert.ok(e instanceof NotFoundError);
    assert.ok(e.message.includes(HELLOWORLD_BLOB_DIGEST.toString()), e.message);
    return true;
  });
  await assert.rejects(
    calculateNar(node, new MemoryBlobService(), new MemoryDirectoryService()),
    NotFoundError,
  );
});

Deno.test("missing directory is NotFoundError naming the digest", async () => {
  const { blobs } = await fixtureServices();
  const node: AnyNode = { case: "directory", value: directoryNodeFor(NAME, DIRECTORY_COMPLICATED) };
  await assert.rejects(render(node, blobs), (e: Error) => {
    assert.ok(e instanceof NotFoundError);
    assert.ok(e.message.includes(directoryDigest(DIRECTORY_COMPLICATED).toString()), e.message);
    assert.ok(e.message.includes("doesntmatter"), e.message);
    return true;
  });
  // A child directory missing (root present): names the child's digest.
  const dirs = new MemoryDirectoryService();
  await dirs.put(DIRECTORY_COMPLICATED);
  const childDigest = DIRECTORY_COMPLICATED.directories[0].digest;
  await assert.rejects(render(node, blobs, dirs), (e: Error) => {
    assert.ok(e instanceof NotFoundError);
    assert.ok(e.message.includes(B3Digest.fromBytes(childDigest).toString()), e.message);
    return true;
  });
});

Deno.test("blob whose length differs from the node size is StorageError", async () => {
  const { blobs, directories } = await fixtureServices();
  for (const size of [42, 2, 0]) {
    const node = fileNode(HELLOWORLD_BLOB_DIGEST.bytes, size);
    await assert.rejects(render(node, blobs, directories), (e: Error) => {
      assert.ok(e instanceof StorageError, String(e));
      assert.ok(e.message.includes(HELLOWORLD_BLOB_DIGEST.toString()), e.message);
      return true;
    });
    await assert.rejects(calculateNar(node, blobs, directories), StorageError);
  }
});

Deno.test("large file streams in chunks and hashes like the buffered NAR", async () => {
  const blobs = new MemoryBlobService();
  const dirs = new MemoryDirectoryService();
  // 2.5 MiB: several blob chunks, and a size not a multiple of 8 (padding after the data).
  const data = new Uint8Array(2.5 * 1024 * 1024 + 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff;
  const digest = await putBlob(blobs, data);
  const sub = makeDirectory({
    files: [
      create(FileNodeSchema, {
        name: te.encode("big"),
        digest: digest.bytes,
        size: data.length,
        executable: true,
      }),
    ],
  });
  await dirs.put(sub);
  const root = makeDirectory({
    directories: [create(DirectoryNodeSchema, directoryNodeFor(te.encode("d"), sub))],
  });
  await dirs.put(root);
  const node: AnyNode = { case: "directory", value: directoryNodeFor(NAME, root) };
  let chunks = 0;
  let largest = 0;
  for await (const p of renderNar(node, blobs, dirs)) {
    chunks++;
    largest = Math.max(largest, p.length);
  }
  assert.ok(chunks > 2, `only ${chunks} chunks`);
  assert.ok(largest <= 1 << 20, `a chunk of ${largest} bytes`);
  const bytes = await render(node, blobs, dirs);
  const calc = await calculateNar(node, blobs, dirs);
  assert.equal(calc.narSize, bytes.length);
  assert.deepEqual(calc.narSha256, sha256(bytes));
});
