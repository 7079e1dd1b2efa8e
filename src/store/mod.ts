/**
 * The Nix side: store paths, nixbase32, PathInfo (a store path mapped to a castore root node,
 * with its NAR size and hash, references and signatures), the PathInfoService interface,
 * importing a path from the filesystem as `nix-store --add` does, and what a Nix binary cache
 * needs: `.narinfo` text, ed25519 signatures over the narinfo fingerprint, content addresses.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import { importStorePath, nixbase32, StorePath } from "@nixcas/nixcas/store";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/hello.txt`, "Hello, world!\n");
 * const store = await openStore("memory://");
 * const { storePath } = await importStorePath(`${dir}/hello.txt`, store);
 * assert.equal(storePath.absolute, "/nix/store/xrabnx1r49hn890prhx86h6iyn19p976-hello.txt");
 * assert.equal(nixbase32.encode(storePath.digest), "xrabnx1r49hn890prhx86h6iyn19p976");
 * const info = await store.pathInfos.get(StorePath.parseAbsolute(storePath.absolute).digest);
 * assert.equal(info?.narinfo?.narSize, 128n);
 * await store.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
export * as nixbase32 from "./nixbase32.ts";
export {
  compressHash,
  ENCODED_DIGEST_LEN,
  MAX_NAME_LEN,
  parseStorePathWithSubpath,
  sourceStorePath,
  STORE_DIR,
  STORE_DIR_WITH_SLASH,
  STORE_PATH_DIGEST_LEN,
  StorePath,
  StorePathError,
  type StorePathErrorKind,
  validateName,
} from "./store_path.ts";
export {
  checkRootData,
  makePathInfo,
  mergePathInfo,
  type PathInfoErrorKind,
  type PathInfoInit,
  validatePathInfo,
  ValidatePathInfoError,
} from "./path_info.ts";
export {
  type NARInfo,
  type NARInfo_CA,
  NARInfo_CA_Hash,
  type NARInfo_Signature,
  type PathInfo,
  type PathInfoService,
  type StorePathMessage,
} from "./path_info_service.ts";
export {
  type ImportResult,
  importStorePath,
  type StoreImportOptions,
  type StoreServices,
} from "./import.ts";
export {
  type CastoreServices,
  closureOf,
  type CopyDestination,
  type CopyOptions,
  copyPaths,
  type CopyProgress,
  type CopyReport,
  type CopySource,
  type IngestedPath,
  NixcasStore,
  type NixPathInfo,
  nixPathInfoOf,
  pathInfoOf,
  trustedSignatureCheck,
} from "./copy.ts";
export { EXPORT_MAGIC, renderExport } from "./export.ts";
export {
  caCheckedByNarHash,
  contentAddressedStorePath,
  ContentAddressError,
  type ContentDigests,
  parseContentAddress,
  renderContentAddress,
  verifyContentAddress,
} from "./content_address.ts";
export {
  fingerprint,
  formatSignature,
  parseSignature,
  parseTrustedPublicKeys,
  PublicKey,
  SignatureError,
  SigningKey,
  signPathInfo,
  type Verification,
  verifyPathInfo,
} from "./signature.ts";
export {
  type NarFileInfo,
  type NarInfo,
  NarInfoError,
  narInfoToPathInfo,
  parseNarInfo,
  pathInfoToNarInfo,
  renderNarInfo,
} from "./narinfo.ts";
export {
  type ExportErrorKind,
  ExportParseError,
  type ExportReadOptions,
  readExport,
} from "./import_export.ts";
