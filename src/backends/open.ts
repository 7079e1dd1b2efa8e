/**
 * Service addresses: one URL parser that opens any of the three services.
 *
 * - `memory://`: in this process, gone when it exits
 * - `sqlite:///abs/path.db`: an SQLite file (created on first use); `sqlite://` alone is a
 *   private in-memory database
 * - `grpc+http://host:port`, `grpc+https://host:port`, `grpc+unix:///abs/socket`: a daemon
 *
 * @module
 */
import { MemoryBlobService } from "./memory/blob.ts";
import type { BlobService } from "../castore/blob_service.ts";
import { type OpenOptions, SqliteBlobService } from "./sqlite/blob.ts";
import { MemoryDirectoryService } from "./memory/directory.ts";
import type { DirectoryService } from "../castore/directory_service.ts";
import { SqliteDirectoryService } from "./sqlite/directory.ts";
import { clip, InvalidRequestError } from "../base/errors.ts";
import { MemoryPathInfoService } from "./memory/path_info.ts";
import type { PathInfoService } from "../store/path_info_service.ts";
import { SqlitePathInfoService } from "./sqlite/path_info.ts";
// The gRPC clients (and Connect under them) load only when a grpc+ address is opened: a
// local import then starts ~50 ms sooner.

/**
 * A parsed service address, as {@linkcode parseAddr} returns it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseAddr, type ServiceAddr } from "@nixcas/nixcas/backends";
 * function describe(addr: ServiceAddr): string {
 *   switch (addr.kind) {
 *     case "memory":
 *       return "in this process";
 *     case "sqlite":
 *       return addr.path === ":memory:" ? "private SQLite database" : `SQLite file ${addr.path}`;
 *     case "grpc":
 *       return `daemon at ${addr.unixPath ?? addr.url}`;
 *     case "nix":
 *       return `Nix cache ${addr.cache}`;
 *   }
 * }
 * assert.equal(describe(parseAddr("sqlite://")), "private SQLite database");
 * assert.equal(describe(parseAddr("sqlite:///var/lib/nixcas.db")), "SQLite file /var/lib/nixcas.db");
 * assert.equal(describe(parseAddr("grpc+unix:///run/nixcas.sock")), "daemon at /run/nixcas.sock");
 * assert.equal(describe(parseAddr("grpc+http://[::1]:8000")), "daemon at http://[::1]:8000");
 * assert.equal(describe(parseAddr("nix+https://cache.example/x")), "Nix cache https://cache.example/x");
 * // Keys are base64 ("+" stays a "+"), separated by %20:
 * const nix = parseAddr("nix+file:///srv/cache?trusted-public-keys=a-1:x+y=%20b-1:z=");
 * assert.equal(nix.kind === "nix" && nix.trustedPublicKeys, "a-1:x+y= b-1:z=");
 * ```
 */
export type ServiceAddr =
  | { kind: "memory" }
  | { kind: "sqlite"; path: string } // ":memory:" for a private in-memory database
  | { kind: "grpc"; url: string; unixPath?: string; authTokenFile?: string }
  // A Nix binary cache read through into a local path info service (path infos only).
  | { kind: "nix"; cache: string; trustedPublicKeys: string; local?: string };

/**
 * Thrown for an address that cannot be used; the message quotes it and says why.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidRequestError } from "@nixcas/nixcas";
 * import { AddressError, parseAddr } from "@nixcas/nixcas/backends";
 * // "store.db" is a host here, not a path:
 * assert.throws(() => parseAddr("sqlite://store.db"), {
 *   name: "AddressError",
 *   message: 'invalid service address "sqlite://store.db": sqlite:// takes no host ' +
 *     '(got "store.db"); use sqlite:///absolute/path.db',
 * });
 * assert.throws(() => parseAddr("redis://localhost"), AddressError);
 * // Callers that tell the user's mistakes from failures catch the common base class:
 * assert.throws(() => parseAddr("redis://localhost"), InvalidRequestError);
 * ```
 */
export class AddressError extends InvalidRequestError {
  /** Creates the error for `addr`. */
  constructor(addr: string, why: string) {
    super(`invalid service address ${JSON.stringify(clip(addr))}: ${why}`);
    this.name = "AddressError";
  }
}

/**
 * Parses an address, rejecting unknown schemes, stray hosts, and relative paths. Throws
 * {@linkcode AddressError}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseAddr } from "@nixcas/nixcas/backends";
 * assert.deepEqual(parseAddr("memory://"), { kind: "memory" });
 * assert.deepEqual(parseAddr("sqlite://"), { kind: "sqlite", path: ":memory:" });
 * assert.deepEqual(parseAddr("sqlite:///var/lib/nixcas/store.db"), {
 *   kind: "sqlite",
 *   path: "/var/lib/nixcas/store.db",
 * });
 * assert.deepEqual(parseAddr("grpc+http://localhost:8000"), {
 *   kind: "grpc",
 *   url: "http://localhost:8000",
 * });
 * ```
 */
export function parseAddr(addr: string): ServiceAddr {
  let url: URL;
  try {
    url = new URL(addr);
  } catch {
    throw new AddressError(
      addr,
      "not a URL (expected memory://, sqlite:///abs/path.db, grpc+http://host:port, grpc+https://host:port or grpc+unix:///abs/socket)",
    );
  }
  if (url.hash) throw new AddressError(addr, "fragments are not supported");
  if (/^nix\+(https?|file):$/.test(url.protocol)) return parseNixCacheAddr(addr, url);
  // grpc+ addresses take one parameter, the file of the token to send (auth-token-file=/path).
  let authTokenFile: string | undefined;
  if (url.search) {
    const params = [...url.searchParams];
    const ok = url.protocol.startsWith("grpc+") && params.length === 1 &&
      params[0][0] === "auth-token-file" && params[0][1].startsWith("/");
    if (!ok) {
      throw new AddressError(
        addr,
        url.protocol.startsWith("grpc+")
          ? "the only parameter is auth-token-file=/abs/path"
          : "query strings are not supported",
      );
    }
    authTokenFile = params[0][1];
  }
  const token = authTokenFile ? { authTokenFile } : {};
  switch (url.protocol) {
    case "memory:":
      if (!addr.startsWith("memory://")) throw new AddressError(addr, "write it as memory://");
      if (url.host) throw new AddressError(addr, "memory:// takes no host");
      if (url.pathname) throw new AddressError(addr, "memory:// takes no path");
      return { kind: "memory" };
    case "sqlite:": {
      if (!addr.startsWith("sqlite://")) {
        throw new AddressError(addr, "write it as sqlite:///absolute/path.db");
      }
      if (url.host) {
        throw new AddressError(
          addr,
          `sqlite:// takes no host (got ${
            JSON.stringify(clip(url.host))
          }); use sqlite:///absolute/path.db`,
        );
      }
      if (!url.pathname) return { kind: "sqlite", path: ":memory:" };
      const path = decodeURIComponent(url.pathname);
      if (!path.startsWith("/") || path === "/") {
        throw new AddressError(addr, "the database path must be absolute");
      }
      return { kind: "sqlite", path };
    }
    case "grpc+unix:": {
      if (url.host) {
        throw new AddressError(addr, "grpc+unix:// takes no host; use grpc+unix:///abs/socket");
      }
      const path = decodeURIComponent(url.pathname);
      if (!path.startsWith("/") || path === "/") {
        throw new AddressError(addr, "the socket path must be absolute");
      }
      return { kind: "grpc", url: "http://localhost", unixPath: path, ...token };
    }
    case "grpc+http:":
    case "grpc+https:": {
      if (!url.hostname) throw new AddressError(addr, "a host is required");
      if (url.pathname && url.pathname !== "/") {
        throw new AddressError(addr, "no path allowed after host:port");
      }
      return { kind: "grpc", url: `${url.protocol.slice(5)}//${url.host}`, ...token };
    }
    default:
      throw new AddressError(
        addr,
        `unknown scheme ${
          JSON.stringify(clip(url.protocol.slice(0, -1)))
        } (known: memory, sqlite, grpc+http, grpc+https, grpc+unix, nix+http, nix+https, ` +
          `nix+file)`,
      );
  }
}

/**
 * `nix+http://host/path?trusted-public-keys=K1%20K2&local=ADDR` (also `nix+https://`,
 * `nix+file:///dir`): a Nix binary cache, read through into the path info service at `local`
 * (default: the embedded store).
 */
function parseNixCacheAddr(addr: string, url: URL): ServiceAddr {
  let trustedPublicKeys = "";
  let local: string | undefined;
  // Not URLSearchParams: it reads "+" as a space, and base64 keys contain "+". Keys are
  // separated by spaces (%20), as in Nix's trusted-public-keys setting.
  const params = url.search.slice(1).split("&").filter((p) => p).map((p) => {
    const at = p.indexOf("=");
    const [k, v] = at < 0 ? [p, ""] : [p.slice(0, at), p.slice(at + 1)];
    return [decodeURIComponent(k), decodeURIComponent(v)];
  });
  for (const [key, value] of params) {
    if (key === "trusted-public-keys") trustedPublicKeys = value;
    else if (key === "local") local = value;
    else {
      throw new AddressError(
        addr,
        `unknown parameter ${JSON.stringify(key)} (known: trusted-public-keys, local)`,
      );
    }
  }
  if (local !== undefined && parseAddr(local).kind === "nix") {
    throw new AddressError(addr, "local= must name a nixcas path info service, not a Nix cache");
  }
  url.search = "";
  const cache = url.href.slice("nix+".length).replace(/\/+$/, "");
  if (url.protocol !== "nix+file:" && !url.hostname) {
    throw new AddressError(addr, "a host is required");
  }
  return { kind: "nix", cache, trustedPublicKeys, ...(local ? { local } : {}) };
}

/**
 * The directory holding the default store: `$NIXCAS_DIR`, else `$XDG_DATA_HOME/nixcas`, else
 * `~/.local/share/nixcas`. Throws {@linkcode InvalidRequestError} when none of these variables
 * is set.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nixcasDir } from "@nixcas/nixcas/backends";
 * const dir = nixcasDir(); // e.g. "/home/alice/.local/share/nixcas"
 * const explicit = Deno.env.get("NIXCAS_DIR");
 * if (explicit) assert.equal(dir, explicit);
 * else assert.match(dir, /\/nixcas$/);
 * ```
 */
export function nixcasDir(): string {
  const explicit = Deno.env.get("NIXCAS_DIR");
  if (explicit) return explicit;
  const xdg = Deno.env.get("XDG_DATA_HOME");
  if (xdg) return `${xdg}/nixcas`;
  const home = Deno.env.get("HOME");
  if (!home) throw new InvalidRequestError("cannot find the default store: set NIXCAS_DIR or HOME");
  return `${home}/.local/share/nixcas`;
}

/**
 * The default address of all three services: the embedded store `sqlite://$NIXCAS_DIR/store.db`
 * (see {@linkcode nixcasDir}), with an absolute path.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultStoreAddr, nixcasDir, parseAddr } from "@nixcas/nixcas/backends";
 * const addr = defaultStoreAddr(); // e.g. "sqlite:///home/alice/.local/share/nixcas/store.db"
 * assert.equal(parseAddr(addr).kind, "sqlite");
 * assert(addr.endsWith(`${nixcasDir()}/store.db`));
 * ```
 */
export function defaultStoreAddr(): string {
  const dir = nixcasDir();
  const abs = dir.startsWith("/") ? dir : `${Deno.cwd()}/${dir}`;
  return `sqlite://${encodeURI(abs)}/store.db`;
}

// Synchronous: at start-up the thread pool is busy loading libraries, and an async mkdir waited
// 1–5 ms there for a thread.
function ensureParent(path: string): void {
  const dir = path.slice(0, path.lastIndexOf("/"));
  if (dir) Deno.mkdirSync(dir, { recursive: true });
}

/** The SQLite file of an address, its parent directory created first when the store may be. */
function sqlitePath({ parsed: { path }, options }: OpenRequest<"sqlite">): string {
  if (!options.readOnly && path !== ":memory:") ensureParent(path);
  return path;
}

/** What an opener gets: the parsed address, the address as written, and the options. */
interface OpenRequest<K extends ServiceAddr["kind"]> {
  parsed: Extract<ServiceAddr, { kind: K }>;
  addr: string;
  options: OpenOptions;
}

/** How each technology opens each service: one row per kind of address. */
const OPENERS: {
  [K in ServiceAddr["kind"]]: {
    blob(r: OpenRequest<K>): Promise<BlobService>;
    directory(r: OpenRequest<K>): Promise<DirectoryService>;
    pathInfo(
      r: OpenRequest<K>,
      blobs: BlobService,
      directories: DirectoryService,
    ): Promise<PathInfoService>;
  };
} = {
  memory: {
    blob: () => Promise.resolve(new MemoryBlobService()),
    directory: () => Promise.resolve(new MemoryDirectoryService()),
    pathInfo: (_r, blobs, dirs) => Promise.resolve(new MemoryPathInfoService(blobs, dirs)),
  },
  sqlite: {
    blob: (r) => Promise.resolve(new SqliteBlobService(sqlitePath(r), r.options)),
    directory: (r) => Promise.resolve(new SqliteDirectoryService(sqlitePath(r), r.options)),
    pathInfo: (r, blobs, dirs) =>
      Promise.resolve(new SqlitePathInfoService(sqlitePath(r), blobs, dirs, r.options)),
  },
  nix: {
    blob: (r) =>
      Promise.reject(new AddressError(r.addr, "a Nix cache is a path info service only")),
    directory: (r) =>
      Promise.reject(new AddressError(r.addr, "a Nix cache is a path info service only")),
    pathInfo: async (r, blobs, dirs) => {
      const { NixCachePathInfoService } = await import("./nix/path_info.ts");
      const { parseTrustedPublicKeys } = await import("../store/signature.ts");
      const trustedKeys = parseTrustedPublicKeys(r.parsed.trustedPublicKeys, "trusted-public-keys");
      const local = await openPathInfoService(
        r.parsed.local ?? defaultStoreAddr(),
        blobs,
        dirs,
        r.options,
      );
      return new NixCachePathInfoService(r.parsed.cache, blobs, dirs, local, { trustedKeys });
    },
  },
  // The gRPC clients (and Connect under them) load only when a grpc+ address is opened.
  grpc: {
    blob: async (r) => new (await import("./grpc/blob.ts")).GrpcBlobService(r.addr),
    directory: async (r) => new (await import("./grpc/directory.ts")).GrpcDirectoryService(r.addr),
    pathInfo: async (r) => new (await import("./grpc/path_info.ts")).GrpcPathInfoService(r.addr),
  },
};

/** The row of {@linkcode OPENERS} for `addr`, with its request. */
function opener(addr: string, options: OpenOptions) {
  const parsed = parseAddr(addr);
  // One row's functions take that row's address kind; TypeScript cannot correlate the two here.
  const row = OPENERS[parsed.kind] as (typeof OPENERS)["memory"];
  return { row, request: { parsed, addr, options } as OpenRequest<"memory"> };
}

/**
 * Opens a BlobService by address (see {@linkcode parseAddr}). A `sqlite://` file and its
 * parent directories are created when missing, unless `options.readOnly` (then a missing file
 * is an error naming it, and a store on a read-only filesystem can be read).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openBlobService } from "@nixcas/nixcas/backends";
 * import { putBlob, readBlob } from "@nixcas/nixcas/castore";
 * const blobs = await openBlobService("memory://");
 * const digest = await putBlob(blobs, new TextEncoder().encode("Hello, world!\n"));
 * assert.equal(new TextDecoder().decode(await readBlob(blobs, digest)), "Hello, world!\n");
 * await blobs.close();
 * ```
 */
export async function openBlobService(
  addr: string,
  options: OpenOptions = {},
): Promise<BlobService> {
  const { row, request } = opener(addr, options);
  return await row.blob(request);
}

/**
 * Opens a DirectoryService by address (see {@linkcode parseAddr}). A `sqlite://` file and its
 * parent directories are created when missing, unless `options.readOnly`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openDirectoryService } from "@nixcas/nixcas/backends";
 * import { makeDirectory } from "@nixcas/nixcas/castore";
 * const dir = await Deno.makeTempDir();
 * const addr = `sqlite://${dir}/store.db`;
 * let directories = await openDirectoryService(addr);
 * const digest = await directories.put(makeDirectory({}));
 * await directories.close();
 * // Still there after reopening:
 * directories = await openDirectoryService(addr);
 * assert.notEqual(await directories.get(digest), null);
 * await directories.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function openDirectoryService(
  addr: string,
  options: OpenOptions = {},
): Promise<DirectoryService> {
  const { row, request } = opener(addr, options);
  return await row.directory(request);
}

/**
 * Opens a PathInfoService by address. Local backends calculate NARs from `blobs` and
 * `directories`; a remote daemon calculates them from its own. A `sqlite://` file is created
 * when missing, unless `options.readOnly`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   openBlobService,
 *   openDirectoryService,
 *   openPathInfoService,
 * } from "@nixcas/nixcas/backends";
 * const blobs = await openBlobService("sqlite://");
 * const directories = await openDirectoryService("sqlite://");
 * const pathInfos = await openPathInfoService("sqlite://", blobs, directories);
 * assert.deepEqual(await Array.fromAsync(pathInfos.list()), []); // a new store
 * await pathInfos.close();
 * await directories.close();
 * await blobs.close();
 * ```
 */
export async function openPathInfoService(
  addr: string,
  blobs: BlobService,
  directories: DirectoryService,
  options: OpenOptions = {},
): Promise<PathInfoService> {
  const { row, request } = opener(addr, options);
  return await row.pathInfo(request, blobs, directories);
}

/**
 * The three services of one store, as {@linkcode openStore} returns them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore, type Store } from "@nixcas/nixcas/backends";
 * import { putBlob } from "@nixcas/nixcas/castore";
 * const store: Store = await openStore("memory://");
 * const digest = await putBlob(store.blobs, new TextEncoder().encode("hi"));
 * assert(await store.blobs.has(digest));
 * await store.close();
 * ```
 */
export interface Store {
  /** Blob service. */
  blobs: BlobService;
  /** Directory service. */
  directories: DirectoryService;
  /** Path info service. */
  pathInfos: PathInfoService;
  /** Closes all three. */
  close(): Promise<void>;
}

/**
 * Opens all three services. `addr` is used for every service unless `blob`, `directory` or
 * `pathInfo` name another; the default is the embedded store ({@linkcode defaultStoreAddr}).
 * With `options.readOnly`, SQLite stores are opened for reading only: a missing one is an error,
 * nothing is created.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import { importStorePath } from "@nixcas/nixcas/store";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/hello.txt`, "Hello, world!\n");
 * // Blobs in a SQLite file, directories and path infos in memory:
 * const store = await openStore("memory://", { blob: `sqlite://${dir}/castore.db` });
 * const { storePath } = await importStorePath(`${dir}/hello.txt`, store);
 * assert.equal(storePath.absolute, "/nix/store/xrabnx1r49hn890prhx86h6iyn19p976-hello.txt");
 * await store.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function openStore(
  addr?: string,
  overrides: { blob?: string; directory?: string; pathInfo?: string } = {},
  options: OpenOptions = {},
): Promise<Store> {
  const def = addr ??
    (overrides.blob && overrides.directory && overrides.pathInfo ? "" : defaultStoreAddr());
  // Every address is checked before any store is opened, so a bad one is reported as such.
  for (const a of [overrides.blob, overrides.directory, overrides.pathInfo]) parseAddr(a ?? def);
  const blobs = await openBlobService(overrides.blob ?? def, options);
  let directories: DirectoryService | undefined;
  try {
    directories = await openDirectoryService(overrides.directory ?? def, options);
    const pathInfos = await openPathInfoService(
      overrides.pathInfo ?? def,
      blobs,
      directories,
      options,
    );
    const dirs = directories;
    return {
      blobs,
      directories: dirs,
      pathInfos,
      async close() {
        await pathInfos.close();
        await dirs.close();
        await blobs.close();
      },
    };
  } catch (e) {
    await directories?.close();
    await blobs.close();
    throw e;
  }
}
