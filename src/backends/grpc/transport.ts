/**
 * The client side shared by the remote (`grpc+…`) services: a gRPC transport for an address,
 * and the mapping from gRPC status codes to our error classes.
 *
 * @module
 */
import {
  Code,
  ConnectError,
  type Interceptor,
  type Transport,
} from "npm:@connectrpc/connect@2.2.0";
import { createTransport as createGrpcTransport } from "npm:@connectrpc/connect@2.2.0/protocol-grpc";
import {
  CorruptDataError,
  InvalidRequestError,
  NotFoundError,
  PreconditionError,
  StorageError,
  UnavailableError,
} from "../../base/errors.ts";
import { type GrpcTarget, parseGrpcUrl } from "./address.ts";
import { readAuthTokens } from "./auth_tokens.ts";
import { putBlobCall, type PutCall, readBlobCall } from "./blob_calls.ts";
import { universalClient } from "./http_client.ts";
import { Http2Client } from "../../http2/client.ts";

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
   * BlobService/Read without connect (see `blob_calls.ts`): each `BlobChunk`'s data as it
   * arrives; a failed call throws a ConnectError.
   *
   * @ignore
   */
  readBlob(digest: Uint8Array, signal?: AbortSignal): AsyncGenerator<Uint8Array>;
  /**
   * BlobService/Put without connect: chunks sent without a copy as they are written.
   *
   * @ignore
   */
  putBlob(): Promise<PutCall>;
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
  // One HTTP/2 connection of our own (src/http2/) carries every call.
  let client: Http2Client;
  let baseUrl: string;
  if (t.kind === "unix") {
    const path = t.path;
    // Only used for :authority and the request path; the socket is the unix one.
    baseUrl = "http://localhost";
    client = new Http2Client({
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
    const connect = async (): Promise<Deno.Conn> => {
      const tcp = await Deno.connect({ hostname, port });
      // Small frames (WINDOW_UPDATE, PING, headers) must not wait for Nagle's algorithm.
      tcp.setNoDelay(true);
      if (!tls) return tcp;
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
    };
    client = new Http2Client({
      connect,
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
  const authHeaders: Record<string, string> = token === undefined
    ? {}
    : { authorization: `Bearer ${token}` };
  return {
    address,
    transport: createGrpcTransport({
      ...common,
      httpClient: universalClient(client),
      baseUrl,
      interceptors,
      useBinaryFormat: true,
      sendCompression: null,
      compressMinBytes: 1024,
    }),
    readBlob: (digest, signal) =>
      readBlobCall(digest, {
        client,
        headers: authHeaders,
        readMaxBytes: common.readMaxBytes,
        signal,
      }),
    putBlob: () => putBlobCall({ client, headers: authHeaders, readMaxBytes: common.readMaxBytes }),
    close: () => client.close(),
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
      // A reset or refused connection can surface as these.
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
