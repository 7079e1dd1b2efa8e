/**
 * The importer's directory frames on their own (no filesystem): nodes that arrive late, puts
 * leaves first and each distinct directory once, and the putter's root checked.
 */
import assert from "node:assert/strict";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import { blake3 } from "../../src/castore/digest.ts";
import {
  type Directory,
  directoryDigest,
  type DirectoryNode,
  type FileNode,
} from "../../src/castore/directory.ts";
import type { DirectoryPutter, DirectoryService } from "../../src/castore/directory_service.ts";
import { DirectoryFrames } from "../../src/castore/import/frames.ts";

const enc = new TextEncoder();
const file = (name: string): FileNode => ({
  $typeName: "tvix.castore.v1.FileNode",
  name: enc.encode(name),
  digest: blake3(enc.encode(name)).bytes,
  size: name.length,
  executable: false,
});

/** Records the directories put, in order. */
function recording(inner: DirectoryService, fake?: Uint8Array) {
  const put: Directory[] = [];
  const service: DirectoryService = Object.assign(Object.create(inner), {
    putMultipleStart: (): DirectoryPutter => {
      const p = inner.putMultipleStart();
      return {
        put: (d) => (put.push(d), p.put(d)),
        close: async () => {
          const digest = await p.close();
          return fake ? blake3(fake) : digest;
        },
      };
    },
  });
  return { service, put };
}

Deno.test("frames: a late file node, puts leaves first, equal directories once", async () => {
  const { service, put } = recording(new MemoryDirectoryService());
  const errors: unknown[] = [];
  const frames = new DirectoryFrames(service, (e) => errors.push(e));
  let uploaded!: (n: FileNode) => void;
  const late = new Promise<FileNode>((r) => uploaded = r);
  // root/{a/{x}, b/{x}, c/{big}}: a and b are the same directory.
  frames.enter();
  for (const sub of ["a", "b"]) {
    frames.enter();
    frames.file(1, file("x"));
    frames.leave(enc.encode(sub));
  }
  frames.enter();
  frames.file(2, late);
  frames.leave(enc.encode("c"));
  frames.leave(enc.encode("root"));
  await new Promise((r) => setTimeout(r, 1));
  assert.equal(put.length, 1); // a, put at once; c waits for its file, and the rest behind it
  uploaded(file("big"));
  const root = await frames.root();
  await frames.puts();
  await frames.close(root);
  assert.deepEqual(errors, []);
  assert.equal(root.case, "directory");
  const value = root.value as DirectoryNode;
  assert.equal(value.size, 6); // a, a/x, b, b/x, c, c/big
  const names = put.map((d) =>
    d.directories.map((n) => new TextDecoder().decode(n.name)).join(",") + "|" +
    d.files.map((n) => new TextDecoder().decode(n.name)).join(",")
  );
  assert.deepEqual(names, ["|x", "|big", "a,b,c|"]); // b equals a: put once
  assert.deepEqual(directoryDigest(put[2]).bytes, value.digest);
});

Deno.test("frames: a putter returning another root fails close, naming the mismatch", async () => {
  const { service } = recording(new MemoryDirectoryService(), enc.encode("not the root"));
  const frames = new DirectoryFrames(service, () => {});
  frames.enter();
  frames.file(1, file("x"));
  frames.leave(enc.encode("root"));
  const root = await frames.root();
  await frames.puts();
  await assert.rejects(
    frames.close(root),
    /directory putter returned root .*, expected the imported root/,
  );
});

Deno.test("frames: a failing put reaches fail, and puts() rejects with it", async () => {
  const failing: DirectoryService = Object.assign(Object.create(new MemoryDirectoryService()), {
    putMultipleStart: (): DirectoryPutter => ({
      put: () => Promise.reject(new Error("directory put failed")),
      close: () => Promise.reject(new Error("not reached")),
    }),
  });
  const errors: unknown[] = [];
  const frames = new DirectoryFrames(failing, (e) => errors.push(e));
  frames.enter();
  frames.leave(enc.encode("root"));
  await assert.rejects(frames.puts(), /directory put failed/);
  assert.equal(errors.length, 1);
});
