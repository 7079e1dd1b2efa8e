/**
 * Copying store paths between stores: nixcas itself, Nix stores and Nix binary caches. A
 * {@linkcode CopySource} says what it knows of a path (Nix's metadata) and puts the path's
 * contents into castore services; a {@linkcode CopyDestination} registers a path whose contents
 * are in castore services. {@linkcode copyPaths} walks the closure, references first, checks
 * every NAR hash and size against the source's claim, and signatures where the source is not
 * trusted.
 *
 * @module
 */
import { createSha256Stream } from "../hash/sha256.ts";
import type { BlobService } from "../castore/blob_service.ts";
import { B3Digest } from "../castore/digest.ts";
import { openVerifiedRead } from "../castore/verify.ts";
import { type AnyNode, fromNodeMessage } from "../castore/directory.ts";
import type { DirectoryService } from "../castore/directory_service.ts";
import { InvalidRequestError, NotFoundError, PreconditionError } from "../base/errors.ts";
import { semaphore } from "../base/async.ts";
import { type PublicKey, verifyPathInfo } from "./signature.ts";
import type { NarCalculation } from "../nar/hash.ts";
import { ingestNar } from "../nar/ingest.ts";
import { renderNar } from "../nar/render.ts";
import { encode as nixbase32 } from "./nixbase32.ts";
import { makePathInfo } from "./path_info.ts";
import { verifyContentAddress } from "./content_address.ts";
import {
  type NARInfo_CA,
  NARInfo_CA_Hash,
  type PathInfo,
  type PathInfoService,
} from "./path_info_service.ts";
import { StorePath } from "./store_path.ts";

/**
 * What Nix records of a store path, without its contents: a `.narinfo` or a row of a Nix
 * store's database.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type NixPathInfo, StorePath } from "@nixcas/nixcas/store";
 * const info: NixPathInfo = {
 *   storePath: StorePath.parse("1wpp9vwzcjc45z0xad9n58kn1d1jz23k-c"),
 *   narHash: new Uint8Array(32),
 *   narSize: 216,
 *   references: [StorePath.parse("12wigjpizrn8axaqxj288q1b751qmwya-a")],
 *   signatures: [],
 * };
 * assert.equal(info.references[0].name, "a");
 * ```
 */
export interface NixPathInfo {
  /** The store path. */
  storePath: StorePath;
  /** SHA-256 of its NAR (32 bytes). */
  narHash: Uint8Array;
  /** Size of its NAR. */
  narSize: number;
  /** Store paths it refers to (may include itself). */
  references: StorePath[];
  /** The `.drv` that built it, if known. */
  deriver?: StorePath;
  /** Its content address, for content-addressed paths. */
  ca?: NARInfo_CA;
  /** Signatures over its fingerprint. */
  signatures: { name: string; data: Uint8Array }[];
}

/**
 * The castore services a copy puts contents into, or renders them from.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import type { CastoreServices } from "@nixcas/nixcas/store";
 * const castore: CastoreServices = {
 *   blobs: new MemoryBlobService(),
 *   directories: new MemoryDirectoryService(),
 * };
 * assert.ok(castore.blobs && castore.directories);
 * ```
 */
export interface CastoreServices {
  /** File contents. */
  blobs: BlobService;
  /** Directories. */
  directories: DirectoryService;
}

/**
 * A store paths are copied from.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import { type CopySource, NixcasStore, StorePath } from "@nixcas/nixcas/store";
 * const store = await openStore("memory://");
 * const source: CopySource = new NixcasStore(store);
 * assert.equal(await source.query(StorePath.parse("1wpp9vwzcjc45z0xad9n58kn1d1jz23k-c")), null);
 * await store.close();
 * ```
 */
export interface CopySource {
  /** How the source is named in messages, e.g. `local?root=/tmp/n1`. */
  readonly name: string;
  /**
   * Whether its paths are taken without a signature check (the machine's own stores are;
   * binary caches are not).
   */
  readonly trusted: boolean;
  /** What the source knows of a path, or null when it does not have it. */
  query(path: StorePath): Promise<NixPathInfo | null>;
  /**
   * Puts the path's contents into `into`; returns the root node and the NAR size and hash of
   * what was put, which the caller compares with `info`.
   */
  ingest(info: NixPathInfo, into: CastoreServices): Promise<IngestedPath>;
}

/**
 * What {@linkcode CopySource.ingest} put into castore: the root node and its NAR size and hash.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { IngestedPath } from "@nixcas/nixcas/store";
 * const r: IngestedPath = {
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
 * };
 * assert.equal(r.node.case, "symlink");
 * ```
 */
export interface IngestedPath extends NarCalculation {
  /** The root node (any name). */
  node: AnyNode;
}

/**
 * A store paths are copied to.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import { type CopyDestination, NixcasStore, StorePath } from "@nixcas/nixcas/store";
 * const store = await openStore("memory://");
 * const destination: CopyDestination = new NixcasStore(store);
 * assert.equal(await destination.has(StorePath.parse("1wpp9vwzcjc45z0xad9n58kn1d1jz23k-c")), false);
 * await store.close();
 * ```
 */
export interface CopyDestination {
  /** How the destination is named in messages. */
  readonly name: string;
  /** Whether it has the path already. */
  has(path: StorePath): Promise<boolean>;
  /** Registers a path whose contents are in `from`, after every path it refers to. */
  add(info: PathInfo, from: CastoreServices): Promise<void>;
  /** Completes what `add` began, for a destination that registers paths in batches. */
  finish?(): Promise<void>;
}

/**
 * A nixcas store (its three services) as a copy source and destination.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import { copyPaths, importStorePath, NixcasStore } from "@nixcas/nixcas/store";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/hello.txt`, "Hello, world!\n");
 * const a = await openStore("memory://");
 * const b = await openStore("memory://"); // its own castore: the tree goes over as a NAR
 * const { storePath } = await importStorePath(`${dir}/hello.txt`, a);
 * const report = await copyPaths(new NixcasStore(a), new NixcasStore(b), [storePath], {
 *   castore: b,
 * });
 * assert.equal(report.copied, 1);
 * assert.equal((await b.pathInfos.get(storePath.digest))?.narinfo?.narSize, 128n);
 * await a.close();
 * await b.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class NixcasStore implements CopySource, CopyDestination {
  /** Shown in messages. */
  readonly name: string;
  /** A nixcas store is the user's own. */
  readonly trusted = true;
  readonly #services: CastoreServices & { pathInfos: PathInfoService };

  /** Wraps the services (not closed by this object). */
  constructor(services: CastoreServices & { pathInfos: PathInfoService }, name = "nixcas") {
    this.#services = services;
    this.name = name;
  }

  /** See {@linkcode CopySource.query}. */
  async query(path: StorePath): Promise<NixPathInfo | null> {
    const info = await this.#services.pathInfos.get(path.digest);
    return info ? nixPathInfoOf(path, info) : null;
  }

  /** See {@linkcode CopySource.ingest}: nothing to do when `into` holds this store's data. */
  async ingest(info: NixPathInfo, into: CastoreServices): Promise<IngestedPath> {
    const stored = await this.#services.pathInfos.get(info.storePath.digest);
    if (!stored) throw new NotFoundError(`${info.storePath.absolute} is not in ${this.name}`);
    const node = fromNodeMessage(stored.node);
    const same = { narSize: info.narSize, narSha256: info.narHash };
    if (
      into.blobs === this.#services.blobs && into.directories === this.#services.directories
    ) return { node, ...same };
    // Other castore services: the tree goes over as its NAR, verified as it is read here and
    // checked as it is parsed there.
    return await ingestNar(
      renderNar(node, this.#services.blobs, this.#services.directories),
      into.blobs,
      into.directories,
      { expectedNarSize: info.narSize, expectedNarSha256: info.narHash },
    );
  }

  /** See {@linkcode CopyDestination.has}. */
  async has(path: StorePath): Promise<boolean> {
    return (await this.#services.pathInfos.get(path.digest)) !== null;
  }

  /** See {@linkcode CopyDestination.add}. */
  async add(info: PathInfo, from: CastoreServices): Promise<void> {
    if (
      from.blobs !== this.#services.blobs || from.directories !== this.#services.directories
    ) {
      throw new InvalidRequestError(
        `${this.name}: cannot add a path whose contents are in other castore services`,
      );
    }
    await this.#services.pathInfos.put(info);
  }
}

/**
 * The Nix metadata of a stored PathInfo.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { makePathInfo, nixPathInfoOf, StorePath } from "@nixcas/nixcas/store";
 * const storePath = StorePath.parse("00bgd045z0d4icpbc2yyz4gx48ak44la-hello");
 * const info = makePathInfo({
 *   storePath,
 *   node: {
 *     case: "symlink",
 *     value: {
 *       $typeName: "tvix.castore.v1.SymlinkNode",
 *       name: new Uint8Array(),
 *       target: new TextEncoder().encode("/nix/store/x"),
 *     },
 *   },
 *   narSize: 120,
 *   narSha256: new Uint8Array(32),
 *   deriver: StorePath.parse("11bgd045z0d4icpbc2yyz4gx48ak44la-hello.drv"),
 * });
 * assert.equal(nixPathInfoOf(storePath, info).deriver?.name, "hello.drv");
 * ```
 */
export function nixPathInfoOf(storePath: StorePath, info: PathInfo): NixPathInfo {
  const n = info.narinfo;
  return {
    storePath,
    narHash: n?.narSha256 ?? new Uint8Array(32),
    narSize: Number(n?.narSize ?? 0),
    references: n ? n.referenceNames.map((r) => StorePath.parse(r)) : [],
    deriver: n?.deriver ? new StorePath(n.deriver.digest, `${n.deriver.name}.drv`) : undefined,
    ca: n?.ca,
    signatures: (n?.signatures ?? []).map((s) => ({ name: s.name, data: s.data })),
  };
}

/**
 * Options of {@linkcode copyPaths}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import type { CopyOptions } from "@nixcas/nixcas/store";
 * const store = await openStore("memory://");
 * const opts: CopyOptions = { castore: store, recursive: false };
 * assert.equal(opts.recursive, false);
 * await store.close();
 * ```
 */
export interface CopyOptions {
  /** Where contents go on their way: the destination's castore when it is nixcas. */
  castore: CastoreServices;
  /** Copy the closure (default), or only the paths named. */
  recursive?: boolean;
  /**
   * Checks a path from an untrusted source before anything of it is stored (signature or
   * content address); throws to refuse it. Not called for trusted sources.
   */
  check?: (info: NixPathInfo) => Promise<void> | void;
  /** Called as each path is looked at. */
  onProgress?: (event: CopyProgress) => void;
  /** Paths fetched and ingested at once (default 4). */
  concurrency?: number;
}

/**
 * One step of a copy, for progress output.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { CopyProgress } from "@nixcas/nixcas/store";
 * const e: CopyProgress = { path: "/nix/store/x-y", action: "copied", done: 1, total: 3, narSize: 120 };
 * assert.equal(e.action, "copied");
 * ```
 */
export interface CopyProgress {
  /** The absolute store path. */
  path: string;
  /** What happened to it. */
  action: "copied" | "skipped";
  /** Paths handled so far, this one included. */
  done: number;
  /** Paths in the closure. */
  total: number;
  /** Its NAR size. */
  narSize: number;
}

/**
 * What {@linkcode copyPaths} did.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { CopyReport } from "@nixcas/nixcas/store";
 * const r: CopyReport = { copied: 2, skipped: 1, narBytes: 4096 };
 * assert.equal(r.copied + r.skipped, 3);
 * ```
 */
export interface CopyReport {
  /** Paths the destination did not have. */
  copied: number;
  /** Paths it had already. */
  skipped: number;
  /** NAR bytes of the copied paths. */
  narBytes: number;
}

/**
 * The {@linkcode CopyOptions.check} that accepts a path with a valid content address or a
 * signature by one of `keys`, as Nix does; a refusal is a {@linkcode PreconditionError} saying
 * why, followed by `hint`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PreconditionError } from "@nixcas/nixcas";
 * import { StorePath, trustedSignatureCheck } from "@nixcas/nixcas/store";
 * const check = trustedSignatureCheck([]);
 * await assert.rejects(
 *   async () =>
 *     await check({
 *       storePath: StorePath.parse("00bgd045z0d4icpbc2yyz4gx48ak44la-hello"),
 *       narHash: new Uint8Array(32),
 *       narSize: 120,
 *       references: [],
 *       signatures: [],
 *     }),
 *   PreconditionError,
 * );
 * ```
 */
export function trustedSignatureCheck(
  keys: readonly PublicKey[],
  hint?: string,
): (info: NixPathInfo) => Promise<void> {
  return async (info) => {
    const v = await verifyPathInfo({
      ...info,
      url: "",
      compression: "none",
      signatures: info.signatures.map((s) => ({
        $typeName: "tvix.store.v1.NARInfo.Signature",
        ...s,
      })),
    }, keys);
    if (v.valid) return;
    throw new PreconditionError(
      `${info.storePath.absolute}: ${v.reason}${hint ? `; ${hint}` : ""}`,
    );
  };
}

/**
 * The closure of `roots` in `source`, references before the paths that refer to them (each
 * path once; a path's reference to itself is not a dependency). Throws
 * {@linkcode NotFoundError} naming the path that is missing and who refers to it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import { closureOf, importStorePath, NixcasStore } from "@nixcas/nixcas/store";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/a`, "a\n");
 * const store = await openStore("memory://");
 * const { storePath } = await importStorePath(`${dir}/a`, store);
 * const closure = await closureOf(new NixcasStore(store), [storePath]);
 * assert.deepEqual(closure.map((i) => i.storePath.toString()), [storePath.toString()]);
 * await store.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function closureOf(
  source: Pick<CopySource, "name" | "query">,
  roots: StorePath[],
  recursive = true,
): Promise<NixPathInfo[]> {
  const infos = new Map<string, Promise<NixPathInfo>>();
  const fetch = (path: StorePath, referrer?: StorePath): Promise<NixPathInfo> => {
    const key = path.toString();
    let p = infos.get(key);
    if (!p) {
      p = source.query(path).then((info) => {
        if (!info) {
          throw new NotFoundError(
            `${path.absolute} is not in ${source.name}` +
              (referrer ? ` (a reference of ${referrer.absolute})` : ""),
          );
        }
        if (recursive) {
          for (const r of info.references) if (!r.equals(path)) fetch(r, path).catch(() => {});
        }
        return info;
      });
      infos.set(key, p);
    }
    return p;
  };
  // Queries run concurrently (a binary cache answers each over HTTP); the order is made below.
  await Promise.all(roots.map((r) => fetch(r)));
  if (recursive) {
    let size = -1;
    while (size !== infos.size) {
      size = infos.size;
      await Promise.all(infos.values());
    }
  }
  const order: NixPathInfo[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = async (path: StorePath) => {
    const key = path.toString();
    if (state.get(key)) return;
    state.set(key, "visiting");
    const info = await infos.get(key)!;
    if (recursive) {
      for (const r of info.references) if (!r.equals(path)) await visit(r);
    }
    state.set(key, "done");
    order.push(info);
  };
  for (const r of roots) await visit(r);
  return order;
}

/**
 * Copies `roots` (with their closure unless `recursive: false`) from `source` to
 * `destination`, references first, skipping paths the destination has. Each path's contents go
 * into `castore`; their NAR size and hash must equal what the source claims, else nothing of
 * that path is registered and the copy stops with an error naming it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryPathInfoService, openStore } from "@nixcas/nixcas/backends";
 * import { copyPaths, importStorePath, NixcasStore } from "@nixcas/nixcas/store";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/hello.txt`, "Hello, world!\n");
 * const a = await openStore("memory://");
 * // Another path info service over the same castore services.
 * const b = { ...a, pathInfos: new MemoryPathInfoService(a.blobs, a.directories) };
 * const { storePath } = await importStorePath(`${dir}/hello.txt`, a);
 * const copy = () => copyPaths(new NixcasStore(a), new NixcasStore(b), [storePath], { castore: b });
 * assert.deepEqual(await copy(), { copied: 1, skipped: 0, narBytes: 128 });
 * assert.deepEqual(await copy(), { copied: 0, skipped: 1, narBytes: 0 });
 * await a.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function copyPaths(
  source: CopySource,
  destination: CopyDestination,
  roots: StorePath[],
  opts: CopyOptions,
): Promise<CopyReport> {
  const recursive = opts.recursive ?? true;
  const closure = await closureOf(source, roots, recursive);
  const report: CopyReport = { copied: 0, skipped: 0, narBytes: 0 };
  let done = 0;
  // Several paths are fetched and ingested at once (a tree of small files keeps this thread
  // busy while a big file hashes on the pool); each is registered only after every path it
  // refers to, so the destination sees them references first.
  const fetching = semaphore(Math.max(1, opts.concurrency ?? 4));
  const registered = new Map<string, Promise<void>>();
  let failure: { error: unknown } | null = null;
  const copyOne = async (info: NixPathInfo, before: Promise<void>[]) => {
    const path = info.storePath.absolute;
    const progress = (action: CopyProgress["action"]) =>
      opts.onProgress?.({
        path,
        action,
        done: ++done,
        total: closure.length,
        narSize: info.narSize,
      });
    if (await destination.has(info.storePath)) {
      await Promise.all(before);
      report.skipped++;
      progress("skipped");
      return;
    }
    let got: IngestedPath;
    await fetching.acquire();
    try {
      if (failure) return;
      got = await fetchChecked(source, info, opts);
    } finally {
      fetching.release();
    }
    await Promise.all(before);
    if (failure) return;
    await destination.add(pathInfoOf(info, got.node), opts.castore);
    report.copied++;
    report.narBytes += info.narSize;
    progress("copied");
  };
  for (const info of closure) {
    const before = recursive
      ? info.references.filter((r) => !r.equals(info.storePath)).map((r) =>
        registered.get(r.toString())!
      )
      : [];
    const p = copyOne(info, before).catch((error) => {
      failure ??= { error };
      throw error;
    });
    p.catch(() => {}); // observed below, after every copy settled
    registered.set(info.storePath.toString(), p);
  }
  await Promise.allSettled(registered.values());
  if (failure) throw (failure as { error: unknown }).error;
  await destination.finish?.();
  return report;
}

/**
 * Checks a path from an untrusted source, ingests its contents and checks them against the
 * source's NAR size and hash (and content address): the root node to register.
 */
async function fetchChecked(
  source: CopySource,
  info: NixPathInfo,
  opts: CopyOptions,
): Promise<IngestedPath> {
  const path = info.storePath.absolute;
  if (!source.trusted) await opts.check?.(info);
  let got: IngestedPath;
  try {
    got = await source.ingest(info, opts.castore);
  } catch (e) {
    // Name the path: the source's error may only say what was wrong with the bytes.
    if (e instanceof InvalidRequestError && !(e as Error).message.includes(path)) {
      throw new InvalidRequestError(`${path} from ${source.name}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    throw e;
  }
  if (got.narSize !== info.narSize || !equal(got.narSha256, info.narHash)) {
    throw new InvalidRequestError(
      `${path} from ${source.name}: its contents have NAR size ${got.narSize} and hash ` +
        `sha256:${nixbase32(got.narSha256)}, but ${source.name} says ${info.narSize} and ` +
        `sha256:${nixbase32(info.narHash)}; not copied`,
    );
  }
  if (info.ca) await checkContentAddress(info, got, opts.castore, source.name);
  return got;
}

/**
 * The PathInfo of a path whose contents are the castore tree at `node`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pathInfoOf, StorePath } from "@nixcas/nixcas/store";
 * const info = pathInfoOf({
 *   storePath: StorePath.parse("00bgd045z0d4icpbc2yyz4gx48ak44la-hello"),
 *   narHash: new Uint8Array(32),
 *   narSize: 120,
 *   references: [],
 *   signatures: [],
 * }, {
 *   case: "symlink",
 *   value: {
 *     $typeName: "tvix.castore.v1.SymlinkNode",
 *     name: new Uint8Array(),
 *     target: new TextEncoder().encode("/nix/store/x"),
 *   },
 * });
 * assert.equal(info.narinfo?.narSize, 120n);
 * ```
 */
export function pathInfoOf(info: NixPathInfo, node: AnyNode): PathInfo {
  return makePathInfo({
    storePath: info.storePath,
    node,
    narSize: info.narSize,
    narSha256: info.narHash,
    references: info.references,
    signatures: info.signatures,
    deriver: info.deriver,
    ca: info.ca,
  });
}

const CA_ALGO: Record<number, { algo: string; nar: boolean }> = {
  [NARInfo_CA_Hash.NAR_SHA256]: { algo: "sha256", nar: true },
  [NARInfo_CA_Hash.NAR_SHA1]: { algo: "sha1", nar: true },
  [NARInfo_CA_Hash.NAR_SHA512]: { algo: "sha512", nar: true },
  [NARInfo_CA_Hash.NAR_MD5]: { algo: "md5", nar: true },
  [NARInfo_CA_Hash.TEXT_SHA256]: { algo: "sha256", nar: false },
  [NARInfo_CA_Hash.FLAT_SHA1]: { algo: "sha1", nar: false },
  [NARInfo_CA_Hash.FLAT_MD5]: { algo: "md5", nar: false },
  [NARInfo_CA_Hash.FLAT_SHA256]: { algo: "sha256", nar: false },
  [NARInfo_CA_Hash.FLAT_SHA512]: { algo: "sha512", nar: false },
};

/** A hash of `algo` over a stream of bytes, each update copied or hashed before it returns. */
async function contentHasher(
  algo: string,
): Promise<{ update(b: Uint8Array): void; digest(): Promise<Uint8Array> }> {
  // SHA-256 (text and most flat addresses) by libcrypto, as the NAR hash; the others through
  // node:crypto, loaded only then: loading it costs ≈30 ms (a tenth of a closure copy).
  if (algo === "sha256") return createSha256Stream();
  const { createHash } = await import("node:crypto");
  const h = createHash(algo);
  return {
    update: (b) => h.update(b),
    digest: () => Promise.resolve(new Uint8Array(h.digest())),
  };
}

/**
 * A content-addressed path must hold what its address says, as Nix checks when it adds one:
 * the NAR or the file's contents hashed in the address's algorithm (the NAR SHA-256 is known
 * already; anything else is read back, verified, from castore).
 */
async function checkContentAddress(
  info: NixPathInfo,
  got: IngestedPath,
  castore: CastoreServices,
  sourceName: string,
): Promise<void> {
  const ca = info.ca!;
  const kind = CA_ALGO[ca.type];
  let contentDigest: Uint8Array | undefined;
  if (kind && !(kind.nar && kind.algo === "sha256")) {
    const hash = await contentHasher(kind.algo);
    if (kind.nar) {
      for await (const b of renderNar(got.node, castore.blobs, castore.directories)) hash.update(b);
    } else {
      if (got.node.case !== "file") {
        throw new InvalidRequestError(
          `${info.storePath.absolute} from ${sourceName}: a flat or text content address needs ` +
            `a regular file, the path is a ${got.node.case}`,
        );
      }
      const digest = B3Digest.fromBytes(got.node.value.digest);
      const r = await openVerifiedRead(castore.blobs, digest);
      if (!r) throw new NotFoundError(`blob ${digest} of ${info.storePath.absolute} is missing`);
      try {
        for await (const b of r.chunks()) hash.update(b);
      } finally {
        await r.close();
      }
    }
    contentDigest = await hash.digest();
  }
  try {
    verifyContentAddress(info.storePath, ca, info.references, {
      narSha256: got.narSha256,
      contentDigest,
    });
  } catch (e) {
    throw new InvalidRequestError(
      `${info.storePath.absolute} from ${sourceName}: ${(e as Error).message}; not copied`,
      { cause: e },
    );
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
