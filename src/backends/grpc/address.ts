/**
 * Addresses for the gRPC daemon and the remote (`grpc+…`) services: the daemon's listen address
 * (`host:port`, `[v6]:port`, `unix:/abs/path`) and the service URLs
 * (`grpc+http://host:port`, `grpc+https://host:port`, `grpc+unix:///abs/socket`).
 *
 * @module
 */
import { clip, InvalidRequestError } from "../../base/errors.ts";

/** The daemon's default listen address: IPv6 loopback, as tvix-store. */
export const DEFAULT_LISTEN_ADDRESS = "[::1]:8000";

/**
 * Where a server listens or a client connects.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import { serveDaemon, type SocketAddress } from "@nixcas/nixcas/server";
 * const local = await openStore("memory://");
 * const listen: SocketAddress = { transport: "tcp", hostname: "127.0.0.1", port: 0 };
 * const daemon = await serveDaemon({ listen, ...local });
 * // The daemon's address has the port it got:
 * assert(daemon.address.transport === "tcp" && daemon.address.port > 0);
 * assert.equal(daemon.addressText, `127.0.0.1:${daemon.address.port}`);
 * await daemon.close();
 * await local.close();
 * ```
 */
export type SocketAddress =
  | { transport: "tcp"; hostname: string; port: number }
  | { transport: "unix"; path: string };

/**
 * Parses a listen address: `host:port`, `[v6]:port`, or `unix:/abs/path`. Throws
 * {@linkcode InvalidRequestError} naming the address when it is none of these.
 */
export function parseListenAddress(text: string): SocketAddress {
  if (text.startsWith("unix:")) {
    const path = text.slice(5);
    if (!path.startsWith("/")) {
      throw new InvalidRequestError(`unix listen address needs an absolute path: ${clip(text)}`);
    }
    return { transport: "unix", path };
  }
  const m = /^(?:\[([0-9A-Fa-f:.]+(?:%[\w.-]+)?)\]|([^\[\]:\s]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new InvalidRequestError(
      `invalid listen address ${
        JSON.stringify(clip(text))
      }: want host:port, [v6]:port or unix:/path`,
    );
  }
  return { transport: "tcp", hostname: m[1] ?? m[2], port };
}

/** Formats an address the way {@linkcode parseListenAddress} reads it. */
export function formatSocketAddress(addr: SocketAddress): string {
  if (addr.transport === "unix") return `unix:${addr.path}`;
  return addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
}

/**
 * Where a remote service lives, parsed from a `grpc+…` URL.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTransport, type GrpcTarget } from "@nixcas/nixcas/grpc";
 * const targets: GrpcTarget[] = [
 *   { kind: "unix", path: "/run/nixcas/nixcas.sock" },
 *   { kind: "http", baseUrl: "http://[::1]:8000" },
 * ];
 * // Nothing connects until the first call:
 * const transports = targets.map((t) => createTransport(t));
 * assert.deepEqual(transports.map((t) => t.address), [
 *   "grpc+unix:///run/nixcas/nixcas.sock",
 *   "grpc+http://[::1]:8000",
 * ]);
 * for (const t of transports) t.close();
 * ```
 */
export type GrpcTarget =
  | { kind: "http" | "https"; baseUrl: string }
  | { kind: "unix"; path: string };

/**
 * Parses `grpc+http://host:port`, `grpc+https://host:port` or `grpc+unix:///abs/socket`. A path
 * is not allowed on TCP URLs and a host is not allowed on unix URLs (as tvix).
 */
export function parseGrpcUrl(text: string): GrpcTarget {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InvalidRequestError(`invalid gRPC service address ${JSON.stringify(clip(text))}`);
  }
  switch (url.protocol) {
    case "grpc+unix:": {
      if (url.host !== "") {
        throw new InvalidRequestError(`host may not be set in ${JSON.stringify(clip(text))}`);
      }
      const path = decodeURIComponent(url.pathname);
      if (!path.startsWith("/") || path === "/") {
        throw new InvalidRequestError(`missing socket path in ${JSON.stringify(clip(text))}`);
      }
      return { kind: "unix", path };
    }
    case "grpc+http:":
    case "grpc+https:": {
      if (url.pathname !== "" && url.pathname !== "/") {
        throw new InvalidRequestError(`path may not be set in ${JSON.stringify(clip(text))}`);
      }
      if (url.hostname === "") {
        throw new InvalidRequestError(`missing host in ${JSON.stringify(clip(text))}`);
      }
      const kind = url.protocol === "grpc+http:" ? "http" : "https";
      return { kind, baseUrl: `${kind}://${url.host}` };
    }
    default:
      throw new InvalidRequestError(
        `unsupported scheme ${JSON.stringify(clip(url.protocol))} in ${JSON.stringify(clip(text))}`,
      );
  }
}
