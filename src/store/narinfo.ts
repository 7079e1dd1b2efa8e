/**
 * The `.narinfo` text of a Nix binary cache (`libstore/nar-info.cc`): `Name: value` lines,
 * parsed and printed as Nix 2.8 does, and conversion to and from {@linkcode PathInfo}.
 *
 * @module
 */
import { clip, InvalidRequestError } from "../base/errors.ts";
import type { AnyNode } from "../castore/directory.ts";
import { parseContentAddress, renderContentAddress } from "./content_address.ts";
import { parsePrefixedHash, printHash32 } from "./nix_hash.ts";
import { makePathInfo, validatePathInfo } from "./path_info.ts";
import type { NARInfo_CA, NARInfo_Signature, PathInfo } from "./path_info_service.ts";
import { formatSignature, parseSignature } from "./signature.ts";
import { StorePath } from "./store_path.ts";

/**
 * A parsed `.narinfo`. Hashes are raw SHA-256 bytes; store paths are {@linkcode StorePath}s.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type NarInfo, parseNarInfo } from "@nixcas/nixcas/store";
 * const info: NarInfo = parseNarInfo(
 *   "StorePath: /nix/store/ab3li50xq0nl4q5lxdyinb8w8y13my9s-f\n" +
 *     "URL: nar/1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h.nar\n" +
 *     "NarHash: sha256:1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h\n" +
 *     "NarSize: 120\n",
 * );
 * assert.equal(info.storePath.name, "f");
 * assert.equal(info.compression, "bzip2"); // what a missing Compression means
 * assert.deepEqual(info.references, []);
 * ```
 */
export interface NarInfo {
  /** `StorePath`: the path described. */
  storePath: StorePath;
  /** `URL`: where the (compressed) NAR is, relative to the cache root. */
  url: string;
  /** `Compression`: `none`, `xz`, `bzip2` (when the field is missing), `zstd`, … */
  compression: string;
  /** `FileHash`: SHA-256 of the file at `url`. */
  fileHash?: Uint8Array;
  /** `FileSize`: size of the file at `url`. */
  fileSize?: number;
  /** `NarHash`: SHA-256 of the NAR (32 bytes). */
  narHash: Uint8Array;
  /** `NarSize`: size of the NAR, not 0. */
  narSize: number;
  /** `References`: the paths this one refers to. */
  references: StorePath[];
  /** `Deriver`: the `.drv` that built it (name ends in `.drv`), if known. */
  deriver?: StorePath;
  /** `System`, e.g. `x86_64-linux`. */
  system?: string;
  /** `Sig` lines. */
  signatures: NARInfo_Signature[];
  /** `CA`: the content address of a content-addressed path. */
  ca?: NARInfo_CA;
}

/**
 * A `.narinfo` is malformed. `line` is the 1-based line at fault (absent when a required field
 * is missing), `field` the field name; the message names the narinfo (`whence`) too.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NarInfoError, parseNarInfo } from "@nixcas/nixcas/store";
 * const text = "StorePath: /nix/store/ab3li50xq0nl4q5lxdyinb8w8y13my9s-f\n" +
 *   "URL: nar/x.nar\n" +
 *   "NarHash: sha256:nope\n" +
 *   "NarSize: 120\n";
 * assert.throws(() => parseNarInfo(text, "ab3li50xq0nl4q5lxdyinb8w8y13my9s.narinfo"), (e) => {
 *   assert(e instanceof NarInfoError);
 *   assert.equal(e.line, 3);
 *   assert.equal(e.field, "NarHash");
 *   assert.match(e.message, /^narinfo ab3li50xq0nl4q5lxdyinb8w8y13my9s\.narinfo: line 3: NarHash/);
 *   return true;
 * });
 * ```
 */
export class NarInfoError extends InvalidRequestError {
  /** The 1-based line at fault, if one is. */
  readonly line?: number;
  /** The field at fault, if one is. */
  readonly field?: string;

  /** Creates the error; `whence` names the narinfo (a URL or file name). */
  constructor(
    whence: string,
    detail: string,
    at: { line?: number; field?: string } = {},
    options?: ErrorOptions,
  ) {
    const where = at.line !== undefined ? `line ${at.line}: ` : "";
    const field = at.field !== undefined && at.line !== undefined ? `${at.field}: ` : "";
    super(`narinfo ${whence}: ${where}${field}${detail}`, options);
    this.name = "NarInfoError";
    this.line = at.line;
    this.field = at.field;
  }
}

// Fields that may appear once; `Sig` may repeat, unknown fields are skipped as Nix does.
const SINGLE = new Set([
  "StorePath",
  "URL",
  "Compression",
  "FileHash",
  "FileSize",
  "NarHash",
  "NarSize",
  "References",
  "Deriver",
  "System",
  "CA",
]);

/**
 * Parses a `.narinfo` as Nix 2.8 does: lines `Name: value` (the separator exactly `": "`), each
 * ending in `\n`; `StorePath`, `URL`, `NarHash` and a non-zero `NarSize` required; a missing
 * `Compression` means bzip2; hashes in base16, nix32, base64 (each `sha256:`-prefixed) or SRI;
 * `References` space-separated basenames; `Deriver: unknown-deriver` means none; unknown fields
 * skipped. Stricter than Nix where Nix would keep garbage: a field given twice, a `Sig` that is
 * not `NAME:base64(64 bytes)`, a deriver not ending in `.drv`, and hashes other than SHA-256
 * are refused. `whence` (a URL or file name) is named in errors. Throws
 * {@linkcode NarInfoError}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseNarInfo, renderNarInfo } from "@nixcas/nixcas/store";
 * const text = "StorePath: /nix/store/7miv20xnra0vbbwpqb42fwcqh4fql0sx-b\n" +
 *   "URL: nar/0g9yqhy8gal5w3bi2ndq5y7fd1kz35g963dy17d6s737qr8xkyw6.nar\n" +
 *   "Compression: none\n" +
 *   "FileHash: sha256:0g9yqhy8gal5w3bi2ndq5y7fd1kz35g963dy17d6s737qr8xkyw6\n" +
 *   "FileSize: 168\n" +
 *   "NarHash: sha256:0g9yqhy8gal5w3bi2ndq5y7fd1kz35g963dy17d6s737qr8xkyw6\n" +
 *   "NarSize: 168\n" +
 *   "References: 12wigjpizrn8axaqxj288q1b751qmwya-a\n" +
 *   "CA: text:sha256:0safzkpl7q7cvizpfrnb0f8lr543gfsk7rb35d361jr0w2a0pcm9\n";
 * const info = parseNarInfo(text);
 * assert.equal(info.references[0].name, "a");
 * assert.equal(renderNarInfo(info), text);
 * ```
 */
export function parseNarInfo(text: string, whence = "(text)"): NarInfo {
  let storePath: StorePath | undefined;
  let url: string | undefined;
  let compression: string | undefined;
  let fileHash: Uint8Array | undefined;
  let fileSize: number | undefined;
  let narHash: Uint8Array | undefined;
  let narSize: number | undefined;
  let references: StorePath[] = [];
  let deriver: StorePath | undefined;
  let system: string | undefined;
  const signatures: NARInfo_Signature[] = [];
  let ca: NARInfo_CA | undefined;

  const seen = new Set<string>();
  let pos = 0;
  let line = 0;
  while (pos < text.length) {
    line++;
    const eol = text.indexOf("\n", pos);
    if (eol < 0) throw new NarInfoError(whence, "does not end in a newline", { line });
    const content = text.slice(pos, eol);
    pos = eol + 1;
    const sep = content.indexOf(": ");
    const colon = content.indexOf(":");
    if (colon < 0 || sep !== colon) {
      throw new NarInfoError(
        whence,
        `${JSON.stringify(clip(content, 80))} is not "Name: value"`,
        { line },
      );
    }
    const field = content.slice(0, colon);
    const value = content.slice(sep + 2);
    const fail = (detail: string, cause?: unknown) =>
      new NarInfoError(whence, detail, { line, field }, cause ? { cause } : undefined);
    if (SINGLE.has(field)) {
      if (seen.has(field)) throw fail("given twice");
      seen.add(field);
    }
    const sha256Of = (what: string) => {
      let h;
      try {
        h = parsePrefixedHash(value);
      } catch (e) {
        throw fail((e as Error).message, e);
      }
      if (h.algo !== "sha256") throw fail(`${what} must be sha256, not ${h.algo}`);
      return h.digest;
    };
    const sizeOf = () => {
      if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(Number(value))) {
        throw fail(`${JSON.stringify(clip(value, 40))} is not a size`);
      }
      return Number(value);
    };
    const pathOf = (basename: string) => {
      try {
        return StorePath.parse(basename);
      } catch (e) {
        throw fail((e as Error).message, e);
      }
    };
    switch (field) {
      case "StorePath":
        try {
          storePath = StorePath.parseAbsolute(value);
        } catch (e) {
          throw fail((e as Error).message, e);
        }
        break;
      case "URL":
        if (value === "") throw fail("empty");
        url = value;
        break;
      case "Compression":
        compression = value;
        break;
      case "FileHash":
        fileHash = sha256Of("FileHash");
        break;
      case "FileSize":
        fileSize = sizeOf();
        break;
      case "NarHash":
        narHash = sha256Of("NarHash");
        break;
      case "NarSize":
        narSize = sizeOf();
        if (narSize === 0) throw fail("0 (the NAR size must be known)");
        break;
      case "References":
        references = value.split(" ").filter((r) => r !== "").map(pathOf);
        break;
      case "Deriver":
        if (value !== "unknown-deriver") {
          deriver = pathOf(value);
          if (!deriver.name.endsWith(".drv") || deriver.name === ".drv") {
            throw fail(`${JSON.stringify(clip(value))} does not end in .drv`);
          }
        }
        break;
      case "System":
        system = value;
        break;
      case "Sig":
        try {
          signatures.push(parseSignature(value));
        } catch (e) {
          throw fail((e as Error).message, e);
        }
        break;
      case "CA":
        if (value === "") break; // Nix reads an empty CA as none
        try {
          ca = parseContentAddress(value);
        } catch (e) {
          throw fail((e as Error).message, e);
        }
        break;
    }
  }
  const missing = (f: string) => new NarInfoError(whence, `no ${f} field`, { field: f });
  if (!storePath) throw missing("StorePath");
  if (url === undefined) throw missing("URL");
  if (!narHash) throw missing("NarHash");
  if (narSize === undefined) throw missing("NarSize");
  const info: NarInfo = {
    storePath,
    url,
    compression: compression || "bzip2",
    narHash,
    narSize,
    references,
    signatures,
  };
  if (fileHash) info.fileHash = fileHash;
  if (fileSize !== undefined) info.fileSize = fileSize;
  if (deriver) info.deriver = deriver;
  if (system !== undefined) info.system = system;
  if (ca) info.ca = ca;
  return info;
}

/**
 * Prints a `.narinfo` as Nix 2.8's `NarInfo::to_string`: fields in Nix's order, hashes as
 * `sha256:<nix32>`, `References` sorted (the line is there even when empty), signatures sorted,
 * optional fields only when set. Throws {@linkcode NarInfoError} on what Nix could not read back
 * (empty URL, zero NAR size, hashes that are not 32 bytes).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { renderNarInfo, StorePath } from "@nixcas/nixcas/store";
 * const text = renderNarInfo({
 *   storePath: StorePath.parse("hrqg8lajc5akb1nykmbwf6jiffn3ammq-hello"),
 *   url: "nar/1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h.nar",
 *   compression: "none",
 *   narHash: new Uint8Array(32),
 *   narSize: 120,
 *   references: [],
 *   deriver: StorePath.parse("480p862xw26ciwshg08gjp12y4sak88m-hello.drv"),
 *   signatures: [],
 * });
 * assert.equal(
 *   text,
 *   "StorePath: /nix/store/hrqg8lajc5akb1nykmbwf6jiffn3ammq-hello\n" +
 *     "URL: nar/1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h.nar\n" +
 *     "Compression: none\n" +
 *     `NarHash: sha256:${"0".repeat(52)}\n` +
 *     "NarSize: 120\n" +
 *     "References: \n" +
 *     "Deriver: 480p862xw26ciwshg08gjp12y4sak88m-hello.drv\n",
 * );
 * ```
 */
export function renderNarInfo(info: NarInfo): string {
  const whence = info.storePath.absolute;
  const check = (ok: boolean, field: string, detail: string) => {
    if (!ok) throw new NarInfoError(whence, `cannot write ${field}: ${detail}`);
  };
  check(info.url !== "" && !info.url.includes("\n"), "URL", "empty or contains a newline");
  check(info.narHash.length === 32, "NarHash", `${info.narHash.length} bytes (want 32)`);
  check(
    Number.isSafeInteger(info.narSize) && info.narSize > 0,
    "NarSize",
    `${info.narSize} (want a positive size)`,
  );
  check(!/[\n]/.test(info.compression), "Compression", "contains a newline");
  let s = `StorePath: ${info.storePath.absolute}\n`;
  s += `URL: ${info.url}\n`;
  s += `Compression: ${info.compression || "bzip2"}\n`;
  if (info.fileHash) {
    check(info.fileHash.length === 32, "FileHash", `${info.fileHash.length} bytes (want 32)`);
    s += `FileHash: ${printHash32("sha256", info.fileHash)}\n`;
  }
  if (info.fileSize !== undefined) {
    check(Number.isSafeInteger(info.fileSize) && info.fileSize >= 0, "FileSize", "not a size");
    s += `FileSize: ${info.fileSize}\n`;
  }
  s += `NarHash: ${printHash32("sha256", info.narHash)}\n`;
  s += `NarSize: ${info.narSize}\n`;
  const refs = [...new Set(info.references.map((r) => r.toString()))].sort();
  s += `References: ${refs.join(" ")}\n`;
  if (info.deriver) s += `Deriver: ${info.deriver}\n`;
  if (info.system) {
    check(!info.system.includes("\n"), "System", "contains a newline");
    s += `System: ${info.system}\n`;
  }
  // Nix keeps signatures in a sorted set of their printed forms.
  for (const sig of [...new Set(info.signatures.map(formatSignature))].sort()) {
    check(!sig.includes("\n") && sig.indexOf(":") > 0, "Sig", "malformed key name");
    s += `Sig: ${sig}\n`;
  }
  if (info.ca) s += `CA: ${renderContentAddress(info.ca)}\n`;
  return s;
}

/**
 * The {@linkcode PathInfo} of a narinfo whose NAR was ingested into castore as `rootNode` (any
 * name; it is renamed to the store path). Carries the references, signatures, deriver (its name
 * without `.drv`, as tvix stores it) and content address. Checks nothing about `rootNode`'s
 * content; validate the result and compare the NAR before trusting it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { narInfoToPathInfo, parseNarInfo, validatePathInfo } from "@nixcas/nixcas/store";
 * const narinfo = parseNarInfo(
 *   "StorePath: /nix/store/hrqg8lajc5akb1nykmbwf6jiffn3ammq-hello\n" +
 *     "URL: nar/1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h.nar\n" +
 *     "NarHash: sha256:1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h\n" +
 *     "NarSize: 120\n" +
 *     "Deriver: 480p862xw26ciwshg08gjp12y4sak88m-hello.drv\n",
 * );
 * const info = narInfoToPathInfo(narinfo, {
 *   case: "file",
 *   value: {
 *     $typeName: "tvix.castore.v1.FileNode",
 *     name: new Uint8Array(),
 *     digest: new Uint8Array(32),
 *     size: 3,
 *     executable: false,
 *   },
 * });
 * assert.equal(validatePathInfo(info).name, "hello");
 * assert.equal(info.narinfo?.deriver?.name, "hello");
 * assert.equal(info.narinfo?.narSize, 120n);
 * ```
 */
export function narInfoToPathInfo(narinfo: NarInfo, rootNode: AnyNode): PathInfo {
  const info = makePathInfo({
    storePath: narinfo.storePath,
    node: rootNode,
    narSize: narinfo.narSize,
    narSha256: narinfo.narHash,
    references: narinfo.references,
    signatures: narinfo.signatures,
  });
  const n = info.narinfo!;
  if (narinfo.deriver) {
    n.deriver = {
      $typeName: "tvix.store.v1.StorePath",
      name: narinfo.deriver.name.replace(/\.drv$/, ""),
      digest: narinfo.deriver.digest.slice(),
    };
  }
  if (narinfo.ca) n.ca = { ...narinfo.ca, digest: narinfo.ca.digest.slice() };
  return info;
}

/**
 * Where and how a NAR is stored in a binary cache: the fields of a narinfo that a
 * {@linkcode PathInfo} does not have.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { NarFileInfo } from "@nixcas/nixcas/store";
 * const file: NarFileInfo = { url: "nar/x.nar", compression: "none" };
 * assert.equal(file.fileHash, undefined);
 * ```
 */
export interface NarFileInfo {
  /** Where the NAR file is, relative to the cache root. */
  url: string;
  /** How it is compressed: `none`, `xz`, `zstd`, … */
  compression: string;
  /** SHA-256 of the file at `url`. */
  fileHash?: Uint8Array;
  /** Size of the file at `url`. */
  fileSize?: number;
  /** The `System` field, if known. */
  system?: string;
}

/**
 * The narinfo of a PathInfo (validated first), served as `file` says. Throws
 * {@linkcode NarInfoError} when the PathInfo has no narinfo or its NAR size exceeds 2^53.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { makePathInfo, pathInfoToNarInfo, renderNarInfo, StorePath } from "@nixcas/nixcas/store";
 * const info = makePathInfo({
 *   storePath: StorePath.parse("00bgd045z0d4icpbc2yyz4gx48ak44la-hello"),
 *   node: {
 *     case: "symlink",
 *     value: {
 *       $typeName: "tvix.castore.v1.SymlinkNode",
 *       name: new Uint8Array(),
 *       target: new TextEncoder().encode("/etc/hosts"),
 *     },
 *   },
 *   narSize: 120,
 *   narSha256: new Uint8Array(32),
 * });
 * const narinfo = pathInfoToNarInfo(info, { url: "nar/a.nar", compression: "none" });
 * assert.match(renderNarInfo(narinfo), /^StorePath: \/nix\/store\/00bgd045z0d4icpbc2yyz4gx48ak44la-hello\n/);
 * assert.equal(narinfo.narSize, 120);
 * ```
 */
export function pathInfoToNarInfo(info: PathInfo, file: NarFileInfo): NarInfo {
  const storePath = validatePathInfo(info);
  const n = info.narinfo;
  if (!n) throw new NarInfoError(storePath.absolute, "the PathInfo has no narinfo");
  if (n.narSize > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new NarInfoError(storePath.absolute, `NAR size ${n.narSize} is too large`);
  }
  const out: NarInfo = {
    storePath,
    url: file.url,
    compression: file.compression,
    narHash: n.narSha256.slice(),
    narSize: Number(n.narSize),
    references: n.referenceNames.map((r) => StorePath.parse(r)),
    signatures: n.signatures.map((s) => ({ ...s, data: s.data.slice() })),
  };
  if (file.fileHash) out.fileHash = file.fileHash.slice();
  if (file.fileSize !== undefined) out.fileSize = file.fileSize;
  if (file.system !== undefined) out.system = file.system;
  if (n.deriver) {
    out.deriver = new StorePath(n.deriver.digest, `${n.deriver.name}.drv`);
  }
  if (n.ca) out.ca = { ...n.ca, digest: n.ca.digest.slice() };
  return out;
}
