/**
 * The seed's castore fixtures (tvix castore `fixtures.rs`), shared by every suite.
 *
 * @module
 */
import { blake3 } from "../src/castore/digest.ts";
import { directoryNodeFor, makeDirectory } from "../src/castore/directory.ts";

const enc = new TextEncoder();

/** "Hello World!" */
export const HELLOWORLD = enc.encode("Hello World!");
/** BLAKE3 of HELLOWORLD. */
export const HELLOWORLD_DIGEST = blake3(HELLOWORLD);
/** The empty blob. */
export const EMPTY = new Uint8Array(0);
/** BLAKE3 of the empty blob. */
export const EMPTY_DIGEST = blake3(EMPTY);
/** Two bytes. */
export const BLOB_A = new Uint8Array([0x00, 0x01]);
/** BLAKE3 of BLOB_A. */
export const BLOB_A_DIGEST = blake3(BLOB_A);
/** 0..254 repeated 4096 times: 1,044,480 bytes, just under 1 MiB. */
export const BLOB_B = (() => {
  const out = new Uint8Array(255 * 4096);
  for (let i = 0; i < out.length; i++) out[i] = i % 255;
  return out;
})();
/** BLAKE3 of BLOB_B. */
export const BLOB_B_DIGEST = blake3(BLOB_B);
/** 32 zero bytes. */
export const DUMMY_DIGEST = new Uint8Array(32);

/** A directory holding an empty `.keep` file. */
export const DIRECTORY_WITH_KEEP = makeDirectory({
  files: [{
    $typeName: "tvix.castore.v1.FileNode",
    name: enc.encode(".keep"),
    digest: EMPTY_DIGEST.bytes,
    size: 0,
    executable: false,
  }],
});
/** keep/ (DIRECTORY_WITH_KEEP), .keep, and a symlink aa. */
export const DIRECTORY_COMPLICATED = makeDirectory({
  directories: [directoryNodeFor(enc.encode("keep"), DIRECTORY_WITH_KEEP)],
  files: [{
    $typeName: "tvix.castore.v1.FileNode",
    name: enc.encode(".keep"),
    digest: EMPTY_DIGEST.bytes,
    size: 0,
    executable: false,
  }],
  symlinks: [{
    $typeName: "tvix.castore.v1.SymlinkNode",
    name: enc.encode("aa"),
    target: enc.encode("/nix/store/somewhereelse"),
  }],
});
/** The empty directory. */
export const DIRECTORY_A = makeDirectory({});
/** Holds DIRECTORY_A as `a`. */
export const DIRECTORY_B = makeDirectory({
  directories: [directoryNodeFor(enc.encode("a"), DIRECTORY_A)],
});
/** Holds DIRECTORY_A twice, as `a` and `a'`. */
export const DIRECTORY_C = makeDirectory({
  directories: [
    directoryNodeFor(enc.encode("a"), DIRECTORY_A),
    directoryNodeFor(enc.encode("a'"), DIRECTORY_A),
  ],
});

/** `n` pseudo-random bytes, different for each `seed` and the same on every run. */
export function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
