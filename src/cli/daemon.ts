/**
 * `nixcas daemon`: serves the three services over gRPC until SIGINT/SIGTERM.
 *
 * @module
 */
import type { CommandSpec } from "./args.ts";
import {
  DEFAULT_MAX_DIRECTORIES_PER_PUT,
  DEFAULT_MAX_DIRECTORY_BYTES_PER_PUT,
} from "../castore/closure.ts";
import { DEFAULT_LISTEN_ADDRESS, parseListenAddress } from "../backends/grpc/address.ts";
import { readAuthTokens } from "../backends/grpc/auth_tokens.ts";
import {
  action,
  CliError,
  loggerFor,
  openServices,
  parseIntAtLeast,
  SERVICE_ADDR_OPTIONS,
  type ServiceAddrOptions,
} from "./common.ts";
import { enableNativeBlake3 } from "../hash/blake3_native.ts";

/** Parses `--grace`: a number of seconds, zero or more (fractions allowed). */
function parseSeconds(value: string): number {
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || !Number.isFinite(n)) {
    throw new Error("not a number of seconds");
  }
  return n;
}

/** Parses `--socket-mode`: octal permission bits such as 660 or 0660. */
function parseMode(value: string): number {
  if (!/^0?[0-7]{3}$/.test(value)) throw new Error("not an octal mode such as 0660");
  return parseInt(value, 8);
}

/** Options of `daemon`. */
export interface DaemonOptions extends ServiceAddrOptions {
  /** `-l, --listen-address <addr>`. */
  listenAddress: string;
  /** `--grace <seconds>`: how long calls in progress may take at shutdown. */
  grace: number;
  /** `--max-directories-per-put <n>`: most directories in one Directory Put stream. */
  maxDirectoriesPerPut: number;
  /** `--max-directory-bytes-per-put <bytes>`: most bytes in one Directory Put stream. */
  maxDirectoryBytesPerPut: number;
  /** `--max-connections <n>`. */
  maxConnections?: number;
  /** `--idle-timeout <seconds>` (0: never). */
  idleTimeout: number;
  /** `--auth-token-file <file>`. */
  authTokenFile?: string;
  /** `--public-read`. */
  publicRead?: boolean;
  /** `--read-only`. */
  readOnly?: boolean;
  /** `--tls-cert <file>`. */
  tlsCert?: string;
  /** `--tls-key <file>`. */
  tlsKey?: string;
  /** `--socket-mode <octal>`: parsed when given, the default "0660" as written. */
  socketMode: number | string;
}

async function readPem(flag: string, path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new CliError(`${flag} ${path}: ${(e as Error).message}`, 2);
  }
}

/** `daemon`. */
export const daemonCommand: CommandSpec<DaemonOptions> = {
  name: "daemon",
  description:
    "Serve BlobService, DirectoryService and PathInfoService (tvix wire protocol, gRPC over " +
    "HTTP/2, with server reflection and grpc.health.v1.Health) until SIGINT or SIGTERM, which stop it " +
    "gracefully: calls in progress finish and the unix socket file is removed. A socket file " +
    "left by a daemon that died is replaced; an address in use is refused (exit 1), a " +
    "malformed one too (exit 2). Clients send the token of --auth-token-file from the file " +
    "named by NIXCAS_AUTH_TOKEN_FILE or by the address, e.g. " +
    "grpc+https://host:port?auth-token-file=/path (also grpc+http://, grpc+unix://); " +
    "grpc+https:// clients trust the CA bundle in NIX_SSL_CERT_FILE or SSL_CERT_FILE.",
  options: [
    {
      flags: "-l, --listen-address <addr>",
      description:
        "host:port, [v6]:port or unix:/abs/path (listening beyond loopback is your choice)",
      default: DEFAULT_LISTEN_ADDRESS,
    },
    {
      flags: "--grace <seconds>",
      description: "how long calls in progress may take at shutdown",
      parse: parseSeconds,
      default: 10,
    },
    {
      flags: "--max-directories-per-put <n>",
      description: "refuse a Directory Put stream of more directories (it is buffered until " +
        "the root arrives)",
      parse: parseIntAtLeast(1),
      default: DEFAULT_MAX_DIRECTORIES_PER_PUT,
    },
    {
      flags: "--max-directory-bytes-per-put <bytes>",
      description: "refuse a Directory Put stream of more bytes of directories",
      parse: parseIntAtLeast(1),
      default: DEFAULT_MAX_DIRECTORY_BYTES_PER_PUT,
    },
    {
      flags: "--max-connections <n>",
      description: "client connections served at once (default: 1024, fewer when the open " +
        "file limit cannot hold them); at the cap a new one closes the longest idle one, or is " +
        "closed when all are busy",
      parse: parseIntAtLeast(1),
    },
    {
      flags: "--idle-timeout <seconds>",
      description: "close a connection with no call in progress after this long (0: never)",
      parse: parseSeconds,
      default: 300,
    },
    {
      flags: "--auth-token-file <file>",
      description: "require authorization: Bearer <token> on every call (UNAUTHENTICATED " +
        "otherwise); the file holds the accepted tokens, one per line",
    },
    {
      flags: "--public-read",
      description: "with --auth-token-file: reads need no token, writes still do",
    },
    {
      flags: "--read-only",
      description: "refuse every write (Blob, Directory and PathInfo Put: PERMISSION_DENIED)",
    },
    {
      flags: "--tls-cert <file>",
      description: "serve TLS (grpc+https://) with this PEM certificate chain; needs --tls-key",
    },
    { flags: "--tls-key <file>", description: "the PEM private key of --tls-cert" },
    {
      flags: "--socket-mode <octal>",
      description: "permissions of a unix socket file",
      parse: parseMode,
      default: "0660",
    },
    ...SERVICE_ADDR_OPTIONS,
  ],
  run: action(async (inv) => {
    const opts = inv.options;
    const log = loggerFor(inv);
    let listen;
    try {
      listen = parseListenAddress(opts.listenAddress);
    } catch (e) {
      throw new CliError((e as Error).message, 2);
    }
    if (!opts.tlsCert !== !opts.tlsKey) {
      throw new CliError("--tls-cert and --tls-key go together", 2);
    }
    if (opts.tlsCert && listen.transport !== "tcp") {
      throw new CliError(`TLS needs a TCP listen address, not ${opts.listenAddress}`, 2);
    }
    if (opts.publicRead && !opts.authTokenFile) {
      throw new CliError("--public-read needs --auth-token-file", 2);
    }
    const tls = opts.tlsCert && opts.tlsKey
      ? {
        cert: await readPem("--tls-cert", opts.tlsCert),
        key: await readPem("--tls-key", opts.tlsKey),
      }
      : undefined;
    let authTokens: string[] | undefined;
    if (opts.authTokenFile) {
      try {
        authTokens = readAuthTokens(opts.authTokenFile);
      } catch (e) {
        throw new CliError(`--auth-token-file: ${(e as Error).message}`, 2);
      }
    }
    // Loaded here, not at startup: other commands never need the server.
    const { closeOnSignal, serveDaemon } = await import("../server/daemon.ts");
    // A long-running read server: the SQLite file is memory-mapped.
    const services = await openServices(opts, { readServer: true });
    try {
      // A server checks every chunk it hands out: native BLAKE3 hashes ≈2.5x faster. Loaded
      // (≈20–70 ms) before the first request, so that the first reads get it too.
      await enableNativeBlake3();
      const daemon = await serveDaemon({
        trimHeap: true,
        listen,
        blobs: services.blobs,
        directories: services.directories,
        pathInfos: services.pathInfos,
        directoryPutLimits: {
          maxDirectories: opts.maxDirectoriesPerPut,
          maxBytes: opts.maxDirectoryBytesPerPut,
        },
        log: (m) => log.warn(m),
        tls,
        authTokens,
        publicRead: opts.publicRead,
        readOnly: opts.readOnly,
        maxConnections: opts.maxConnections,
        idleTimeoutMs: opts.idleTimeout * 1000,
        socketMode: typeof opts.socketMode === "number"
          ? opts.socketMode
          : parseMode(opts.socketMode),
      });
      log.info(`listening ${daemon.addressText}`, { address: daemon.addressText });
      await closeOnSignal(daemon, opts.grace * 1000);
      log.info("stopped");
    } finally {
      await services.close();
    }
  }),
};
