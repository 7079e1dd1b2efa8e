/**
 * A Nix binary cache as a copy source and destination: a directory (`file:///dir`, read and
 * write) or an HTTP server (`http(s)://host/path`, read). The layout is Nix's: `nix-cache-info`,
 * `<hash>.narinfo` and the NAR files they name (`nar/<nix32 file hash>.nar[.xz|.zst|.bz2]`).
 * Paths from a cache are checked by the caller (signature or content address); their NARs are
 * decompressed and ingested as they arrive, against the narinfo's NAR hash and size.
 *
 * @module
 */
import {
  InvalidRequestError,
  NotFoundError,
  StorageError,
  UnavailableError,
} from "../../base/errors.ts";
import {
  compress,
  type Compression,
  compressionSuffix,
  decompress,
  parseCompression,
} from "../../compress/compression.ts";
import { createSha256Stream } from "../../hash/sha256.ts";
import { fromNodeMessage } from "../../castore/directory.ts";
import { gatheringReader, ingestNar } from "../../nar/ingest.ts";
import { renderNar } from "../../nar/render.ts";
import type {
  CastoreServices,
  CopyDestination,
  CopySource,
  IngestedPath,
  NixPathInfo,
} from "../../store/copy.ts";
import {
  type NarInfo,
  parseNarInfo,
  pathInfoToNarInfo,
  renderNarInfo,
} from "../../store/narinfo.ts";
import { encode as nixbase32 } from "../../store/nixbase32.ts";
import type { PathInfo } from "../../store/path_info_service.ts";
import { type SigningKey, signPathInfo } from "../../store/signature.ts";
import { StorePath } from "../../store/store_path.ts";

function nixPathInfoOfNarInfo(n: NarInfo): NixPathInfo {
  return {
    storePath: n.storePath,
    narHash: n.narHash,
    narSize: n.narSize,
    references: n.references,
    deriver: n.deriver,
    ca: n.ca,
    signatures: n.signatures,
  };
}

/** Where the files of a cache are read and written. */
interface Transport {
  /** The file's bytes, or null when it does not exist. */
  get(path: string): Promise<ReadableStream<Uint8Array> | null>;
  /** Whether the file exists. */
  exists(path: string): Promise<boolean>;
  /** Writes a file whole or not at all. Absent on a read-only transport. */
  put?(path: string, data: ReadableStream<Uint8Array>): Promise<void>;
}

class DirectoryTransport implements Transport {
  constructor(readonly dir: string) {}

  async get(path: string): Promise<ReadableStream<Uint8Array> | null> {
    try {
      return (await Deno.open(`${this.dir}/${path}`)).readable;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw new StorageError(`${this.dir}/${path}: ${(e as Error).message}`, { cause: e });
    }
  }

  async exists(path: string): Promise<boolean> {
    try {
      await Deno.stat(`${this.dir}/${path}`);
      return true;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return false;
      throw new StorageError(`${this.dir}/${path}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Written to a temporary file beside the target, then renamed: never a partial file. */
  async put(path: string, data: ReadableStream<Uint8Array>): Promise<void> {
    const target = `${this.dir}/${path}`;
    const parent = target.slice(0, target.lastIndexOf("/"));
    await Deno.mkdir(parent, { recursive: true });
    const tmp = `${parent}/.tmp-${crypto.randomUUID()}`;
    try {
      const file = await Deno.open(tmp, { write: true, createNew: true, mode: 0o644 });
      await data.pipeTo(file.writable);
      await Deno.rename(tmp, target);
    } catch (e) {
      await Deno.remove(tmp).catch(() => {});
      throw e;
    }
  }
}

class HttpTransport implements Transport {
  constructor(readonly base: string, readonly headers: HeadersInit = {}) {}

  async #fetch(path: string, method: string): Promise<Response | null> {
    let res: Response;
    try {
      res = await fetch(`${this.base}/${path}`, { method, headers: this.headers });
    } catch (e) {
      throw new UnavailableError(`${this.base}/${path}: ${(e as Error).message}`, { cause: e });
    }
    if (res.status === 404 || res.status === 410 || res.status === 403 || res.status === 401) {
      await res.body?.cancel();
      return null;
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new UnavailableError(
        `${method} ${this.base}/${path}: HTTP ${res.status} ${res.statusText}`,
      );
    }
    return res;
  }

  async get(path: string): Promise<ReadableStream<Uint8Array> | null> {
    const res = await this.#fetch(path, "GET");
    return res?.body ?? (res ? ReadableStream.from([]) : null);
  }

  async exists(path: string): Promise<boolean> {
    const res = await this.#fetch(path, "HEAD");
    return res !== null;
  }
}

/**
 * Options of a binary cache destination, from its address parameters (`?compression=zstd`,
 * `?secret-key=FILE`) or the caller.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { BinaryCacheOptions } from "@nixcas/nixcas/backends";
 * const opts: BinaryCacheOptions = { compression: "zstd" };
 * assert.equal(opts.signingKey, undefined);
 * ```
 */
export interface BinaryCacheOptions {
  /** How NARs are compressed when written (default xz, as Nix). */
  compression?: Compression;
  /** Signs every path written. */
  signingKey?: SigningKey;
}

/**
 * Whether `address` names a Nix binary cache (`file://`, `http://`, `https://`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isBinaryCacheAddr } from "@nixcas/nixcas/backends";
 * assert.ok(isBinaryCacheAddr("file:///tmp/cache?compression=zstd"));
 * assert.ok(!isBinaryCacheAddr("local?root=/tmp/n1"));
 * ```
 */
export function isBinaryCacheAddr(address: string): boolean {
  return /^(file|https?):\/\//.test(address);
}

/**
 * A Nix binary cache: a copy destination that writes NARs and narinfos (a directory only), and
 * a copy source that reads them, by directory or HTTP.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BinaryCache, openStore } from "@nixcas/nixcas/backends";
 * import { copyPaths, importStorePath, NixcasStore } from "@nixcas/nixcas/store";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/hello.txt`, "Hello, world!\n");
 * const a = await openStore("memory://");
 * const { storePath } = await importStorePath(`${dir}/hello.txt`, a);
 * const cache = BinaryCache.open(`file://${dir}/cache?compression=zstd`);
 * await copyPaths(new NixcasStore(a), cache, [storePath], { castore: a });
 * assert.ok(await cache.has(storePath));
 * // And back into another store; a source-path like this is valid by its content address
 * // only with a CA, so the signature check is left out here.
 * const b = await openStore("memory://");
 * const report = await copyPaths(cache, new NixcasStore(b), [storePath], { castore: b });
 * assert.equal(report.copied, 1);
 * await a.close();
 * await b.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class BinaryCache implements CopySource, CopyDestination {
  /** The address it was opened by. */
  readonly name: string;
  /** Paths from a cache need a signature or a content address. */
  readonly trusted = false;
  readonly #transport: Transport;
  readonly #compression: Compression;
  readonly #signingKey?: SigningKey;
  readonly #narinfos = new Map<string, NarInfo>();
  #initialised = false;

  private constructor(name: string, transport: Transport, opts: BinaryCacheOptions) {
    this.name = name;
    this.#transport = transport;
    this.#compression = opts.compression ?? "xz";
    this.#signingKey = opts.signingKey;
  }

  /** Opens the cache at `address`; the parameters may set compression (`?compression=`). */
  static open(address: string, opts: BinaryCacheOptions = {}): BinaryCache {
    const url = new URL(address);
    const params = url.searchParams;
    let compression = opts.compression;
    for (const [key, value] of params) {
      if (key === "compression") compression = parseCompression(value);
      else if (key !== "secret-key" && key !== "trusted-public-keys") {
        throw new InvalidRequestError(`${address}: unknown binary cache parameter ${key}`);
      }
    }
    url.search = "";
    const base = url.href.replace(/\/+$/, "");
    if (url.protocol === "file:") {
      return new BinaryCache(
        address,
        new DirectoryTransport(decodeURIComponent(url.pathname).replace(/\/+$/, "")),
        { ...opts, compression },
      );
    }
    return new BinaryCache(address, new HttpTransport(base), { ...opts, compression });
  }

  /** The narinfo of the path whose nix32 digest is `hash`, kept once fetched. */
  async #narinfoByHash(hash: string): Promise<NarInfo | null> {
    const known = this.#narinfos.get(hash);
    if (known) return known;
    const body = await this.#transport.get(`${hash}.narinfo`);
    if (!body) return null;
    const text = await new Response(body).text();
    const info = parseNarInfo(text, `${this.name}/${hash}.narinfo`);
    if (info.storePath.toString().slice(0, 32) !== hash) {
      throw new InvalidRequestError(
        `${this.name}/${hash}.narinfo describes ${info.storePath.absolute}`,
      );
    }
    this.#narinfos.set(hash, info);
    return info;
  }

  async #narinfo(path: StorePath): Promise<NarInfo | null> {
    const info = await this.#narinfoByHash(path.toString().slice(0, 32));
    if (info && !info.storePath.equals(path)) {
      throw new InvalidRequestError(
        `${this.name}: the narinfo of ${path.absolute} describes ${info.storePath.absolute}`,
      );
    }
    return info;
  }

  /** See {@linkcode CopySource.query}. */
  async query(path: StorePath): Promise<NixPathInfo | null> {
    const n = await this.#narinfo(path);
    return n ? nixPathInfoOfNarInfo(n) : null;
  }

  /**
   * What the cache knows of the store path whose digest is `digest` (20 bytes), when only the
   * digest is known (a lookup by hash, as a path info service gets).
   */
  async queryDigest(digest: Uint8Array): Promise<NixPathInfo | null> {
    const n = await this.#narinfoByHash(nixbase32(digest));
    return n ? nixPathInfoOfNarInfo(n) : null;
  }

  /** Fetches the NAR the narinfo names, decompresses and ingests it as it arrives. */
  async ingest(info: NixPathInfo, into: CastoreServices): Promise<IngestedPath> {
    const n = await this.#narinfo(info.storePath);
    if (!n) throw new NotFoundError(`${info.storePath.absolute} is not in ${this.name}`);
    const body = await this.#transport.get(n.url);
    if (!body) {
      throw new NotFoundError(
        `${this.name}: ${n.url} (the NAR of ${info.storePath.absolute}) is missing`,
      );
    }
    const nar = gatheringReader(decompress(parseCompression(n.compression), body));
    try {
      return await ingestNar(nar, into.blobs, into.directories, {
        expectedNarSize: n.narSize,
        expectedNarSha256: n.narHash,
      });
    } finally {
      await nar.close();
    }
  }

  /** See {@linkcode CopyDestination.has}. */
  async has(path: StorePath): Promise<boolean> {
    return await this.#transport.exists(`${path.toString().slice(0, 32)}.narinfo`);
  }

  /**
   * Writes the NAR (compressed) and then the narinfo, each whole or not at all, signed with
   * the destination's key when it has one.
   */
  async add(info: PathInfo, from: CastoreServices): Promise<void> {
    const put = this.#transport.put?.bind(this.#transport);
    if (!put) {
      throw new InvalidRequestError(
        `${this.name}: nixcas copies to binary cache directories (file://) only; to push to an ` +
          `HTTP cache, copy to a file:// cache or use nix copy --to`,
      );
    }
    if (!this.#initialised) {
      if (!(await this.#transport.exists("nix-cache-info"))) {
        await put(
          "nix-cache-info",
          ReadableStream.from([new TextEncoder().encode("StoreDir: /nix/store\n")]),
        );
      }
      this.#initialised = true;
    }
    const root = fromNodeMessage(info.node);
    const storePath = StorePath.fromBytes(root.value.name);
    const signed = this.#signingKey ? await signPathInfo(info, this.#signingKey) : info;
    // The NAR's file name is its file hash, known only once written: written under a
    // temporary name first.
    const ext = compressionSuffix(this.#compression);
    const fileHash = createSha256Stream();
    let fileSize = 0;
    const tmpName = `nar/.incoming-${crypto.randomUUID()}.nar${ext}`;
    let nar = compress(
      this.#compression,
      ReadableStream.from(renderNar(root, from.blobs, from.directories)),
    );
    nar = nar.pipeThrough(
      new TransformStream({
        async transform(chunk, c) {
          await fileHash.updateInPlace(chunk);
          fileSize += chunk.length;
          c.enqueue(chunk);
        },
      }),
    );
    await put(tmpName, nar);
    const digest = await fileHash.digest();
    const url = `nar/${nixbase32(digest)}.nar${ext}`;
    await this.#rename(tmpName, url);
    const narinfo = renderNarInfo(pathInfoToNarInfo(signed, {
      url,
      compression: this.#compression,
      fileHash: digest,
      fileSize,
    }));
    await put(
      `${storePath.toString().slice(0, 32)}.narinfo`,
      ReadableStream.from([new TextEncoder().encode(narinfo)]),
    );
  }

  async #rename(from: string, to: string): Promise<void> {
    if (!(this.#transport instanceof DirectoryTransport)) {
      throw new InvalidRequestError(`${this.name}: cannot rename`);
    }
    await Deno.rename(`${this.#transport.dir}/${from}`, `${this.#transport.dir}/${to}`);
  }
}
