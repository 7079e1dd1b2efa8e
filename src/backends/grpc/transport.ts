/**
 * The client side shared by the remote (`grpc+…`) services: a gRPC transport for an address,
 * and the mapping from gRPC status codes to our error classes.
 *
 * @module
 */
import * as http2 from "node:http2";
import * as net from "node:net";
import { connect as tlsConnect } from "node:tls";
import {
  Code,
  ConnectError,
  type Interceptor,
  type Transport,
} from "npm:@connectrpc/connect@2.2.0";
import { createGrpcTransport, Http2SessionManager } from "npm:@connectrpc/connect-node@2.2.0";
import {
  CorruptDataError,
  InvalidRequestError,
  NotFoundError,
  PreconditionError,
  StorageError,
  UnavailableError,
} from "../../base/errors.ts";
import { type GrpcTarget, parseGrpcUrl } from "./address.ts";
import { guardedConnection } from "./h2guard.ts";
import { readBlobCall } from "./blob_read.ts";
import { Http2Client } from "../../http2/client.ts";
import { H2_SETTINGS, widenConnectionWindow } from "./h2settings.ts";

// connect-node's session manager destroys a session with an error when a PING times out and
// may have removed its own "error" listener by the time Deno emits the event, which would then
// be an uncaught exception that ends the process. The manager has already seen the failure
// (calls fail with UNAVAILABLE), so give every session destroyed with an error a listener that
// swallows that one event.
const sessionProto =
  (http2 as unknown as { ClientHttp2Session?: { prototype: http2.Http2Session } })
    .ClientHttp2Session?.prototype;
if (sessionProto && !(sessionProto as { nixcasGuarded?: boolean }).nixcasGuarded) {
  const destroy = sessionProto.destroy;
  sessionProto.destroy = function (this: http2.Http2Session, err?: Error, code?: number) {
    if (err) this.once("error", () => {});
    return destroy.call(this, err, code);
  };
  (sessionProto as { nixcasGuarded?: boolean }).nixcasGuarded = true;
}

/**
 * Reads a response stream as Node's own Readable iterator does, but tells its end from the
 * Readable's state. Deno 2.9.6's `finished()` (under that iterator) takes `Http2Stream.closed`,
 * which turns true once the server's trailers arrived, for the Readable being closed: an
 * iteration that began after a whole answer had arrived failed with "Premature close" at its
 * end whenever the consumer paused while messages were still buffered (a slow `list` consumer,
 * a recursive Get, a Read of a blob sent in small messages).
 */
async function* readResponse(stream: http2.ClientHttp2Stream): AsyncGenerator<Uint8Array> {
  let ended = stream.readableEnded;
  let error: unknown = stream.errored ?? undefined;
  let wake: (() => void) | null = null;
  const notify = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  const onEnd = () => {
    ended = true;
    notify();
  };
  const onError = (e: unknown) => {
    error ??= e;
    notify();
  };
  // A Readable closes after its end unless it was destroyed early (reset, connection lost).
  const onClose = () => {
    if (!ended) error ??= prematureClose();
    notify();
  };
  stream.on("readable", notify);
  stream.on("end", onEnd);
  stream.on("error", onError);
  stream.on("close", onClose);
  try {
    for (;;) {
      const chunk: Uint8Array | null = stream.destroyed ? null : stream.read();
      if (chunk !== null) {
        yield chunk;
        continue;
      }
      if (error !== undefined) throw error;
      if (ended) return;
      if (stream.destroyed) throw prematureClose();
      await new Promise<void>((r) => (wake = r));
    }
  } finally {
    stream.off("readable", notify);
    stream.off("end", onEnd);
    stream.off("error", onError);
    stream.off("close", onClose);
    // As Node's iterator: a consumer that stops early (or fails) ends the stream.
    if (!ended || error !== undefined) stream.destroy();
  }
}

function prematureClose(): Error {
  return Object.assign(new Error("Premature close"), { code: "ERR_STREAM_PREMATURE_CLOSE" });
}

const widened = new WeakSet<http2.Http2Session>();

/**
 * connect-node's session manager, with every response read by {@linkcode readResponse} and
 * each session's connection window widened on its first request.
 */
class SessionManager extends Http2SessionManager {
  override async request(
    ...args: Parameters<Http2SessionManager["request"]>
  ): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(...args);
    const session = stream.session;
    if (session && !widened.has(session)) {
      widened.add(session);
      widenConnectionWindow(session);
    }
    Object.defineProperty(stream, Symbol.asyncIterator, {
      configurable: true,
      value: () => readResponse(stream),
    });
    return stream;
  }
}

/**
 * Options for {@linkcode createTransport}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { B3Digest } from "@nixcas/nixcas/castore";
 * import { createTransport, GrpcBlobService, type TransportOptions } from "@nixcas/nixcas/grpc";
 * import { serveDaemon } from "@nixcas/nixcas/server";
 * const dir = await Deno.makeTempDir();
 * const daemon = await serveDaemon({
 *   listen: `unix:${dir}/nixcas.sock`,
 *   blobs: new MemoryBlobService(),
 *   directories: new MemoryDirectoryService(),
 * });
 * // Calls notice a peer that stopped answering after 2 + 1 s of silence (default 15 + 10 s).
 * const options: TransportOptions = { pingIntervalMs: 2_000, pingTimeoutMs: 1_000 };
 * const blobs = new GrpcBlobService(createTransport(`grpc+unix://${dir}/nixcas.sock`, options));
 * assert.equal(await blobs.has(B3Digest.fromBytes(new Uint8Array(32))), false);
 * await blobs.close();
 * await daemon.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export interface TransportOptions {
  /**
   * How long a connection may stay silent while a call waits before a PING must be answered
   * (ms). A dead peer is detected after this plus {@linkcode TransportOptions.pingTimeoutMs}.
   */
  pingIntervalMs?: number;
  /** How long to wait for a PING answer before the connection counts as lost (ms). */
  pingTimeoutMs?: number;
  /**
   * Sent as `authorization: Bearer <token>` on every call. Default: the first line of the file
   * named by the address's `auth-token-file` parameter, else by `NIXCAS_AUTH_TOKEN_FILE`.
   */
  authToken?: string;
}

/** The address parameter naming a token file, the one query parameter `grpc+` addresses take. */
export const AUTH_TOKEN_FILE_PARAM = "auth-token-file";

/**
 * Reads a token file: each non-empty line is a token (surrounding white space dropped). Throws
 * an error naming the file when it cannot be read or holds no token.
 */
export function readAuthTokens(path: string): string[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    throw new InvalidRequestError(`cannot read the token file ${path}: ${(e as Error).message}`);
  }
  const tokens = text.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  if (tokens.length === 0) throw new InvalidRequestError(`token file ${path} holds no token`);
  for (const t of tokens) {
    if (/\s/.test(t)) throw new InvalidRequestError(`token file ${path}: a token has white space`);
  }
  return tokens;
}

/** The token a client sends to `address`, if any: from its parameter, else from the env. */
function clientToken(address: string | undefined): string | undefined {
  let file: string | undefined;
  if (address !== undefined) {
    try {
      file = new URL(address).searchParams.get(AUTH_TOKEN_FILE_PARAM) ?? undefined;
    } catch { /* not a URL: parseGrpcUrl says so */ }
  }
  if (!file) {
    try {
      file = Deno.env.get("NIXCAS_AUTH_TOKEN_FILE") || undefined;
    } catch {
      return undefined; // no env permission: no token
    }
  }
  if (!file) return undefined;
  try {
    return readAuthTokens(file)[0];
  } catch (e) {
    throw new InvalidRequestError(
      `${address ?? "NIXCAS_AUTH_TOKEN_FILE"}: ${(e as Error).message}`,
    );
  }
}

/**
 * A connection to a daemon, made by {@linkcode createTransport}, that clients can share: the
 * three services of one daemon then use one HTTP/2 connection. Closing it, or any client that
 * uses it, ends that connection for all of them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import {
 *   createTransport,
 *   GrpcBlobService,
 *   GrpcDirectoryService,
 *   GrpcPathInfoService,
 *   type RemoteTransport,
 * } from "@nixcas/nixcas/grpc";
 * import { serveDaemon } from "@nixcas/nixcas/server";
 * import { importStorePath } from "@nixcas/nixcas/store";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/hello.txt`, "Hello, world!\n");
 * const local = await openStore("memory://");
 * const daemon = await serveDaemon({ listen: `unix:${dir}/nixcas.sock`, ...local });
 * const transport: RemoteTransport = createTransport(`grpc+unix://${dir}/nixcas.sock`);
 * assert.equal(transport.address, `grpc+unix://${dir}/nixcas.sock`);
 * const remote = {
 *   blobs: new GrpcBlobService(transport),
 *   directories: new GrpcDirectoryService(transport),
 *   pathInfos: new GrpcPathInfoService(transport),
 * };
 * const { storePath } = await importStorePath(`${dir}/hello.txt`, remote);
 * assert.notEqual(await local.pathInfos.get(storePath.digest), null);
 * transport.close();
 * await daemon.close();
 * await local.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export interface RemoteTransport {
  /**
   * Connect's transport, for nixcas's own clients; not part of the public API, which keeps
   * Connect out of it.
   *
   * @ignore
   */
  readonly transport: Transport;
  /**
   * BlobService/Read without connect (see `blob_read.ts`): each `BlobChunk`'s data as it
   * arrives; a failed call throws a ConnectError.
   *
   * @ignore
   */
  readBlob(digest: Uint8Array, signal?: AbortSignal): AsyncGenerator<Uint8Array>;
  /** The address as given, for messages. */
  readonly address: string;
  /** Closes the connection; calls in progress fail with {@linkcode UnavailableError}. */
  close(): void;
}

/**
 * Creates a gRPC (HTTP/2) transport for a `grpc+http://`, `grpc+https://` or `grpc+unix://` URL
 * (or an already parsed target). Connections are opened lazily, as tonic's `connect_lazy`: a
 * daemon that is not there is an error of the first call, not of this one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { UnavailableError } from "@nixcas/nixcas";
 * import { B3Digest } from "@nixcas/nixcas/castore";
 * import { createTransport, GrpcBlobService } from "@nixcas/nixcas/grpc";
 * const dir = await Deno.makeTempDir();
 * const transport = createTransport(`grpc+unix://${dir}/nobody.sock`);
 * const blobs = new GrpcBlobService(transport);
 * await assert.rejects(blobs.has(B3Digest.fromBytes(new Uint8Array(32))), (e) => {
 *   assert(e instanceof UnavailableError);
 *   assert(e.message.startsWith(`grpc+unix://${dir}/nobody.sock: `), e.message);
 *   return true;
 * });
 * transport.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function createTransport(
  target: string | GrpcTarget,
  options: TransportOptions = {},
): RemoteTransport {
  const t = typeof target === "string" ? parseGrpcUrl(target) : target;
  const token = options.authToken ??
    clientToken(typeof target === "string" ? target : undefined);
  const address = typeof target === "string"
    ? target
    : t.kind === "unix"
    ? `grpc+unix://${t.path}`
    : `grpc+${t.baseUrl}`;
  const ping = {
    // Pings make a lost or frozen peer an error instead of a hang.
    pingIntervalMs: options.pingIntervalMs ?? 15_000,
    pingTimeoutMs: options.pingTimeoutMs ?? 10_000,
  };
  const common = {
    // Blob data does not compress; gzip would cost far more CPU than it saves on loopback.
    acceptCompression: [],
    // Blob chunks are ≤ 1 MiB, directories small; 64 MiB leaves room for big PathInfos.
    readMaxBytes: 64 << 20,
    writeMaxBytes: 64 << 20,
  };
  // Our own session manager, so close() can end the connection. Every connection goes through
  // the GOAWAY guard (h2guard.ts): a server that stops must not crash this process.
  let sessionManager: SessionManager;
  let baseUrl: string;
  // Blob reads go through our own HTTP/2 client, on a connection of their own.
  let reads: Http2Client;
  if (t.kind === "unix") {
    const path = t.path;
    // Only used for :authority and the request path; the socket comes from createConnection.
    baseUrl = "http://localhost";
    sessionManager = new SessionManager(baseUrl, ping, {
      settings: H2_SETTINGS,
      createConnection: () =>
        guardedConnection(
          () => Deno.connect({ transport: "unix", path }),
          () => net.connect(path),
        ),
    });
    reads = new Http2Client({
      connect: () => Deno.connect({ transport: "unix", path }),
      authority: "localhost",
      scheme: "http",
      ...ping,
    });
  } else {
    baseUrl = t.baseUrl;
    const url = new URL(baseUrl);
    const hostname = url.hostname.replace(/^\[|\]$/g, "");
    const tls = url.protocol === "https:";
    const port = Number(url.port || (tls ? 443 : 80));
    const ca = tls ? caBundle() : undefined;
    const upstream = async (): Promise<Deno.Conn> => {
      const tcp = await Deno.connect({ hostname, port });
      // Small frames (WINDOW_UPDATE, PING, headers) must not wait for Nagle's algorithm.
      tcp.setNoDelay(true);
      if (tls) {
        const c = await Deno.startTls(tcp, {
          hostname,
          caCerts: ca ? [ca] : undefined,
          alpnProtocols: ["h2"],
        });
        try {
          // Now, so that a certificate the server is refused for is the error calls report.
          const { alpnProtocol } = await c.handshake();
          if (alpnProtocol !== "h2") {
            throw new Error(`the server does not speak HTTP/2 over TLS (ALPN ${alpnProtocol})`);
          }
        } catch (e) {
          c.close();
          throw e;
        }
        return c;
      }
      return tcp;
    };
    sessionManager = new SessionManager(baseUrl, ping, {
      settings: H2_SETTINGS,
      createConnection: () =>
        guardedConnection(
          upstream,
          () =>
            tls
              ? tlsConnect({ host: hostname, port, ca, ALPNProtocols: ["h2"] })
              : net.connect(port, hostname),
        ),
    });
    reads = new Http2Client({
      connect: upstream,
      authority: url.host,
      scheme: tls ? "https" : "http",
      ...ping,
    });
  }
  const interceptors: Interceptor[] = [];
  if (token !== undefined) {
    const value = `Bearer ${token}`;
    interceptors.push((next) => (req) => {
      req.header.set("authorization", value);
      return next(req);
    });
  }
  const readHeaders: Record<string, string> = token === undefined
    ? {}
    : { authorization: `Bearer ${token}` };
  return {
    address,
    transport: createGrpcTransport({ ...common, baseUrl, sessionManager, interceptors }),
    readBlob: (digest, signal) =>
      readBlobCall(digest, {
        client: reads,
        headers: readHeaders,
        readMaxBytes: common.readMaxBytes,
        signal,
      }),
    close: () => {
      sessionManager.abort();
      reads.close();
    },
  };
}

/**
 * Turns an error from a gRPC call into one of our error classes, keeping the server's message:
 * INVALID_ARGUMENT → {@linkcode InvalidRequestError}, NOT_FOUND → {@linkcode NotFoundError},
 * UNAVAILABLE (and a lost connection) → {@linkcode UnavailableError}, anything else →
 * {@linkcode StorageError}. Errors that are already ours pass through.
 */
export function fromGrpcError(e: unknown, address: string): Error {
  if (
    e instanceof InvalidRequestError || e instanceof NotFoundError ||
    e instanceof StorageError || e instanceof UnavailableError || e instanceof PreconditionError
  ) return e;
  const ce = ConnectError.from(e);
  const msg = `${address}: ${ce.rawMessage}`;
  switch (ce.code) {
    case Code.InvalidArgument:
      return new InvalidRequestError(msg, { cause: e });
    case Code.NotFound:
      return new NotFoundError(msg, { cause: e });
    case Code.FailedPrecondition:
      return new PreconditionError(msg, { cause: e });
    case Code.DataLoss:
      // The server found corrupt data; its message names the digest.
      return new CorruptDataError(/b3:[A-Za-z0-9+/=]+/.exec(msg)?.[0] ?? "", msg, { cause: e });
    case Code.Unavailable:
    case Code.DeadlineExceeded:
    case Code.Aborted:
      return new UnavailableError(msg, { cause: e });
    case Code.Canceled:
    case Code.Unknown:
    case Code.Internal:
      // A reset or refused connection surfaces as these from node:http2.
      if (isConnectionLoss(ce)) return new UnavailableError(msg, { cause: e });
      return new StorageError(msg, { cause: e });
    default:
      return new StorageError(msg, { cause: e });
  }
}

function isConnectionLoss(e: ConnectError): boolean {
  const text = `${e.rawMessage} ${String((e.cause as Error | undefined)?.message ?? "")}`;
  return /ECONNREFUSED|ENOENT|ECONNRESET|EPIPE|socket hang up|GOAWAY|session|closed|ERR_HTTP2/i
    .test(text);
}

/**
 * The CA certificates to trust for `grpc+https://`, when set: `NIX_SSL_CERT_FILE` or
 * `SSL_CERT_FILE` name a PEM bundle (as for Nix and OpenSSL tools); otherwise the built-in roots.
 */
function caBundle(): string | undefined {
  let file: string | undefined;
  try {
    file = Deno.env.get("NIX_SSL_CERT_FILE") ?? Deno.env.get("SSL_CERT_FILE");
  } catch {
    return undefined; // no env permission: built-in roots
  }
  if (!file) return undefined;
  try {
    return Deno.readTextFileSync(file);
  } catch (e) {
    throw new UnavailableError(`cannot read the CA bundle ${file}: ${(e as Error).message}`);
  }
}
