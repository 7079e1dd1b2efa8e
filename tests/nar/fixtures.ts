/**
 * NAR byte fixtures from the seed (tvix store `tests/fixtures.rs`), rebuilt from their NAR
 * tokens, and the castore data they render from.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import { putBlob } from "../../src/castore/blob_util.ts";
import { blake3 } from "../../src/castore/digest.ts";
import { type Directory, directoryNodeFor, makeDirectory } from "../../src/castore/directory.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import { FileNodeSchema, SymlinkNodeSchema } from "../../src/gen/tvix/castore/protos/castore_pb.ts";

const te = new TextEncoder();

/**
 * NAR bytes from their tokens: each is a u64 little-endian length, the bytes, then zero
 * padding to a multiple of 8. Strings are UTF-8. Written out here, not with our NarWriter, so
 * the writer and renderer tests compare against an independent construction.
 */
function nar(...tokens: (string | Uint8Array)[]): Uint8Array<ArrayBuffer> {
  const parts = tokens.map((t) => typeof t === "string" ? te.encode(t) : t);
  const out = new Uint8Array(parts.reduce((n, p) => n + 8 + Math.ceil(p.length / 8) * 8, 0));
  const view = new DataView(out.buffer);
  let at = 0;
  for (const p of parts) {
    view.setBigUint64(at, BigInt(p.length), true);
    out.set(p, at + 8);
    at += 8 + Math.ceil(p.length / 8) * 8;
  }
  return out;
}

/** The seed's `NAR_CONTENTS_SYMLINK`: a symlink to `/nix/store/somewhereelse`. */
export const NAR_CONTENTS_SYMLINK: Uint8Array<ArrayBuffer> = nar(
  "nix-archive-1",
  ...["(", "type", "symlink", "target", "/nix/store/somewhereelse", ")"],
);

/** The seed's `NAR_CONTENTS_HELLOWORLD`: a regular file holding "Hello World!". */
export const NAR_CONTENTS_HELLOWORLD: Uint8Array<ArrayBuffer> = nar(
  "nix-archive-1",
  ...["(", "type", "regular", "contents", "Hello World!", ")"],
);

/**
 * The seed's `NAR_CONTENTS_COMPLICATED`: the NAR of {@link DIRECTORY_COMPLICATED}, entries in
 * name order: `.keep` (empty file), `aa` (symlink), `keep/` (holding an empty `.keep`).
 */
export const NAR_CONTENTS_COMPLICATED: Uint8Array<ArrayBuffer> = nar(
  "nix-archive-1",
  ...["(", "type", "directory"],
  ...["entry", "(", "name", ".keep", "node"],
  ...["(", "type", "regular", "contents", "", ")"],
  ...[")"], // entry .keep
  ...["entry", "(", "name", "aa", "node"],
  ...["(", "type", "symlink", "target", "/nix/store/somewhereelse", ")"],
  ...[")"], // entry aa
  ...["entry", "(", "name", "keep", "node"],
  ...["(", "type", "directory"],
  ...["entry", "(", "name", ".keep", "node"],
  ...["(", "type", "regular", "contents", "", ")"],
  ...[")"], // entry keep/.keep
  ...[")"], // keep's node
  ...[")"], // entry keep
  ...[")"], // the root directory
);

/** The seed's `HELLOWORLD_BLOB_CONTENTS`. */
export const HELLOWORLD_BLOB_CONTENTS = te.encode("Hello World!");
/** The seed's `EMPTY_BLOB_CONTENTS`. */
export const EMPTY_BLOB_CONTENTS = new Uint8Array();
/** The seed's `EMPTY_BLOB_DIGEST`. */
export const EMPTY_BLOB_DIGEST = blake3(EMPTY_BLOB_CONTENTS);
/** The seed's `HELLOWORLD_BLOB_DIGEST`. */
export const HELLOWORLD_BLOB_DIGEST = blake3(HELLOWORLD_BLOB_CONTENTS);

/** The seed's `DIRECTORY_WITH_KEEP`: one empty file `.keep`. */
export const DIRECTORY_WITH_KEEP: Directory = makeDirectory({
  files: [create(FileNodeSchema, {
    name: te.encode(".keep"),
    digest: EMPTY_BLOB_DIGEST.bytes,
    size: 0,
  })],
});

/** The seed's `DIRECTORY_COMPLICATED`: `keep/` (with `.keep`), `.keep`, `aa` → symlink. */
export const DIRECTORY_COMPLICATED: Directory = makeDirectory({
  directories: [directoryNodeFor(te.encode("keep"), DIRECTORY_WITH_KEEP)],
  files: [create(FileNodeSchema, {
    name: te.encode(".keep"),
    digest: EMPTY_BLOB_DIGEST.bytes,
    size: 0,
  })],
  symlinks: [create(SymlinkNodeSchema, {
    name: te.encode("aa"),
    target: te.encode("/nix/store/somewhereelse"),
  })],
});

/** Memory services holding the blobs and directories above. */
export async function fixtureServices(): Promise<{
  blobs: MemoryBlobService;
  directories: MemoryDirectoryService;
}> {
  const blobs = new MemoryBlobService();
  const directories = new MemoryDirectoryService();
  await putBlob(blobs, EMPTY_BLOB_CONTENTS);
  await putBlob(blobs, HELLOWORLD_BLOB_CONTENTS);
  await directories.put(DIRECTORY_WITH_KEEP);
  await directories.put(DIRECTORY_COMPLICATED);
  return { blobs, directories };
}
