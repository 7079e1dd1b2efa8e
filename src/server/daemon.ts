/**
 * The gRPC daemon: BlobService, DirectoryService and PathInfoService (plus server reflection
 * and health) over HTTP/2, cleartext or TLS, on TCP or a unix socket, on our own HTTP/2 server
 * (`src/http2/server.ts`) with connect-es's gRPC protocol over its universal handlers. It keeps
 * serving when file descriptors run out, caps its connections, closes idle ones, and can require
 * a bearer token and refuse writes.
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { DescService } from "npm:@bufbuild/protobuf@2.17.0";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createConnectRouter,
  type HandlerContext,
} from "npm:@connectrpc/connect@2.2.0";
import type {
  UniversalHandler,
  UniversalServerResponse,
} from "npm:@connectrpc/connect@2.2.0/protocol";
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
import { READ_PATH } from "../backends/grpc/blob_calls.ts";
import { undecodableAsInvalidArgument } from "./errors.ts";
import { directoryServiceImpl } from "./directory.ts";
import { pathInfoServiceImpl } from "./path_info.ts";
import { registerReflection } from "./reflection.ts";
import { HealthServiceDesc, HealthState, registerHealth } from "./health.ts";
import { Http2ServerConnection, type ServerStream } from "../http2/server.ts";
import type { HeaderField } from "../http2/hpack.ts";
import { ErrorCode } from "../http2/frames.ts";
import { trimHeap } from "../sys/libc.ts";

/** Most of {@linkcode DaemonOptions.maxConnections}' default. */
export const DEFAULT_MAX_CONNECTIONS = 1024;

/**
 * The default connection cap: 1024, or fewer when the file descriptor limit cannot hold that
 * many (each connection takes one; 64 are kept for the store, listeners and the runtime). So the
 * cap, not the descriptors, runs out first, and new clients find room.
 */
export function defaultMaxConnections(): number {
  let soft = Infinity;
  try {
    const m = /^Max open files\s+(\d+)/m.exec(Deno.readTextFileSync("/proc/self/limits"));
    if (m) soft = Number(m[1]);
  } catch { /* not Linux, or no read permission: assume plenty */ }
  return Math.max(1, Math.min(DEFAULT_MAX_CONNECTIONS, Math.floor(soft - 64)));
}

/** HTTP/2 streams one connection may have open at once (more are refused; clients wait). */
const MAX_STREAMS_PER_CONNECTION = 256;

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
   * itself when all are busy.
   */
  maxConnections?: number;
  /** A connection with no open stream for this long is closed (default five minutes; 0: never). */
  idleTimeoutMs?: number;
  /** Permissions of a unix socket file (default 0o660). */
  socketMode?: number;
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
 * The HTTP/2 stream handler: connect's gRPC protocol over our routes, Read without connect. A
 * call the client abandoned (cancel, disconnect) is not logged as a failure; other failures go
 * to `log`.
 */
function requestHandler(
  opts: DaemonOptions,
  log: (m: string) => void,
  health: HealthState | null,
): (stream: ServerStream) => Promise<void> {
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
  const paths = new Map<string, UniversalHandler>(router.handlers.map((h) => [h.requestPath, h]));
  const gate = accessGate(opts);
  const readGate = gate &&
    ((headers: Headers) =>
      gate({
        service: BlobServiceDesc,
        method: BlobServiceDesc.method.read,
        requestHeader: headers,
      } as unknown as HandlerContext));
  return async (stream) => {
    const path = stream.path.split("?", 1)[0];
    if (path === READ_PATH) {
      // The call that carries the bytes, without connect (backends/grpc/blob_calls.ts).
      try {
        await serveBlobRead(opts.blobs, reading, stream, readGate);
      } catch (e) {
        if (!stream.signal.aborted) log(`gRPC ${READ_PATH} failed: ${e}`);
        stream.reset(ErrorCode.INTERNAL_ERROR);
      }
      return;
    }
    const h = paths.get(path);
    if (!h) {
      // grpc clients read HTTP 404 as UNIMPLEMENTED.
      stream.respond(404, [], true);
      return;
    }
    let header: Headers;
    try {
      header = new Headers(stream.headers);
    } catch {
      stream.respond(400, [], true); // a header value no Headers object takes
      return;
    }
    try {
      const uRes: UniversalServerResponse = undecodableAsInvalidArgument(
        await h({
          httpVersion: "2.0",
          method: stream.method,
          url: `http://${stream.authority || "localhost"}${stream.path}`,
          header,
          body: stream.body(),
          signal: stream.signal,
        }),
        h.method.input.typeName,
      );
      stream.respond(uRes.status, fieldsOf(uRes.header));
      if (uRes.body) {
        for await (const chunk of uRes.body) await stream.write(chunk);
      }
      stream.end(fieldsOf(uRes.trailer));
    } catch (reason) {
      const code = ConnectError.from(reason).code;
      stream.reset(ErrorCode.INTERNAL_ERROR);
      if (code === Code.Aborted || code === Code.Canceled || stream.signal.aborted) return;
      log(`gRPC ${h.service.typeName}/${h.method.name} failed: ${reason}`);
    }
  };
}

function fieldsOf(h: Headers | undefined): HeaderField[] {
  const out: HeaderField[] = [];
  h?.forEach((v, k) => out.push([k, v]));
  return out;
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
  /** Closes it once its calls have ended (GOAWAY). */
  shutdown: () => void;
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
  if (opts.tls && listen.transport !== "tcp") {
    throw new Error(`cannot listen on ${formatSocketAddress(listen)}: TLS needs a TCP address`);
  }
  const maxConnections = opts.maxConnections ?? defaultMaxConnections();
  const idleMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;

  let inFlight = 0;
  let idle: (() => void) | null = null;
  // After a burst of calls, the C heap keeps what it freed and V8 frees its buffers some seconds
  // later: while idle, give it back to the system a few times.
  let trimsLeft = 0;
  const heapTrim = opts.trimHeap
    ? setInterval(() => {
      if (inFlight > 0 || trimsLeft === 0) return;
      trimsLeft--;
      trimHeap();
    }, HEAP_TRIM_MS)
    : undefined;
  if (heapTrim !== undefined) Deno.unrefTimer(heapTrim as unknown as number);
  const onStream = (stream: ServerStream) => {
    inFlight++;
    trimsLeft = HEAP_TRIMS;
    handler(stream).catch((e) => log(`gRPC handler error: ${(e as Error)?.stack ?? e}`)).finally(
      () => {
        inFlight--;
        if (inFlight === 0 && idle) idle();
      },
    );
  };

  let listener: Deno.Listener;
  let address: SocketAddress;
  try {
    if (listen.transport === "unix") {
      await removeStaleSocket(listen.path);
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
  } catch (e) {
    throw new Error(
      `cannot listen on ${formatSocketAddress(listen)}: ${e instanceof Error ? e.message : e}`,
      { cause: e },
    );
  }
  let stopping = false;
  // Client connections being served, with since when each has had no open stream.
  const clients = new Set<ClientConn>();
  const serving = new Set<Promise<void>>();
  let backoffTimer: ReturnType<typeof setTimeout> | undefined;
  let wakeBackoff: (() => void) | null = null;
  const acceptFailures = new BurstLog(log, "accepting connections");
  const overCap = new BurstLog(log, `connection limit ${maxConnections} reached`);
  // One client connection: served until either side ends it, closed when idle for idleMs.
  const serve = async (conn: Deno.Conn) => {
    let idleTimer: ReturnType<typeof setTimeout> | undefined;
    let h2: Http2ServerConnection | null = null;
    const closeNow = () => {
      if (h2) h2.close();
      else {
        try {
          conn.close();
        } catch { /* already closed */ }
      }
    };
    const record: ClientConn = {
      idleSince: performance.now(),
      close: closeNow,
      shutdown: () => (h2 ? h2.shutdown() : closeNow()),
    };
    clients.add(record);
    const arm = (open: number) => {
      clearTimeout(idleTimer);
      record.idleSince = open === 0 ? performance.now() : null;
      // Also bounds a client that never sends anything (or never finishes TLS).
      if (open === 0 && idleMs > 0) idleTimer = setTimeout(closeNow, idleMs);
    };
    arm(0);
    try {
      h2 = new Http2ServerConnection(conn, onStream, {
        maxConcurrentStreams: MAX_STREAMS_PER_CONNECTION,
        onStreams: arm,
      });
      if (stopping) h2.shutdown();
      await h2.done;
    } catch (e) {
      log(`connection error: ${e}`);
    } finally {
      clearTimeout(idleTimer);
      clients.delete(record);
      closeNow();
    }
  };
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
        // Room is made as a web server does: the connection idle the longest (no open stream)
        // is closed, so idle connections cannot lock clients out. When every one is busy, the
        // new one is closed instead.
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
      serving.add(p);
      p.finally(() => serving.delete(p));
    }
  };
  accept(listener);

  let closing: Promise<void> | null = null;
  const close = (graceMs = 10_000) => {
    closing ??= (async () => {
      // 1. stop accepting; the socket file goes with the listener. Health says NOT_SERVING and
      // ends its watches, which would otherwise hold the shutdown for the whole grace.
      stopping = true;
      clearInterval(heapTrim);
      clearTimeout(backoffTimer);
      wakeBackoff?.();
      try {
        listener.close();
      } catch { /* already closed */ }
      health?.shutdown();
      if (listen.transport === "unix") await Deno.remove(listen.path).catch(() => {});
      // 2. GOAWAY on every connection: calls in progress finish, no new ones start; each
      // connection closes once its calls have ended and their bytes are sent.
      for (const c of clients) c.shutdown();
      if (inFlight > 0) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, graceMs);
          idle = () => {
            clearTimeout(t);
            r();
          };
        });
      }
      await Promise.race([Promise.all(serving), new Promise((r) => setTimeout(r, 2000))]);
      // 3. whatever is left (calls past the grace) is cut.
      for (const c of clients) c.close();
      await Promise.all(serving);
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
