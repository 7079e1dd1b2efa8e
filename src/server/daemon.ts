/**
 * The gRPC daemon: BlobService, DirectoryService and PathInfoService (plus server reflection)
 * over HTTP/2 cleartext on TCP or a unix socket, behind the GOAWAY guard of `h2guard.ts`.
 *
 * @module
 */
import * as http2 from "node:http2";
import type { DescService } from "npm:@bufbuild/protobuf@2.17.0";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createConnectRouter,
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
import { blobServiceImpl } from "./blob.ts";
import { undecodableAsInvalidArgument } from "./errors.ts";
import { directoryServiceImpl } from "./directory.ts";
import { pathInfoServiceImpl } from "./path_info.ts";
import { registerReflection } from "./reflection.ts";
import { pumpGuarded } from "../backends/grpc/h2guard.ts";

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
): (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void {
  const router = createConnectRouter({
    grpc: true,
    grpcWeb: false,
    connect: false,
    // connect gzips responses whenever a client offers it (grpcio does): 10x slower reads.
    acceptCompression: [],
    readMaxBytes: 64 << 20,
    writeMaxBytes: 64 << 20,
  });
  daemonRoutes(opts)(router);
  const paths = new Map(router.handlers.map((h) => [h.requestPath, h]));
  return (req, res) => {
    const h = paths.get((req.url ?? "").split("?", 1)[0]);
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

/** Connect routes for the three services (and reflection) over the given backends. */
export function daemonRoutes(opts: DaemonOptions): (router: ConnectRouter) => void {
  return (router) => {
    const described: DescService[] = [BlobServiceDesc, DirectoryServiceDesc];
    router.service(BlobServiceDesc, blobServiceImpl(opts.blobs));
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
    if (opts.reflection ?? true) registerReflection(router, described);
  };
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
  const handler = requestHandler(opts, log);

  let inFlight = 0;
  let idle: (() => void) | null = null;
  const h2 = http2.createServer({}, (req, res) => {
    inFlight++;
    res.once("close", () => {
      inFlight--;
      if (inFlight === 0 && idle) idle();
    });
    // Deno's http2 client sends an IPv6 :authority without brackets, which makes connect-node's
    // `new URL()` throw: the authority plays no role here, so normalise anything odd.
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
  // A failure to listen is thrown by the start, not logged as well.
  let started = false;
  h2.on("error", (e) => started && log(`HTTP/2 server error: ${e}`));
  h2.on("sessionError", (e) => log(`HTTP/2 session error: ${e}`));
  h2.on("session", (s) => s.on("error", () => {/* already reported as sessionError */}));

  const guard = opts.guard ?? true;
  let tmpDir: string | null = null;
  let listener: Deno.Listener | null = null;
  const conns = new Set<Deno.Conn>();
  const uplinks = new Set<Deno.Conn>(); // our side of each connection to the inner server
  const pumps = new Set<Promise<void>>();
  let address: SocketAddress;
  let inner = "";

  try {
    if (listen.transport === "unix") await removeStaleSocket(listen.path);
    if (guard) {
      tmpDir = await Deno.makeTempDir({ prefix: "nixcas-h2-" });
      inner = `${tmpDir}/h2.sock`;
      await listenNode(h2, { path: inner });
      listener = listen.transport === "unix"
        ? Deno.listen({ transport: "unix", path: listen.path })
        : Deno.listen({ transport: "tcp", hostname: listen.hostname, port: listen.port });
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
  if (listener) {
    const accept = async (l: Deno.Listener) => {
      for (;;) {
        let conn: Deno.Conn;
        try {
          conn = await l.accept();
        } catch {
          return; // listener closed
        }
        const p = (async () => {
          conns.add(conn);
          let up: Deno.Conn | null = null;
          try {
            if (conn.remoteAddr.transport === "tcp") (conn as Deno.TcpConn).setNoDelay(true);
            up = await Deno.connect({ transport: "unix", path: inner });
            conns.add(up);
            uplinks.add(up);
            await pumpGuarded(conn, up, "client");
          } catch (e) {
            log(`connection error: ${e}`);
          } finally {
            for (const c of [conn, up]) {
              if (!c) continue;
              conns.delete(c);
              uplinks.delete(c);
              try {
                c.close();
              } catch { /* already closed */ }
            }
          }
        })();
        pumps.add(p);
        p.finally(() => pumps.delete(p));
      }
    };
    accept(listener);
  }

  let closing: Promise<void> | null = null;
  const close = (graceMs = 10_000) => {
    closing ??= (async () => {
      // 1. stop accepting; the socket file goes with the listener.
      listener?.close();
      if (listen.transport === "unix") await Deno.remove(listen.path).catch(() => {});
      // 2. let calls in progress finish.
      if (inFlight > 0) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, graceMs);
          idle = () => {
            clearTimeout(t);
            r();
          };
        });
      }
      // Only now: Deno's node:http2 close() cuts streams still in progress.
      const stopped = new Promise<void>((r) => h2.close(() => r()));
      // 3. end each connection the way a leaving client would: half-close towards the inner
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
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });

  return {
    address,
    addressText: formatSocketAddress(address),
    get inFlight() {
      return inFlight;
    },
    close,
  };
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
