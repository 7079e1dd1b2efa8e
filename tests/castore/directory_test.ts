/**
 * The Directory model: size, digest, validation (the seed's tables), merged node order, and a
 * cross-check of the canonical encoding and digest against protoc and b3sum.
 */
import assert from "node:assert/strict";
import { B3Digest, blake3 } from "../../src/castore/digest.ts";
import {
  type Directory,
  directoryDigest,
  directoryNodes,
  directorySize,
  encodeDirectory,
  makeDirectory,
  renameNode,
  validateDirectory,
  ValidateDirectoryError,
} from "../../src/castore/directory.ts";
import {
  DIRECTORY_A,
  DIRECTORY_B,
  DIRECTORY_C,
  DIRECTORY_COMPLICATED,
  DIRECTORY_WITH_KEEP,
  DUMMY_DIGEST,
} from "../fixtures.ts";

const enc = new TextEncoder();
const dirNode = (name: string, size = 42, digest = DUMMY_DIGEST) => ({
  $typeName: "tvix.castore.v1.DirectoryNode" as const,
  name: enc.encode(name),
  digest,
  size,
});
const fileNode = (name: string, digest = DUMMY_DIGEST) => ({
  $typeName: "tvix.castore.v1.FileNode" as const,
  name: enc.encode(name),
  digest,
  size: 42,
  executable: false,
});
const symNode = (name: string, target = "foo") => ({
  $typeName: "tvix.castore.v1.SymlinkNode" as const,
  name: enc.encode(name),
  target: enc.encode(target),
});

Deno.test("size counts files, symlinks, and each child directory plus its size", () => {
  assert.equal(directorySize(makeDirectory({})), 0);
  assert.equal(directorySize(makeDirectory({ directories: [dirNode("foo", 0)] })), 1);
  assert.equal(directorySize(makeDirectory({ directories: [dirNode("foo", 4)] })), 5);
  assert.equal(directorySize(makeDirectory({ files: [fileNode("foo")] })), 1);
  assert.equal(directorySize(makeDirectory({ symlinks: [symNode("foo")] })), 1);
  assert.equal(directorySize(DIRECTORY_COMPLICATED), 4);
});

Deno.test("digest of the empty directory is the seed's", () => {
  assert.equal(
    directoryDigest(makeDirectory({})).toHex(),
    "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
  );
});

Deno.test("digest display is b3:<base64> and parses back", () => {
  const d = blake3(enc.encode("Hello World!"));
  assert.match(d.toString(), /^b3:[A-Za-z0-9+/]{43}=$/);
  assert.ok(B3Digest.parse(d.toString()).equals(d));
  assert.ok(B3Digest.parse(d.toHex()).equals(d));
  assert.throws(() => B3Digest.fromBytes(new Uint8Array(31)), /invalid digest length: 31/);
  assert.throws(() => B3Digest.parse("b3:AAAA"), /invalid digest length: 3/);
});

Deno.test("validate accepts the empty directory and the fixtures", () => {
  for (
    const d of [DIRECTORY_A, DIRECTORY_B, DIRECTORY_C, DIRECTORY_WITH_KEEP, DIRECTORY_COMPLICATED]
  ) {
    validateDirectory(d);
  }
});

function rejects(d: Directory, kind: ValidateDirectoryError["kind"], detail: string | number) {
  assert.throws(() => validateDirectory(d), (e) => {
    assert.ok(e instanceof ValidateDirectoryError, String(e));
    assert.equal(e.kind, kind);
    assert.deepEqual(e.detail, typeof detail === "string" ? enc.encode(detail) : detail);
    return true;
  });
}

Deno.test("validate rejects invalid names in every list", () => {
  rejects(makeDirectory({ directories: [dirNode("")] }), "InvalidName", "");
  rejects(makeDirectory({ directories: [dirNode(".")] }), "InvalidName", ".");
  rejects(makeDirectory({ files: [fileNode("..")] }), "InvalidName", "..");
  rejects(makeDirectory({ symlinks: [symNode("\x00")] }), "InvalidName", "\x00");
  rejects(makeDirectory({ symlinks: [symNode("foo/bar")] }), "InvalidName", "foo/bar");
  rejects(makeDirectory({ files: [fileNode("a\x00b")] }), "InvalidName", "a\x00b");
});

Deno.test("validate rejects digests that are not 32 bytes", () => {
  rejects(
    makeDirectory({ directories: [dirNode("foo", 42, new Uint8Array([0, 0x42]))] }),
    "InvalidDigestLen",
    2,
  );
  rejects(makeDirectory({ files: [fileNode("foo", new Uint8Array(33))] }), "InvalidDigestLen", 33);
});

Deno.test("validate checks sorting per list and duplicates across lists", () => {
  rejects(makeDirectory({ directories: [dirNode("b"), dirNode("a")] }), "WrongSorting", "a");
  rejects(makeDirectory({ directories: [dirNode("a"), dirNode("a")] }), "DuplicateName", "a");
  rejects(makeDirectory({ files: [fileNode("b"), fileNode("a")] }), "WrongSorting", "a");
  rejects(makeDirectory({ symlinks: [symNode("b"), symNode("a")] }), "WrongSorting", "a");
  rejects(
    makeDirectory({ directories: [dirNode("a")], symlinks: [symNode("a")] }),
    "DuplicateName",
    "a",
  );
  rejects(
    makeDirectory({ files: [fileNode("x")], symlinks: [symNode("x")] }),
    "DuplicateName",
    "x",
  );
  validateDirectory(makeDirectory({ directories: [dirNode("a"), dirNode("b")] }));
  validateDirectory(
    makeDirectory({ directories: [dirNode("b"), dirNode("c")], symlinks: [symNode("a")] }),
  );
  // Byte order, not locale order: "B" (0x42) sorts before "a" (0x61); non-UTF-8 bytes last.
  validateDirectory(makeDirectory({
    files: [
      fileNode("B"),
      fileNode("a"),
      { ...fileNode(""), name: new Uint8Array([0x61, 0xff]) },
    ],
  }));
});

Deno.test("nodes() merges the three lists in name order", () => {
  const d = makeDirectory({
    directories: ["c", "d", "h", "l"].map((n) => dirNode(n)),
    files: ["b", "e", "g", "j"].map((n) => fileNode(n)),
    symlinks: ["a", "f", "i", "k"].map((n) => symNode(n)),
  });
  const names = [...directoryNodes(d)].map((n) => new TextDecoder().decode(n.value.name));
  assert.deepEqual(names, ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"]);
  const kinds = [...directoryNodes(d)].map((n) => n.case[0]).join("");
  assert.equal(kinds, "sfddfsfdsfsd");
});

Deno.test("renameNode keeps everything but the name", () => {
  const n = { case: "file" as const, value: fileNode("old") };
  const r = renameNode(n, enc.encode("new"));
  assert.equal(r.case, "file");
  assert.deepEqual(r.value.name, enc.encode("new"));
  assert.deepEqual(r.value.digest, n.value.digest);
  assert.deepEqual(n.value.name, enc.encode("old"));
});

// --- cross-check against independent implementations ---

async function have(cmd: string): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("sh", {
      args: ["-c", `command -v ${cmd}`],
      stdout: "null",
    })
      .output();
    return success;
  } catch {
    return false;
  }
}

async function run(cmd: string, args: string[], input: Uint8Array): Promise<Uint8Array> {
  const p = new Deno.Command(cmd, { args, stdin: "piped", stdout: "piped", stderr: "piped" })
    .spawn();
  const w = p.stdin.getWriter();
  await w.write(input);
  await w.close();
  const out = await p.output();
  if (!out.success) throw new Error(`${cmd} failed: ${new TextDecoder().decode(out.stderr)}`);
  return out.stdout;
}

function textBytes(b: Uint8Array): string {
  return '"' + [...b].map((x) => `\\${x.toString(8).padStart(3, "0")}`).join("") + '"';
}

/** Renders a Directory as protobuf text format for `protoc --encode`. */
function textproto(d: Directory): string {
  const out: string[] = [];
  for (const n of d.directories) {
    out.push(
      `directories { name: ${textBytes(n.name)} digest: ${textBytes(n.digest)} size: ${n.size} }`,
    );
  }
  for (const n of d.files) {
    out.push(
      `files { name: ${textBytes(n.name)} digest: ${
        textBytes(n.digest)
      } size: ${n.size} executable: ${n.executable} }`,
    );
  }
  for (const n of d.symlinks) {
    out.push(`symlinks { name: ${textBytes(n.name)} target: ${textBytes(n.target)} }`);
  }
  return out.join("\n");
}

const protoRoot = new URL("../../protos", import.meta.url).pathname;

Deno.test({
  name: "canonical encoding and digest equal protoc --encode and b3sum",
  ignore: !(await have("protoc")) || !(await have("b3sum")),
  async fn() {
    const exec = makeDirectory({
      files: [{ ...fileNode("bin"), executable: true, size: 0x12345678 }, fileNode("z\xff")],
      symlinks: [{ ...symNode("l"), target: new Uint8Array([0, 1, 2, 0xfe]) }],
      directories: [dirNode("d", 300)],
    });
    for (
      const d of [
        DIRECTORY_A,
        DIRECTORY_B,
        DIRECTORY_C,
        DIRECTORY_WITH_KEEP,
        DIRECTORY_COMPLICATED,
        exec,
      ]
    ) {
      const want = await run(
        "protoc",
        [
          `-I${protoRoot}`,
          "--encode=tvix.castore.v1.Directory",
          "tvix/castore/protos/castore.proto",
        ],
        enc.encode(textproto(d)),
      );
      assert.deepEqual(encodeDirectory(d), want);
      const b3 = new TextDecoder().decode(await run("b3sum", ["--no-names"], want)).trim();
      assert.equal(directoryDigest(d).toHex(), b3);
    }
  },
});
