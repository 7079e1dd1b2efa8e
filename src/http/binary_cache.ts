/**
 * A Nix binary cache over HTTP/1.1, served from castore and the path info service: what
 * `nix copy --to/--from http://…` and substituters speak. NARs are rendered on the fly from
 * verified castore data (never stored whole); uploads are decompressed and ingested as they
 * arrive and become store paths when their narinfo is put.
 *
 * @module
 */
import { InvalidRequestError, NotFoundError, PreconditionError } from "../base/errors.ts";
import { type AnyNode, fromNodeMessage } from "../castore/directory.ts";
import { DatabaseSync } from "node:sqlite";
import {
  compress,
  type Compression,
  compressionOfFileName,
  decompress,
  parseCompression,
} from "../compress/compression.ts";
import { gatheringReader, ingestNar } from "../nar/ingest.ts";
import { narListing } from "../nar/listing.ts";
import { renderNar } from "../nar/render.ts";
import type { CastoreServices } from "../store/copy.ts";
import {
  narInfoToPathInfo,
  parseNarInfo,
  pathInfoToNarInfo,
  renderNarInfo,
} from "../store/narinfo.ts";
import { decode as nixbase32Decode, encode as nixbase32 } from "../store/nixbase32.ts";
import type { PathInfo, PathInfoService } from "../store/path_info_service.ts";
import { type SigningKey, signPathInfo } from "../store/signature.ts";
import { StorePath } from "../store/store_path.ts";

/**
 * What {@linkcode binaryCacheHandler} serves and how.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import type { BinaryCacheServerOptions } from "@nixcas/nixcas/http";
 * const store = await openStore("memory://");
 * const options: BinaryCacheServerOptions = { ...store, priority: 10, readOnly: true };
 * assert.equal(options.priority, 10);
 * await store.close();
 * ```
 */
export interface BinaryCacheServerOptions {
  /** File contents. */
  blobs: CastoreServices["blobs"];
  /** Directories. */
  directories: CastoreServices["directories"];
  /** Store paths. */
  pathInfos: PathInfoService;
  /** `Priority` in `nix-cache-info` (default 30: before cache.nixos.org's 40). */
  priority?: number;
  /** Signs each narinfo served, on the fly. */
  signingKey?: SigningKey;
  /** Refuses every PUT (403). */
  readOnly?: boolean;
  /** A PUT (and, with `authenticateReads`, every request but /health) needs one of these. */
  authTokens?: readonly string[];
  /** Require the token for reads too. */
  authenticateReads?: boolean;
  /** Where build logs are kept (`log/<drv>`); without it, log PUTs are refused. */
  logDir?: string;
  /** Called for every request that failed on our side, with what to log. */
  onError?: (message: string) => void;
  /**
   * Where the URLs uploaders chose for their NARs are remembered (an SQLite file), so that a
   * client that cached the narinfo it uploaded (Nix does, for a month) can still fetch that URL;
   * without it they are remembered while the server runs.
   */
  uploadUrlsFile?: string;
}

/** The URLs uploaders gave NARs, each mapped to its store path's hash and its compression. */
class UploadUrls {
  readonly #mem = new Map<string, { hash: string; compression: Compression }>();
  readonly #db: DatabaseSync | null;

  constructor(file?: string) {
    this.#db = file ? new DatabaseSync(file) : null;
    this.#db?.exec(
      "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; " +
        "CREATE TABLE IF NOT EXISTS upload_urls (url TEXT PRIMARY KEY, hash TEXT NOT NULL, " +
        "compression TEXT NOT NULL)",
    );
  }

  set(url: string, hash: string, compression: Compression): void {
    this.#mem.set(url, { hash, compression });
    this.#db?.prepare("INSERT OR REPLACE INTO upload_urls VALUES (?, ?, ?)").run(
      url,
      hash,
      compression,
    );
  }

  get(url: string): { hash: string; compression: Compression } | undefined {
    const known = this.#mem.get(url);
    if (known || !this.#db) return known;
    const row = this.#db.prepare("SELECT hash, compression FROM upload_urls WHERE url = ?")
      .get(url) as { hash: string; compression: string } | undefined;
    return row ? { hash: row.hash, compression: parseCompression(row.compression) } : undefined;
  }
}

const TEXT = { "content-type": "text/plain; charset=utf-8" };
const HASH = "[0-9a-df-np-sv-z]{32}";
const NARINFO_RE = new RegExp(`^/(${HASH})\\.narinfo$`);
const LS_RE = new RegExp(`^/(${HASH})\\.ls$`);
const SERVED_NAR_RE = new RegExp(`^/nar/(${HASH})\\.nar$`);
const UPLOAD_NAR_RE = /^\/nar\/([0-9a-df-np-sv-z]{52}|[0-9a-f]{64})\.nar(\.xz|\.zst|\.bz2)?$/;
const LOG_RE = /^\/log\/([0-9a-df-np-sv-z]{32}-[A-Za-z0-9+\-._?=]+)$/;

/** An ingested upload waiting for its narinfo. */
interface Upload {
  node: AnyNode;
  narSize: number;
  narSha256: Uint8Array;
  at: number;
}

/**
 * Uploads are remembered this long, claimed or not: paths with the same NAR (`nix-store --add f`
 * and `--add-fixed sha256 f`) are pushed in parallel, and each HEADs the NAR URL, skips the
 * upload if it is there and then puts a narinfo that must find it.
 */
const UPLOAD_TTL_MS = 6 * 3600_000;
/** At most this many uploads are remembered (the oldest are forgotten first). */
const MAX_UPLOADS = 100_000;

function status(code: number, message: string, headers: HeadersInit = {}): Response {
  return new Response(`${message}\n`, { status: code, headers: { ...TEXT, ...headers } });
}

function constantTimeEqual(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

/** The token of a request: `Bearer <token>`, or Basic auth whose password is the token. */
function presentedToken(req: Request): string | null {
  const h = req.headers.get("authorization");
  if (!h) return null;
  const m = /^(Bearer|Basic)\s+(.+)$/i.exec(h.trim());
  if (!m) return null;
  if (m[1].toLowerCase() === "bearer") return m[2];
  try {
    const decoded = atob(m[2]);
    return decoded.slice(decoded.indexOf(":") + 1);
  } catch {
    return null;
  }
}

/** Parses `Range: bytes=a-b` against a size; null for no (or an unsatisfiable) single range. */
function parseRange(h: string | null, size: number): { start: number; end: number } | "bad" | null {
  if (!h) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(h.trim());
  if (!m || (m[1] === "" && m[2] === "")) return null; // several ranges: the whole NAR
  let start: number, end: number;
  if (m[1] === "") {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start > end || start >= size) return "bad";
  return { start, end };
}

/** The bytes `start..end` (inclusive) of a stream of chunks. */
async function* slice(source: AsyncIterable<Uint8Array>, start: number, end: number) {
  let pos = 0;
  for await (const chunk of source) {
    const from = Math.max(0, start - pos);
    const to = Math.min(chunk.length, end + 1 - pos);
    if (from < to) yield chunk.subarray(from, to);
    pos += chunk.length;
    if (pos > end) return;
  }
}

/**
 * The request handler of a binary cache over `options`' services, for `Deno.serve`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import { binaryCacheHandler } from "@nixcas/nixcas/http";
 * import { importStorePath } from "@nixcas/nixcas/store";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/hello.txt`, "Hello, world!\n");
 * const store = await openStore("memory://");
 * const { storePath } = await importStorePath(`${dir}/hello.txt`, store);
 * const handler = binaryCacheHandler(store);
 * const hash = storePath.toString().slice(0, 32);
 * const narinfo = await (await handler(new Request(`http://x/${hash}.narinfo`))).text();
 * assert.match(narinfo, /^StorePath: \/nix\/store\/xrabnx1r49hn890prhx86h6iyn19p976-hello.txt\n/);
 * const url = /^URL: (.*)$/m.exec(narinfo)![1];
 * const nar = await (await handler(new Request(`http://x/${url}`))).bytes();
 * assert.equal(nar.length, 128);
 * await store.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function binaryCacheHandler(
  options: BinaryCacheServerOptions,
): (req: Request) => Promise<Response> {
  const uploads = new Map<string, Upload>();
  const uploadUrls = new UploadUrls(options.uploadUrlsFile);
  const priority = options.priority ?? 30;
  const cacheInfo = `StoreDir: /nix/store\nWantMassQuery: 1\nPriority: ${priority}\n`;

  const lookup = async (hash: string): Promise<{ storePath: StorePath; info: PathInfo } | null> => {
    const info = await options.pathInfos.get(nixbase32Decode(hash, 20));
    if (!info) return null;
    const root = fromNodeMessage(info.node);
    return { storePath: StorePath.fromBytes(root.value.name), info };
  };

  const narinfoText = async (hash: string): Promise<string | null> => {
    const found = await lookup(hash);
    if (!found) return null;
    let info = found.info;
    if (options.signingKey) info = await signPathInfo(info, options.signingKey);
    const narinfo = pathInfoToNarInfo(info, {
      url: `nar/${hash}.nar`,
      compression: "none",
      fileHash: info.narinfo!.narSha256,
      fileSize: Number(info.narinfo!.narSize),
    });
    return renderNarInfo(narinfo);
  };

  const serveNar = async (req: Request, hash: string): Promise<Response> => {
    const found = await lookup(hash);
    if (!found) return status(404, `no store path with hash ${hash}`);
    const size = Number(found.info.narinfo!.narSize);
    const headers: Record<string, string> = {
      "content-type": "application/x-nix-nar",
      "cache-control": "public, max-age=31536000, immutable",
      "accept-ranges": "bytes",
    };
    const range = parseRange(req.headers.get("range"), size);
    if (range === "bad") {
      return status(416, `range not satisfiable (NAR size ${size})`, {
        "content-range": `bytes */${size}`,
      });
    }
    const length = range ? range.end - range.start + 1 : size;
    headers["content-length"] = String(length);
    if (range) headers["content-range"] = `bytes ${range.start}-${range.end}/${size}`;
    if (req.method === "HEAD") return new Response(null, { status: range ? 206 : 200, headers });
    const root = fromNodeMessage(found.info.node);
    let nar: AsyncIterable<Uint8Array> = renderNar(root, options.blobs, options.directories);
    if (range) nar = slice(nar, range.start, range.end);
    // A NAR whose data is missing or corrupt errors the stream: the connection is cut before
    // Content-Length bytes, so no client takes a short NAR for a whole one.
    const body = ReadableStream.from(
      reportingErrors(
        nar,
        (e) => options.onError?.(`${req.method} ${new URL(req.url).pathname}: ${e}`),
      ),
    );
    return new Response(body, { status: range ? 206 : 200, headers });
  };

  // A NAR at the URL its uploader chose: rendered and compressed again as that URL says (the
  // client checks the NAR hash, not the file's).
  const serveUploadedUrl = async (req: Request, url: string): Promise<Response | null> => {
    const compression = compressionOfFileName(url) ?? "none";
    let node: AnyNode | undefined = uploads.get(url)?.node;
    if (!node) {
      const alias = uploadUrls.get(url);
      const found = alias && await lookup(alias.hash);
      if (!found) return null;
      node = fromNodeMessage(found.info.node);
    }
    const headers = { "content-type": "application/x-nix-nar" };
    if (req.method === "HEAD") return new Response(null, { headers });
    const nar = ReadableStream.from(renderNar(node, options.blobs, options.directories));
    return new Response(compress(compression, nar, { level: 1 }), { headers });
  };

  const putNar = async (
    req: Request,
    name: string,
    compression: Compression,
  ): Promise<Response> => {
    if (!req.body) return status(400, "empty body");
    const body = gatheringReader(decompress(compression, req.body));
    let result;
    try {
      result = await ingestNar(body, options.blobs, options.directories);
    } finally {
      await body.close();
    }
    // The map is in upload order (a re-upload moves to the end): forget from the front.
    uploads.delete(name);
    uploads.set(name, { ...result, at: Date.now() });
    for (const [k, u] of uploads) {
      if (uploads.size <= MAX_UPLOADS && Date.now() - u.at <= UPLOAD_TTL_MS) break;
      uploads.delete(k);
    }
    return status(200, "ok");
  };

  const putNarinfo = async (req: Request, hash: string): Promise<Response> => {
    const text = await req.text();
    const narinfo = parseNarInfo(text, `${hash}.narinfo`);
    if (narinfo.storePath.toString().slice(0, 32) !== hash) {
      return status(400, `${hash}.narinfo describes ${narinfo.storePath.absolute}`);
    }
    const upload = uploads.get(narinfo.url.replace(/^\/+/, ""));
    let node: AnyNode;
    if (upload) {
      if (upload.narSize !== narinfo.narSize || !equal(upload.narSha256, narinfo.narHash)) {
        return status(
          400,
          `${narinfo.storePath.absolute}: the NAR at ${narinfo.url} has size ${upload.narSize} and hash sha256:${
            nixbase32(upload.narSha256)
          }, the narinfo says ${narinfo.narSize} and sha256:${nixbase32(narinfo.narHash)}`,
        );
      }
      node = upload.node;
    } else {
      const existing = await lookup(hash);
      if (!existing) {
        return status(
          400,
          `${narinfo.storePath.absolute}: its NAR ${narinfo.url} was not uploaded`,
        );
      }
      node = fromNodeMessage(existing.info.node);
    }
    for (const ref of narinfo.references) {
      if (ref.equals(narinfo.storePath)) continue;
      if (!(await options.pathInfos.get(ref.digest))) {
        return status(
          400,
          `${narinfo.storePath.absolute}: its reference ${ref.absolute} is not in this cache; upload it first`,
        );
      }
    }
    await options.pathInfos.put(narInfoToPathInfo(narinfo, node));
    const url = narinfo.url.replace(/^\/+/, "");
    const kind = compressionOfFileName(url);
    if (kind) uploadUrls.set(url, hash, kind);
    return status(200, "ok");
  };

  const logPath = (name: string) => `${options.logDir}/${name}`;

  const route = async (req: Request): Promise<Response> => {
    const path = new URL(req.url).pathname;
    const method = req.method;
    if (path === "/health") return status(200, "ok");
    const write = method === "PUT" || method === "POST" || method === "DELETE";
    if (options.authTokens?.length && (write || options.authenticateReads)) {
      const token = presentedToken(req);
      if (token === null || !options.authTokens.some((t) => constantTimeEqual(token, t))) {
        return status(401, "authentication required", {
          "www-authenticate": 'Basic realm="nixcas"',
        });
      }
    }
    if (write && options.readOnly) return status(403, "this cache is read-only");
    if (method === "GET" || method === "HEAD") {
      if (path === "/nix-cache-info") {
        return new Response(method === "HEAD" ? null : cacheInfo, {
          headers: { "content-type": "text/x-nix-cache-info" },
        });
      }
      let m = NARINFO_RE.exec(path);
      if (m) {
        const text = await narinfoText(m[1]);
        if (text === null) return status(404, `no store path with hash ${m[1]}`);
        return new Response(method === "HEAD" ? null : text, {
          headers: { "content-type": "text/x-nix-narinfo" },
        });
      }
      m = SERVED_NAR_RE.exec(path);
      if (m) return await serveNar(req, m[1]);
      m = UPLOAD_NAR_RE.exec(path);
      if (m) return (await serveUploadedUrl(req, path.slice(1))) ?? status(404, "no such NAR");
      m = LS_RE.exec(path);
      if (m) {
        const found = await lookup(m[1]);
        if (!found) return status(404, `no store path with hash ${m[1]}`);
        const ls = await narListing(fromNodeMessage(found.info.node), options.directories);
        return new Response(method === "HEAD" ? null : JSON.stringify(ls), {
          headers: { "content-type": "application/json" },
        });
      }
      m = LOG_RE.exec(path);
      if (m && options.logDir) {
        try {
          const file = await Deno.open(logPath(m[1]));
          return new Response(method === "HEAD" ? null : file.readable, { headers: TEXT });
        } catch (e) {
          if (e instanceof Deno.errors.NotFound) return status(404, `no log for ${m[1]}`);
          throw e;
        }
      }
      return status(404, `not found: ${path}`);
    }
    if (method === "PUT") {
      if (path === "/nix-cache-info") return status(200, "ok");
      let m = UPLOAD_NAR_RE.exec(path);
      if (m) return await putNar(req, path.slice(1), compressionOfFileName(path) ?? "none");
      m = NARINFO_RE.exec(path);
      if (m) return await putNarinfo(req, m[1]);
      m = LOG_RE.exec(path);
      if (m) {
        if (!options.logDir) return status(403, "this cache keeps no logs");
        await Deno.mkdir(options.logDir, { recursive: true });
        const tmp = `${logPath(m[1])}.tmp-${crypto.randomUUID()}`;
        try {
          await req.body!.pipeTo((await Deno.open(tmp, { write: true, createNew: true })).writable);
          await Deno.rename(tmp, logPath(m[1]));
        } catch (e) {
          await Deno.remove(tmp).catch(() => {});
          throw e;
        }
        return status(200, "ok");
      }
      return status(404, `cannot PUT ${path}`);
    }
    return status(405, `method ${method} not allowed`, { allow: "GET, HEAD, PUT" });
  };

  return async (req) => {
    try {
      return await route(req);
    } catch (e) {
      await req.body?.cancel().catch(() => {});
      if (e instanceof InvalidRequestError) return status(400, (e as Error).message);
      if (e instanceof NotFoundError) return status(404, (e as Error).message);
      // A stored path put again with other content: Nix retries a 5xx, so say it is final.
      if (e instanceof PreconditionError) return status(409, (e as Error).message);
      options.onError?.(`${req.method} ${new URL(req.url).pathname}: ${(e as Error).message}`);
      return status(500, (e as Error).message);
    }
  };
}

/** Passes the chunks on; reports an error (after which the stream errors, cutting the reply). */
async function* reportingErrors(
  source: AsyncIterable<Uint8Array>,
  onError: (e: string) => void,
) {
  try {
    yield* source;
  } catch (e) {
    onError((e as Error).message);
    throw e;
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
