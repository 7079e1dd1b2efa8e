// InodeTracker, as the seed's inode_tracker tests: same content, same inode.
import assert from "node:assert/strict";
import { bytesKey, InodeTracker, ROOT_INO } from "../../src/fuse/inodes.ts";
import { attrOf } from "../../src/fuse/store_fs.ts";
import {
  b,
  BLOB_A,
  BLOB_B,
  DIRECTORY_COMPLICATED,
  DIRECTORY_WITH_KEEP,
  dirNode,
  EMPTY,
  fileNode,
  symlinkNode,
} from "./helpers.ts";

Deno.test("inodes: nothing is known at first; the first inode follows the root", () => {
  const t = new InodeTracker();
  assert.equal(t.get(ROOT_INO), undefined);
  assert.equal(t.get(2), undefined);
  assert.equal(t.put(fileNode("a", BLOB_A)), 2);
});

Deno.test("inodes: files by digest and executable bit", () => {
  const t = new InodeTracker();
  const ino = t.put(fileNode("a", BLOB_A));
  const data = t.get(ino);
  assert.equal(data?.kind, "file");
  assert.equal(t.put(fileNode("other-name", BLOB_A)), ino, "the name does not matter");
  assert.notEqual(t.put(fileNode("a", BLOB_B)), ino);
  const exe = t.put(fileNode("a", BLOB_A, true));
  assert.notEqual(exe, ino, "an executable copy has its own mode, so its own inode");
  assert.equal(attrOf(exe, t.get(exe)!).mode & 0o777, 0o555);
  assert.equal(attrOf(ino, data!).mode & 0o777, 0o444);
});

Deno.test("inodes: symlinks by target", () => {
  const t = new InodeTracker();
  const ino = t.put(symlinkNode("x", "target"));
  assert.equal(t.put(symlinkNode("y", "target")), ino);
  assert.notEqual(t.put(symlinkNode("x", "target2")), ino);
  const data = t.get(ino);
  assert.ok(data?.kind === "symlink");
  assert.deepEqual(data.target, b("target"));
});

Deno.test("inodes: directories by digest, populated lazily, children shared", () => {
  const t = new InodeTracker();
  const outer = t.put(dirNode("c", DIRECTORY_COMPLICATED));
  const keep = t.put(dirNode("k", DIRECTORY_WITH_KEEP));
  const outerData = t.get(outer);
  assert.ok(outerData?.kind === "directory");
  assert.equal(outerData.children, null, "not fetched yet");
  const children = t.populate(outer, DIRECTORY_COMPLICATED);
  assert.deepEqual(children.list.map((c) => new TextDecoder().decode(c.node.value.name)), [
    ".keep",
    "aa",
    "keep",
  ]);
  assert.equal(children.list[2].ino, keep, "keep/ is the same directory as DIRECTORY_WITH_KEEP");
  const inner = t.populate(keep, DIRECTORY_WITH_KEEP);
  assert.equal(inner.list[0].ino, children.list[0].ino, "both .keep files are one inode");
  assert.equal(t.put(fileNode("e", EMPTY)), children.list[0].ino);
  assert.equal(
    t.populate(outer, DIRECTORY_COMPLICATED),
    children,
    "populating twice keeps the first",
  );
  assert.equal(children.byName.get(bytesKey(b("aa"))), 1);
  assert.throws(() => t.populate(children.list[1].ino, DIRECTORY_WITH_KEEP), /not a directory/);
});

Deno.test("inodes: bytesKey is exact for any bytes", () => {
  const a = new Uint8Array([0xff, 0x00, 0x80]);
  assert.equal(bytesKey(a).length, 3);
  assert.notEqual(bytesKey(a), bytesKey(new Uint8Array([0xff, 0x00, 0x81])));
  const long = new Uint8Array(10_000).map((_, i) => i);
  assert.equal(bytesKey(long).length, 10_000);
  assert.equal(bytesKey(long).charCodeAt(9_999), 9_999 & 0xff);
});
