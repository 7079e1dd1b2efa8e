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
import { useReadServerMode } from "../backends/sqlite/db.ts";
import { DEFAULT_LISTEN_ADDRESS, parseListenAddress } from "../backends/grpc/address.ts";
import {
  action,
  CliError,
  loggerFor,
  openServices,
  parseIntAtLeast,
  SERVICE_ADDR_OPTIONS,
  type ServiceAddrOptions,
} from "./common.ts";

/** Parses `--grace`: a number of seconds, zero or more (fractions allowed). */
function parseSeconds(value: string): number {
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || !Number.isFinite(n)) {
    throw new Error("not a number of seconds");
  }
  return n;
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
}

/** `daemon`. */
export const daemonCommand: CommandSpec<DaemonOptions> = {
  name: "daemon",
  description:
    "Serve BlobService, DirectoryService and PathInfoService (tvix wire protocol, gRPC over " +
    "HTTP/2 cleartext, with server reflection) until SIGINT or SIGTERM, which stop it " +
    "gracefully: calls in progress finish and the unix socket file is removed. A socket file " +
    "left by a daemon that died is replaced; an address in use is refused (exit 1), a " +
    "malformed one too (exit 2).",
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
    // Loaded here, not at startup: other commands never need the server (or node:http2).
    const { closeOnSignal, serveDaemon } = await import("../server/daemon.ts");
    // A long-running read server: the SQLite file is memory-mapped.
    useReadServerMode();
    const services = await openServices(opts);
    try {
      const daemon = await serveDaemon({
        listen,
        blobs: services.blobs,
        directories: services.directories,
        pathInfos: services.pathInfos,
        directoryPutLimits: {
          maxDirectories: opts.maxDirectoriesPerPut,
          maxBytes: opts.maxDirectoryBytesPerPut,
        },
        log: (m) => log.warn(m),
      });
      log.info(`listening ${daemon.addressText}`, { address: daemon.addressText });
      await closeOnSignal(daemon, opts.grace * 1000);
      log.info("stopped");
    } finally {
      await services.close();
    }
  }),
};
