/**
 * `nixcas daemon`: serves the three services over gRPC until SIGINT/SIGTERM.
 *
 * @module
 */
import type { Command } from "commander";
import { useReadServerMode } from "../sqlite/db.ts";
import { DEFAULT_LISTEN_ADDRESS, parseListenAddress } from "../grpc/address.ts";
import {
  action,
  addServiceAddrOptions,
  CliError,
  loggerFor,
  openServices,
  type ServiceAddrOptions,
} from "./common.ts";

/** Registers `daemon`. */
export function register(program: Command): void {
  addServiceAddrOptions(
    program.command("daemon")
      .description(
        "Serve BlobService, DirectoryService and PathInfoService (tvix wire protocol, gRPC over " +
          "HTTP/2 cleartext, with server reflection) until SIGINT or SIGTERM, which stop it " +
          "gracefully: calls in progress finish and the unix socket file is removed.",
      )
      .option(
        "-l, --listen-address <addr>",
        "host:port, [v6]:port or unix:/abs/path (listening beyond loopback is your choice)",
        DEFAULT_LISTEN_ADDRESS,
      )
      .option("--grace <seconds>", "how long calls in progress may take at shutdown", "10"),
  ).action(action(async function (this: Command) {
    const opts = this.opts<ServiceAddrOptions & { listenAddress: string; grace: string }>();
    const log = loggerFor(this);
    let listen;
    try {
      listen = parseListenAddress(opts.listenAddress);
    } catch (e) {
      throw new CliError((e as Error).message, 2);
    }
    // Loaded here, not at startup: other commands never need the server (or node:http2).
    const { closeOnSignal, serveDaemon } = await import("../server/daemon.ts");
    // A long-running read server: mapped SQLite file, blob chunks read in workers.
    useReadServerMode();
    const services = await openServices(opts);
    try {
      const daemon = await serveDaemon({
        listen,
        blobs: services.blobs,
        directories: services.directories,
        pathInfos: services.pathInfos,
        log: (m) => log.warn(m),
      });
      log.info(`listening ${daemon.addressText}`, { address: daemon.addressText });
      await closeOnSignal(daemon, Number(opts.grace) * 1000);
      log.info("stopped");
    } finally {
      await services.close();
    }
  }));
}
