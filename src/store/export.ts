/**
 * The `nix-store --export` format: for each path, the number 1, its NAR, the export magic, the
 * store path, its references and its deriver; then the number 0. Numbers are little-endian
 * u64, strings are Nix wire strings (length, bytes, zero padding to 8). `nix-store --import`
 * reads it and registers the paths in order, so references must come first.
 *
 * @module
 */
import { fromNodeMessage } from "../castore/directory.ts";
import { renderNar } from "../nar/render.ts";
import type { CastoreServices } from "./copy.ts";
import type { PathInfo } from "./path_info_service.ts";
import { STORE_DIR_WITH_SLASH, StorePath } from "./store_path.ts";

/**
 * `0x4558494e` ("NIXE" little-endian), written after each NAR of an export.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EXPORT_MAGIC } from "@nixcas/nixcas/store";
 * assert.equal(EXPORT_MAGIC, 0x4558494e);
 * ```
 */
export const EXPORT_MAGIC = 0x4558494e;

const enc = new TextEncoder();

function u64(n: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return b;
}

function wireString(s: string): Uint8Array {
  const bytes = enc.encode(s);
  const padded = new Uint8Array(8 + Math.ceil(bytes.length / 8) * 8);
  new DataView(padded.buffer).setBigUint64(0, BigInt(bytes.length), true);
  padded.set(bytes, 8);
  return padded;
}

/** The trailer of one path in an export: magic, path, references, deriver, no signature. */
function trailer(info: PathInfo, storePath: StorePath): Uint8Array[] {
  const refs = info.narinfo?.referenceNames ?? [];
  const deriver = info.narinfo?.deriver;
  return [
    u64(EXPORT_MAGIC),
    wireString(storePath.absolute),
    u64(refs.length),
    ...refs.map((r) => wireString(STORE_DIR_WITH_SLASH + r)),
    wireString(
      deriver
        ? `${STORE_DIR_WITH_SLASH}${new StorePath(deriver.digest, `${deriver.name}.drv`)}`
        : "",
    ),
    u64(0),
  ];
}

/**
 * Renders `infos` (in the order given: references first, as `nix-store --import` needs) in the
 * `nix-store --export` format, NAR bytes verified as they are read from castore.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import { importStorePath, renderExport } from "@nixcas/nixcas/store";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/hello.txt`, "Hello, world!\n");
 * const store = await openStore("memory://");
 * const { pathInfo } = await importStorePath(`${dir}/hello.txt`, store);
 * const parts = await Array.fromAsync(renderExport([pathInfo], store));
 * const size = parts.reduce((n, p) => n + p.length, 0);
 * // 1, the 128-byte NAR, magic, path (8 + 56), no references, no deriver, 0, and the final 0.
 * assert.equal(size, 8 + 128 + 8 + 64 + 8 + 8 + 8 + 8);
 * await store.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function* renderExport(
  infos: Iterable<PathInfo> | AsyncIterable<PathInfo>,
  castore: CastoreServices,
): AsyncGenerator<Uint8Array> {
  for await (const info of infos) {
    const root = fromNodeMessage(info.node);
    const storePath = StorePath.fromBytes(root.value.name);
    yield u64(1);
    yield* renderNar(root, castore.blobs, castore.directories);
    yield* trailer(info, storePath);
  }
  yield u64(0);
}
