/**
 * The gRPC daemon: serves any BlobService, DirectoryService and PathInfoService over tvix's
 * protocol (HTTP/2, TCP or a unix socket), with server reflection, for nixcas and tvix clients.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "@nixcas/nixcas/backends";
 * import { putBlob } from "@nixcas/nixcas/castore";
 * import { serveDaemon } from "@nixcas/nixcas/server";
 * const local = await openStore("memory://");
 * const daemon = await serveDaemon({ listen: "127.0.0.1:0", ...local });
 * assert.equal(daemon.address.transport, "tcp");
 * const remote = await openStore(`grpc+http://${daemon.addressText}`);
 * const digest = await putBlob(remote.blobs, new TextEncoder().encode("Hello, world!\n"));
 * assert(await local.blobs.has(digest)); // stored by the daemon
 * await remote.close();
 * await daemon.close();
 * await local.close();
 * ```
 *
 * @module
 */
export { closeOnSignal, type Daemon, type DaemonOptions, serveDaemon } from "./daemon.ts";
export type { SocketAddress } from "../backends/grpc/address.ts";
