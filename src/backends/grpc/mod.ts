/**
 * gRPC clients of the three services, for a nixcas or tvix daemon at a `grpc+http://`,
 * `grpc+https://` or `grpc+unix://` address. Kept apart from `@nixcas/nixcas/backends` because
 * they load Connect; `openStore` there loads this module only for `grpc+`
 * addresses.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { putBlob, readBlob } from "@nixcas/nixcas/castore";
 * import { createTransport, GrpcBlobService } from "@nixcas/nixcas/grpc";
 * import { serveDaemon } from "@nixcas/nixcas/server";
 * const dir = await Deno.makeTempDir();
 * const daemon = await serveDaemon({
 *   listen: `unix:${dir}/nixcas.sock`,
 *   blobs: new MemoryBlobService(),
 *   directories: new MemoryDirectoryService(),
 * });
 * const transport = createTransport(`grpc+unix://${dir}/nixcas.sock`);
 * const blobs = new GrpcBlobService(transport);
 * const digest = await putBlob(blobs, new TextEncoder().encode("Hello, world!\n"));
 * assert.equal(new TextDecoder().decode(await readBlob(blobs, digest)), "Hello, world!\n");
 * await blobs.close();
 * transport.close();
 * await daemon.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
export { GrpcBlobService } from "./blob.ts";
export { GrpcDirectoryService } from "./directory.ts";
export { GrpcPathInfoService } from "./path_info.ts";
export { createTransport, type RemoteTransport, type TransportOptions } from "./transport.ts";
export type { GrpcTarget } from "./address.ts";
