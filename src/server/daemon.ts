/**
 * The gRPC daemon: BlobService, DirectoryService and PathInfoService (plus server reflection
 * and health) over HTTP/2, cleartext or TLS, on TCP or a unix socket, behind the GOAWAY guard
 * of `h2guard.ts`. It keeps serving when file descriptors run out, caps its connections, closes
 * idle ones, and can require a bearer token and refuse writes.
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";
import * as http2 from "node:http2";
import type { DescService } from "npm:@bufbuild/protobuf@2.17.0";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createConnectRouter,
  type HandlerContext,
} from "npm:@connectrpc/connect@2.2.0";
import {
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "npm:@connectrpc/connect-node@2.2.0";
import type { BlobService } from "../castore/blob_service.ts";
import type { DirectoryService } from "../castore/directory_service.ts";
import type { PathInfoService } from "../store/path_info_service.ts";
import { BlobService as BlobServiceDesc } from "../gen/tvix/castore/protos/rpc_blobstore_pb.ts";
import { DirectoryService as DirectoryServiceDesc } from "../gen/tvix/castore/protos/rpc_directory_pb.ts";
import { PathInfoService as PathInfoServiceDesc } from "../gen/tvix/store/protos/rpc_pathinfo_pb.ts";
import {
  DEFAULT_LISTEN_ADDRESS,
  formatSocketAddress,
  parseListenAddress,
  type SocketAddress,
} from "../backends/grpc/address.ts";
import {
  type ClosureLimits,
  DEFAULT_MAX_DIRECTORIES_PER_PUT,
  DEFAULT_MAX_DIRECTORY_BYTES_PER_PUT,
} from "../castore/closure.ts";
import { type Semaphore, semaphore } from "../base/async.ts";
import { blobServiceImpl, DEFAULT_CONCURRENT_READS, serveBlobRead } from "./blob.ts";
import { READ_PATH } from "../backends/grpc/blob_read.ts";
import { undecodableAsInvalidArgument } from "./errors.ts";
import { directoryServiceImpl } from "./directory.ts";
import { pathInfoServiceImpl } from "./path_info.ts";
import { registerReflection } from "./reflection.ts";
import { HealthServiceDesc, HealthState, registerHealth } from "./health.ts";
import { pumpGuarded, StreamTracker } from "../backends/grpc/h2guard.ts";
import { H2_SERVER_SETTINGS, widenConnectionWindow } from "../backends/grpc/h2settings.ts";
import { trimHeap } from "../sys/libc.ts";

/** Most of {@linkcode DaemonOptions.maxConnections}' default. */
export const DEFAULT_MAX_CONNECTIONS = 1024;

/**
 * The default connection cap: 1024, or fewer when the file descriptor limit cannot hold that
 * many (each connection takes three: the client's, and both ends of the pump to the inner
 * server; 64 are kept for the store, listeners and the runtime). So the cap, not the
 * descriptors, runs out first, and new clients find room.
 */
export function defaultMaxConnections(): number {
  let soft = Infinity;
  try {
    const m = /^Max open files\s+(\d+)/m.exec(Deno.readTextFileSync("/proc/self/limits"));
    if (m) soft = Number(m[1]);
  } catch { /* not Linux, or no read permission: assume plenty */ }
  return Math.max(1, Math.min(DEFAULT_MAX_CONNECTIONS, Math.floor((soft - 64) / 3)));
}
/** How long the inner HTTP/2 server may leave a connection unaccepted before it is replaced. */
const ACCEPT_STALL_MS = 1000;

/** Default of {@linkcode DaemonOptions.idleTimeoutMs}: five minutes. */
export const DEFAULT_IDLE_TIMEOUT_MS = 300_000;
/** Default of {@linkcode DaemonOptions.socketMode}: owner and group may connect. */
export const DEFAULT_SOCKET_MODE = 0o660;

/**
 * What {@linkcode serveDaemon} serves and where.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { StorageError } from "@nixcas/nixcas";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { GrpcPathInfoService } from "@nixcas/nixcas/grpc";
 * import { type DaemonOptions, serveDaemon } from "@nixcas/nixcas/server";
 * const logged: string[] = [];
 * const options: DaemonOptions = {
 *   listen: "127.0.0.1:0", // a free port on IPv4 loopback
 *   blobs: new MemoryBlobService(),
 *   directories: new MemoryDirectoryService(),
 *   reflection: false,
 *   log: (message) => logged.push(message),
 * };
 * const daemon = await serveDaemon(options);
 * assert.match(daemon.addressText, /^127\.0\.0\.1:[1-9]\d*$/);
 * // No pathInfos: the daemon serves only the castore services.
 * const pathInfos = new GrpcPathInfoService(`grpc+http://${daemon.addressText}`);
 * await assert.rejects(pathInfos.get(new Uint8Array(20)), StorageError);
 * await pathInfos.close();
 * await daemon.close();
 * assert.deepEqual(logged, []);
 * ```
 */
export interface DaemonOptions {
  /** `host:port`, `[v6]:port` or `unix:/abs/path`; default `[::1]:8000`. Port 0 picks one. */
  listen?: string | SocketAddress;
  /** Backing BlobService. */
  blobs: BlobService;
  /** Backing DirectoryService. */
  directories: DirectoryService;
  /** Backing PathInfoService; without it the daemon serves only the castore services. */
  pathInfos?: PathInfoService;
  /** Serve gRPC server reflection (default true). */
  reflection?: boolean;
  /**
   * While idle after calls, give the C heap's freed memory back to the system (glibc's
   * `malloc_trim`, through FFI; default false). A burst of reads otherwise leaves the process
   * at its peak RSS. `nixcas daemon` turns it on.
   */
  trimHeap?: boolean;
  /** Serve `grpc.health.v1.Health` (default true). */
  health?: boolean;
  /**
   * Serve TLS with this certificate chain and key (PEM text); TCP only. Clients then use
   * `grpc+https://`.
   */
  tls?: { cert: string; key: string };
  /**
   * When given (non-empty), every call needs `authorization: Bearer <one of these>`
   * (UNAUTHENTICATED otherwise), except reads under {@linkcode DaemonOptions.publicRead}.
   */
  authTokens?: string[];
  /** With {@linkcode DaemonOptions.authTokens}: reads need no token, writes do. */
  publicRead?: boolean;
  /** Refuse every write (Blob, Directory and PathInfo Put) with PERMISSION_DENIED. */
  readOnly?: boolean;
  /**
   * At most this many client connections at once (default: {@linkcode defaultMaxConnections}).
   * At the cap, a new connection closes the one idle the longest (no open stream), or is closed
   * itself when all are busy. Needs the guard.
   */
  maxConnections?: number;
  /**
   * A connection with no open stream for this long is closed (default five minutes; 0: never).
   * Needs the guard.
   */
  idleTimeoutMs?: number;
  /** Permissions of a unix socket file (default 0o660). */
  socketMode?: number;
  /**
   * Put the GOAWAY guard in front of the HTTP/2 server (default true). Only for measuring what
   * the guard costs: without it a client's GOAWAY can abort the process.
   */
  guard?: boolean;
  /**
   * Limits on one Directory Put stream; default {@linkcode DEFAULT_MAX_DIRECTORIES_PER_PUT}
   * directories and {@linkcode DEFAULT_MAX_DIRECTORY_BYTES_PER_PUT} bytes. A stream that passes
   * one is refused (INVALID_ARGUMENT) at the directory that passes it.
   */
  directoryPutLimits?: ClosureLimits;
  /** Receives errors that are logged rather than answered (default: console.error). */
  log?: (message: string) => void;
}

/**
 * A running daemon, as {@linkcode serveDaemon} returns it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { type Daemon, serveDaemon } from "@nixcas/nixcas/server";
 * const dir = await Deno.makeTempDir();
 * const socket = `${dir}/nixcas.sock`;
 * const daemon: Daemon = await serveDaemon({
 *   listen: `unix:${socket}`,
 *   blobs: new MemoryBlobService(),
 *   directories: new MemoryDirectoryService(),
 * });
 * assert.deepEqual(daemon.address, { transport: "unix", path: socket });
 * assert.equal(daemon.addressText, `unix:${socket}`);
 * assert.equal(daemon.inFlight, 0);
 * assert((await Deno.lstat(socket)).isSocket);
 * await daemon.close();
 * await daemon.close(); // idempotent
 * await assert.rejects(Deno.lstat(socket), Deno.errors.NotFound); // the socket file is gone
 * await Deno.remove(dir);
 * ```
 */
export interface Daemon {
  /** The address it listens on (with the real port when port 0 was asked for). */
  readonly address: SocketAddress;
  /** The address as text, in the form `--listen-address` takes. */
  readonly addressText: string;
  /** Calls in progress. */
  readonly inFlight: number;
  /**
   * Stops accepting, waits up to `graceMs` (default 10 s) for calls in progress, closes every
   * connection, and removes the unix socket file. Idempotent.
   */
  close(graceMs?: number): Promise<void>;
}

/**
 * The node:http2 request handler: connect's gRPC protocol over our routes. Like connect-node's
 * `connectNodeAdapter`, but a call the client abandoned (cancel, disconnect) is not logged as a
 * failure, and other failures go to `log`.
 */
function requestHandler(
  opts: DaemonOptions,
  log: (m: string) => void,
  health: HealthState | null,
): (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void {
  const router = createConnectRouter({
    requestGate: accessGate(opts),
    grpc: true,
    grpcWeb: false,
    connect: false,
    // connect gzips responses whenever a client offers it (grpcio does): 10x slower reads.
    acceptCompression: [],
    readMaxBytes: 64 << 20,
    writeMaxBytes: 64 << 20,
  });
  const reading = semaphore(DEFAULT_CONCURRENT_READS);
  daemonRoutes(opts, health, reading)(router);
  const paths = new Map(router.handlers.map((h) => [h.requestPath, h]));
  const gate = accessGate(opts);
  const readGate = gate &&
    ((headers: http2.IncomingHttpHeaders) =>
      gate({
        service: BlobServiceDesc,
        method: BlobServiceDesc.method.read,
        requestHeader: new Headers(
          typeof headers.authorization === "string" ? { authorization: headers.authorization } : {},
        ),
      } as unknown as HandlerContext));
  return (req, res) => {
    const path = (req.url ?? "").split("?", 1)[0];
    if (path === READ_PATH) {
      // The call that carries the bytes, without connect (backends/grpc/blob_read.ts).
      serveBlobRead(opts.blobs, reading, req, res, readGate).catch((e) => {
        if (!res.stream.destroyed) log(`gRPC ${READ_PATH} failed: ${e}`);
      });
      return;
    }
    const h = paths.get(path);
    if (!h) {
      // grpc clients read HTTP 404 as UNIMPLEMENTED.
      res.writeHead(404).end();
      return;
    }
    const uReq = universalRequestFromNodeRequest(req, res, undefined, undefined);
    h(uReq)
      .then((uRes) =>
        universalResponseToNodeResponse(
          undecodableAsInvalidArgument(uRes, h.method.input.typeName),
          res,
        )
      )
      .catch((reason) => {
        const code = ConnectError.from(reason).code;
        if (code === Code.Aborted || code === Code.Canceled || res.stream.destroyed) return;
        log(`gRPC ${h.service.typeName}/${h.method.name} failed: ${reason}`);
      });
  };
}

/**
 * Connect routes for the three services (and reflection, and health when `health` is given)
 * over the given backends.
 */
export function daemonRoutes(
  opts: DaemonOptions,
  health: HealthState | null = null,
  reading: Semaphore = semaphore(DEFAULT_CONCURRENT_READS),
): (router: ConnectRouter) => void {
  return (router) => {
    const described: DescService[] = [BlobServiceDesc, DirectoryServiceDesc];
    router.service(BlobServiceDesc, blobServiceImpl(opts.blobs, reading));
    router.service(
      DirectoryServiceDesc,
      directoryServiceImpl(opts.directories, {
        maxDirectories: opts.directoryPutLimits?.maxDirectories ?? DEFAULT_MAX_DIRECTORIES_PER_PUT,
        maxBytes: opts.directoryPutLimits?.maxBytes ?? DEFAULT_MAX_DIRECTORY_BYTES_PER_PUT,
      }),
    );
    if (opts.pathInfos) {
      router.service(PathInfoServiceDesc, pathInfoServiceImpl(opts.pathInfos));
      described.push(PathInfoServiceDesc);
    }
    if (health) {
      registerHealth(router, health);
      described.push(HealthServiceDesc);
    }
    if (opts.reflection ?? true) registerReflection(router, described);
  };
}

/** The service names the daemon serves (what health reports on besides ""). */
function servedNames(opts: DaemonOptions): string[] {
  const names = [BlobServiceDesc.typeName, DirectoryServiceDesc.typeName];
  if (opts.pathInfos) names.push(PathInfoServiceDesc.typeName);
  return names;
}

/**
 * The methods that change nothing. Every other method (the three Puts, and whatever a service
 * gains later) counts as a write: a forgotten entry refuses a read rather than allowing a write.
 */
const READS = new Set([
  `${BlobServiceDesc.typeName}/Stat`,
  `${BlobServiceDesc.typeName}/Read`,
  `${DirectoryServiceDesc.typeName}/Get`,
  `${PathInfoServiceDesc.typeName}/Get`,
  `${PathInfoServiceDesc.typeName}/CalculateNAR`,
  `${PathInfoServiceDesc.typeName}/List`,
]);
const READ_ONLY_SERVICES = new Set([
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
  HealthServiceDesc.typeName,
]);

function isWrite(ctx: HandlerContext): boolean {
  return !READ_ONLY_SERVICES.has(ctx.service.typeName) &&
    !READS.has(`${ctx.service.typeName}/${ctx.method.name}`);
}

const digestOf = (token: string) => createHash("sha256").update(token).digest();

/**
 * The check run on each call's headers before its body is read: the bearer token (compared in
 * constant time, through fixed-length digests) and read-only mode. Undefined when neither is
 * configured.
 */
function accessGate(opts: DaemonOptions): ((ctx: HandlerContext) => void) | undefined {
  const tokens = (opts.authTokens ?? []).map(digestOf);
  if (tokens.length === 0 && !opts.readOnly) return undefined;
  return (ctx) => {
    const write = isWrite(ctx);
    const what = `${ctx.service.typeName}/${ctx.method.name}`;
    if (tokens.length > 0 && (write || !opts.publicRead)) {
      const m = /^Bearer +(\S+) *$/i.exec(ctx.requestHeader.get("authorization") ?? "");
      if (!m) {
        throw new ConnectError(
          `${what}: authorization required (authorization: Bearer <token>)`,
          Code.Unauthenticated,
        );
      }
      const got = digestOf(m[1]);
      let ok = false;
      for (const t of tokens) ok = timingSafeEqual(got, t) || ok; // every token, always
      if (!ok) throw new ConnectError(`${what}: invalid token`, Code.Unauthenticated);
    }
    if (write && opts.readOnly) {
      throw new ConnectError(`${what}: this daemon is read-only`, Code.PermissionDenied);
    }
  };
}

/** A client connection, for the cap. */
interface ClientConn {
  /** Since when it has had no open stream (`performance.now()`); null while it has one. */
  idleSince: number | null;
  /** Closes it. */
  close: () => void;
}

/** How often an idle daemon gives freed memory back, and how many times after its last call. */
const HEAP_TRIM_MS = 5_000;
const HEAP_TRIMS = 12;

/**
 * Logs the first failure of a burst (failures less than 10 s apart), with a count of the
 * previous burst's others, so a storm of failed accepts is one line, not thousands.
 */
class BurstLog {
  #last = -Infinity;
  #more = 0;
  constructor(private log: (m: string) => void, private what: string) {}
  fail(detail: string): void {
    const now = performance.now();
    if (now - this.#last > 10_000) {
      const before = this.#more ? ` (${this.#more} more in the previous burst)` : "";
      this.log(`${this.what}: ${detail}; retrying, logged once per burst${before}`);
      this.#more = 0;
    } else this.#more++;
    this.#last = now;
  }
}

/**
 * Starts the daemon. Resolves once it listens.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import { serveDaemon } from "@nixcas/nixcas/server";
 * import { importStorePath } from "@nixcas/nixcas/store";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/hello.txt`, "Hello, world!\n");
 * const local = await openStore("memory://");
 * const daemon = await serveDaemon({ listen: `unix:${dir}/nixcas.sock`, ...local });
 * // grpc+unix://…/nixcas.sock now serves the three services of `local`:
 * const remote = await openStore(`grpc+unix://${dir}/nixcas.sock`);
 * const { storePath } = await importStorePath(`${dir}/hello.txt`, remote);
 * assert.equal((await local.pathInfos.get(storePath.digest))?.narinfo?.narSize, 128n);
 * await remote.close();
 * await daemon.close();
 * await local.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function serveDaemon(opts: DaemonOptions): Promise<Daemon> {
  const log = opts.log ?? ((m: string) => console.error(m));
  const listen = typeof opts.listen === "object"
    ? opts.listen
    : parseListenAddress(opts.listen ?? DEFAULT_LISTEN_ADDRESS);
  const health = (opts.health ?? true) ? new HealthState(servedNames(opts)) : null;
  const handler = requestHandler(opts, log, health);
  const guard = opts.guard ?? true;
  if (opts.tls && listen.transport !== "tcp") {
    throw new Error(`cannot listen on ${formatSocketAddress(listen)}: TLS needs a TCP address`);
  }
  if (opts.tls && !guard) throw new Error("TLS needs the GOAWAY guard");
  const maxConnections = opts.maxConnections ?? defaultMaxConnections();
  const idleMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;

  let inFlight = 0;
  let idle: (() => void) | null = null;
  // After a burst of calls, the C heap keeps what it freed (node:http2's buffers among it) and
  // V8 frees its buffers some seconds later: while idle, give it back to the system a few times.
  let trimsLeft = 0;
  const heapTrim = opts.trimHeap
    ? setInterval(() => {
      if (inFlight > 0 || trimsLeft === 0) return;
      trimsLeft--;
      trimHeap();
    }, HEAP_TRIM_MS)
    : undefined;
  if (heapTrim !== undefined) Deno.unrefTimer(heapTrim as unknown as number);
  // A failure to listen is thrown by the start, not logged as well.
  let started = false;
  const sessions = new Set<http2.ServerHttp2Session>();
  const servers = new Set<http2.Http2Server>();
  const makeServer = () => {
    const server = http2.createServer({ settings: H2_SERVER_SETTINGS }, (req, res) => {
      inFlight++;
      trimsLeft = HEAP_TRIMS;
      res.once("close", () => {
        inFlight--;
        if (inFlight === 0 && idle) idle();
      });
      // Deno's http2 client sends an IPv6 :authority without brackets, which makes
      // connect-node's `new URL()` throw: the authority plays no role here, so normalise
      // anything odd.
      const a = req.headers[":authority"];
      if (typeof a !== "string" || (!a.startsWith("[") && a.split(":").length > 2)) {
        (req.headers as Record<string, string>)[":authority"] = "localhost";
      }
      try {
        handler(req, res);
      } catch (e) {
        log(`gRPC handler error: ${(e as Error)?.stack ?? e}`);
        try {
          res.writeHead(500).end();
        } catch { /* the stream is gone */ }
      }
    });
    server.on("error", (e) => started && server.listening && log(`HTTP/2 server error: ${e}`));
    server.on("sessionError", (e) => {
      // A client that left (or a connection the daemon closed): nothing to report.
      const code = (e as { code?: string }).code;
      if (code !== "ECONNRESET" && code !== "EPIPE") log(`HTTP/2 session error: ${e}`);
    });
    server.on("session", (s) => {
      s.on("error", () => {/* already reported as sessionError */});
      widenConnectionWindow(s);
      sessions.add(s);
      s.once("close", () => sessions.delete(s));
    });
    servers.add(server);
    return server;
  };
  const h2 = makeServer();

  let tmpDir: string | null = null;
  let listener: Deno.Listener | null = null;
  const conns = new Set<Deno.Conn>();
  // Public connections being served → since when each has had no open stream (null: busy).
  const clients = new Set<ClientConn>();
  const uplinks = new Set<Deno.Conn>(); // our side of each connection to the inner server
  const pumps = new Set<Promise<void>>();
  let address: SocketAddress;
  // The private HTTP/2 server the pump feeds, replaced when it stops accepting (Deno's
  // node:net server stops for good after an accept fails for want of file descriptors).
  let inner = innerRecord(h2, "", 0);

  try {
    if (listen.transport === "unix") await removeStaleSocket(listen.path);
    if (guard) {
      tmpDir = await Deno.makeTempDir({ prefix: "nixcas-h2-" });
      inner.path = `${tmpDir}/h2-0.sock`;
      await listenNode(h2, { path: inner.path });
      if (listen.transport === "unix") {
        listener = Deno.listen({ transport: "unix", path: listen.path });
        await Deno.chmod(listen.path, opts.socketMode ?? DEFAULT_SOCKET_MODE);
      } else if (opts.tls) {
        listener = Deno.listenTls({
          hostname: listen.hostname,
          port: listen.port,
          cert: opts.tls.cert,
          key: opts.tls.key,
          alpnProtocols: ["h2"],
        });
      } else {
        listener = Deno.listen({ transport: "tcp", hostname: listen.hostname, port: listen.port });
      }
      address = listen.transport === "unix" ? listen : {
        transport: "tcp",
        hostname: listen.hostname,
        port: (listener.addr as Deno.NetAddr).port,
      };
    } else {
      address = await listenNode(
        h2,
        listen.transport === "unix" ? { path: listen.path } : {
          host: listen.hostname,
          port: listen.port,
        },
      );
      if (listen.transport === "unix") {
        await Deno.chmod(listen.path, opts.socketMode ?? DEFAULT_SOCKET_MODE);
      }
    }
  } catch (e) {
    // Nothing may outlive a failed start: the inner server would keep the process alive.
    listener?.close();
    if (h2.listening) await new Promise<void>((r) => h2.close(() => r()));
    if (tmpDir) await Deno.remove(tmpDir, { recursive: true }).catch(() => {});
    throw new Error(
      `cannot listen on ${formatSocketAddress(listen)}: ${e instanceof Error ? e.message : e}`,
      { cause: e },
    );
  }
  started = true;
  let stopping = false;
  let replacing: Promise<void> | null = null;
  const restartFailures = new BurstLog(log, "restarting the inner HTTP/2 server");
  // Until a new server listens (file descriptors may still be short), new connections wait for
  // it rather than joining the stuck one.
  const replaceInner = (stale: typeof inner) => {
    if (stale !== inner || replacing || stopping) return;
    replacing = (async () => {
      const generation = stale.generation + 1;
      const path = `${tmpDir}/h2-${generation}.sock`;
      for (;;) {
        const server = makeServer();
        try {
          await listenNode(server, { path });
        } catch (e) {
          servers.delete(server);
          restartFailures.fail(String(e));
          await Deno.remove(path).catch(() => {});
          if (stopping) return;
          await sleepUnref(200);
          continue;
        }
        inner = innerRecord(server, path, generation);
        log("the inner HTTP/2 server stopped accepting connections: replaced it");
        // The old one serves its sessions to their end, but takes no more; the connections
        // still waiting for it move to the new one.
        stale.server.close(() => servers.delete(stale.server));
        stale.retire();
        await Deno.remove(stale.path).catch(() => {});
        return;
      }
    })().finally(() => (replacing = null));
  };
  // Deno's node:net server takes connections in order; one pending with nothing taken for a
  // while means it is stuck.
  const stallCheck = setInterval(() => {
    const oldest = inner.pending[0];
    const now = performance.now();
    if (
      oldest !== undefined && now - oldest > ACCEPT_STALL_MS &&
      now - inner.lastAccept > ACCEPT_STALL_MS
    ) replaceInner(inner);
  }, ACCEPT_STALL_MS / 2);
  Deno.unrefTimer(stallCheck as unknown as number);
  let backoffTimer: ReturnType<typeof setTimeout> | undefined;
  let wakeBackoff: (() => void) | null = null;
  const acceptFailures = new BurstLog(log, "accepting connections");
  const innerFailures = new BurstLog(log, "connecting to the inner HTTP/2 server");
  const overCap = new BurstLog(log, `connection limit ${maxConnections} reached`);
  // One client connection: pumped to the inner server, closed when idle for idleMs.
  const serve = async (conn: Deno.Conn) => {
    conns.add(conn);
    let up: Deno.Conn | null = null;
    let idleTimer: ReturnType<typeof setTimeout> | undefined;
    const closeBoth = () => {
      for (const c of [conn, up]) {
        try {
          c?.close();
        } catch { /* already closed */ }
      }
    };
    const record: ClientConn = { idleSince: null, close: closeBoth };
    clients.add(record);
    const tracker = new StreamTracker();
    const arm = (open: number) => {
      clearTimeout(idleTimer);
      record.idleSince = open === 0 ? performance.now() : null;
      if (open === 0 && idleMs > 0) idleTimer = setTimeout(closeBoth, idleMs);
    };
    tracker.onChange = arm;
    arm(0); // also bounds a client that never sends anything (or never finishes TLS)
    try {
      (conn as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
      // The inner server speaks first (its SETTINGS): until it has, at most one piece is read
      // from the client (to see it leave), so when that server turns out to be stuck, the
      // connection moves to its replacement with nothing lost.
      let hello: Uint8Array | undefined;
      let clientFirst: Uint8Array | undefined;
      let clientGone = false;
      const cbuf = new Uint8Array(16 << 10);
      let clientRead: Promise<"client"> | null = null;
      const readClient = () =>
        clientRead ??= conn.read(cbuf).then(
          (n) => {
            if (n === null) clientGone = true;
            else clientFirst = cbuf.subarray(0, n);
            return "client" as const;
          },
          () => {
            clientGone = true;
            return "client" as const;
          },
        );
      while (!hello) {
        while (replacing) await replacing;
        if (stopping) return;
        const target = inner;
        try {
          up = await Deno.connect({ transport: "unix", path: target.path });
        } catch (e) {
          innerFailures.fail(String(e)); // typically out of file descriptors
          return;
        }
        conns.add(up);
        uplinks.add(up);
        // Left in `pending` until taken: the server takes its backlog in order.
        if (target.early > 0) target.early--;
        else target.pending.push(performance.now());
        const buf = new Uint8Array(4096);
        const upRead = up.read(buf).then((n) => n, () => null);
        for (;;) {
          const waits: Promise<number | null | "client" | "replaced">[] = [
            upRead,
            target.replaced,
          ];
          if (!clientFirst) waits.push(readClient());
          const r = await Promise.race(waits);
          if (clientGone) return;
          if (r === "client") continue;
          if (typeof r === "number") hello = buf.subarray(0, r);
          else if (r === null && target === inner) return; // the server hung up: it stops
          break;
        }
        if (hello) break;
        conns.delete(up);
        uplinks.delete(up);
        try {
          up.close();
        } catch { /* already closed */ }
        up = null;
      }
      // A read of the client still waiting owns its next bytes: let it finish first.
      if (clientRead) await clientRead;
      if (clientGone) return;
      await pumpGuarded(conn, up!, "client", tracker, hello, clientFirst);
    } catch (e) {
      log(`connection error: ${e}`);
    } finally {
      clearTimeout(idleTimer);
      clients.delete(record);
      for (const c of [conn, up]) {
        if (!c) continue;
        conns.delete(c);
        uplinks.delete(c);
      }
      closeBoth();
    }
  };
  if (listener) {
    // Never returns before close(): a failed accept (out of file descriptors, a connection
    // aborted before it was taken) is retried after a pause that grows while failures last.
    const accept = async (l: Deno.Listener) => {
      let pause = 0;
      for (;;) {
        let conn: Deno.Conn;
        try {
          conn = await l.accept();
        } catch (e) {
          if (stopping || e instanceof Deno.errors.BadResource) return; // listener closed
          acceptFailures.fail(String(e));
          pause = Math.min(pause ? pause * 2 : 10, 1000);
          await new Promise<void>((r) => {
            wakeBackoff = r;
            backoffTimer = setTimeout(r, pause);
          });
          wakeBackoff = null;
          if (stopping) return;
          continue;
        }
        pause = 0;
        if (clients.size >= maxConnections) {
          // Room is made as a web server does: the connection idle the longest (no open
          // stream) is closed, so idle connections cannot lock clients out. When every one is
          // busy, the new one is closed instead.
          let oldest: ClientConn | null = null;
          for (const r of clients) {
            if (r.idleSince !== null && (oldest === null || r.idleSince < oldest.idleSince!)) {
              oldest = r;
            }
          }
          if (oldest) {
            overCap.fail("closing the longest idle connections");
            clients.delete(oldest);
            oldest.close();
          } else {
            overCap.fail(`every connection is busy; closing new ones from ${formatConnAddr(conn)}`);
            try {
              conn.close();
            } catch { /* already closed */ }
            continue;
          }
        }
        const p = serve(conn);
        pumps.add(p);
        p.finally(() => pumps.delete(p));
      }
    };
    accept(listener);
  }

  let closing: Promise<void> | null = null;
  const close = (graceMs = 10_000) => {
    closing ??= (async () => {
      // 1. stop accepting; the socket file goes with the listener. Health says NOT_SERVING and
      // ends its watches, which would otherwise hold the shutdown for the whole grace.
      stopping = true;
      clearInterval(stallCheck);
      clearInterval(heapTrim);
      clearTimeout(backoffTimer);
      wakeBackoff?.();
      listener?.close();
      health?.shutdown();
      if (listen.transport === "unix") await Deno.remove(listen.path).catch(() => {});
      // 2. let calls in progress finish.
      const deadline = performance.now() + graceMs;
      if (inFlight > 0) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, graceMs);
          idle = () => {
            clearTimeout(t);
            r();
          };
        });
      }
      // A finished call's last bytes may still wait in its session's socket buffer (up to a
      // stream window's worth), and a session whose socket is half-closed (step 4) drops that
      // buffer: the client would lose the end of its read. Let every buffer reach the wire.
      while (!flushed(sessions) && performance.now() < deadline) {
        await new Promise((r) => setTimeout(r, 5));
      }
      // 3. only now: Deno's node:http2 close() cuts streams still in progress.
      const stopped = Promise.all(
        [...servers].map((srv) => new Promise<void>((r) => srv.close(() => r()))),
      );
      // 4. end each connection the way a leaving client would: half-close towards the inner
      // server, which then finishes writing and closes, and the pump delivers the rest to the
      // client (closing the client's socket at once would cut off responses still in flight).
      for (const up of uplinks) {
        try {
          await up.closeWrite();
        } catch { /* already closed */ }
      }
      await Promise.race([Promise.all(pumps), new Promise((r) => setTimeout(r, 2000))]);
      for (const c of conns) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      await Promise.all(pumps);
      if (!guard) {
        // Without the guard, sessions are the node server's own.
        for (const s of sessions) s.destroy();
      }
      await Promise.race([stopped, new Promise((r) => setTimeout(r, 1000))]);
      if (tmpDir) await Deno.remove(tmpDir, { recursive: true }).catch(() => {});
    })();
    return closing;
  };
  return {
    address,
    addressText: formatSocketAddress(address),
    get inFlight() {
      return inFlight;
    },
    close,
  };
}

/** The inner HTTP/2 server and the connections made to it that it has not taken yet. */
interface Inner {
  server: http2.Http2Server;
  path: string;
  generation: number;
  lastAccept: number;
  /** When each connection it has not taken yet was made (`performance.now()`). */
  pending: number[];
  /** Resolves (with "replaced") once another server took over. */
  replaced: Promise<"replaced">;
  /** Resolves {@linkcode Inner.replaced}. */
  retire: () => void;
  /** Connections taken before their connect() returned here (the two race). */
  early: number;
}

function innerRecord(server: http2.Http2Server, path: string, generation: number): Inner {
  let retire = () => {};
  const replaced = new Promise<"replaced">((r) => (retire = () => r("replaced")));
  const r: Inner = {
    server,
    path,
    generation,
    lastAccept: performance.now(),
    pending: [],
    early: 0,
    replaced,
    retire,
  };
  server.on("connection", () => {
    r.lastAccept = performance.now();
    if (r.pending.shift() === undefined) r.early++;
  });
  return r;
}

/** Whether every session has handed all it wrote to the operating system. */
function flushed(sessions: Iterable<http2.ServerHttp2Session>): boolean {
  for (const s of sessions) {
    if (s.destroyed) continue;
    if ((s.state.outboundQueueSize ?? 0) > 0 || (s.socket?.writableLength ?? 0) > 0) return false;
  }
  return true;
}

function sleepUnref(ms: number): Promise<void> {
  return new Promise((r) => Deno.unrefTimer(setTimeout(r, ms) as unknown as number));
}

function formatConnAddr(conn: Deno.Conn): string {
  const a = conn.remoteAddr;
  return a.transport === "tcp" || a.transport === "udp"
    ? formatSocketAddress({ transport: "tcp", hostname: a.hostname, port: a.port })
    : "a unix socket peer";
}

/**
 * Removes a leftover unix socket file (from a daemon that died) but nothing else, and refuses
 * when something still answers on it.
 */
async function removeStaleSocket(path: string): Promise<void> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.lstat(path);
  } catch {
    return; // absent
  }
  if (!st.isSocket) throw new Deno.errors.AlreadyExists(`${path} exists and is not a socket`);
  try {
    const c = await Deno.connect({ transport: "unix", path });
    c.close();
    throw new Deno.errors.AddrInUse(`${path}: another server is listening there`);
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) throw e;
  }
  await Deno.remove(path);
}

/**
 * Serves until SIGINT or SIGTERM, then stops gracefully (the socket file is removed). Resolves
 * when the daemon is closed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { closeOnSignal, serveDaemon } from "@nixcas/nixcas/server";
 * const dir = await Deno.makeTempDir();
 * const daemon = await serveDaemon({
 *   listen: `unix:${dir}/nixcas.sock`,
 *   blobs: new MemoryBlobService(),
 *   directories: new MemoryDirectoryService(),
 * });
 * const stopped = closeOnSignal(daemon);
 * Deno.kill(Deno.pid, "SIGTERM"); // as a service manager would
 * await stopped;
 * await assert.rejects(Deno.lstat(`${dir}/nixcas.sock`), Deno.errors.NotFound);
 * await Deno.remove(dir);
 * ```
 */
export function closeOnSignal(daemon: Daemon, graceMs?: number): Promise<void> {
  return new Promise((resolve) => {
    const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
    const onSignal = () => {
      for (const s of signals) Deno.removeSignalListener(s, onSignal);
      daemon.close(graceMs).then(resolve, resolve);
    };
    for (const s of signals) Deno.addSignalListener(s, onSignal);
  });
}

function listenNode(
  server: http2.Http2Server,
  where: { path: string } | { host: string; port: number },
): Promise<SocketAddress> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    const done = () => {
      server.off("error", reject);
      if ("path" in where) return resolve({ transport: "unix", path: where.path });
      const a = server.address();
      const port = typeof a === "object" && a ? a.port : where.port;
      resolve({ transport: "tcp", hostname: where.host, port });
    };
    if ("path" in where) server.listen(where.path, done);
    else server.listen(where.port, where.host, done);
  });
}
