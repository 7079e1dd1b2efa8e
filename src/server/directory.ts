/**
 * The `tvix.castore.v1.DirectoryService` gRPC handlers over any {@linkcode DirectoryService}.
 *
 * @module
 */
import { create } from "npm:@bufbuild/protobuf@2.17.0";
import type { ServiceImpl } from "npm:@connectrpc/connect@2.2.0";
import { B3Digest } from "../castore/digest.ts";
import type { Directory } from "../castore/directory.ts";
import { InvalidRequestError, NotFoundError } from "../base/errors.ts";
import { type ClosureLimits, ClosureValidator } from "../castore/closure.ts";
import type { DirectoryService } from "../castore/directory_service.ts";
import {
  type DirectoryService as DirectoryServiceDesc,
  PutDirectoryResponseSchema,
} from "../gen/tvix/castore/protos/rpc_directory_pb.ts";
import { streaming, unary } from "./errors.ts";

/**
 * Handlers for DirectoryService. Get streams one directory, or with `recursive` the root and
 * then its descendants breadth-first. Put takes a closure leaves first and checks each
 * directory, each child reference and each child size as it arrives, and at the end that the
 * stream was one connected closure, before storing anything. A stream that passes `limits` is
 * refused at the directory that passes it, so what is buffered never exceeds them.
 */
export function directoryServiceImpl(
  directories: DirectoryService,
  limits: ClosureLimits = {},
): ServiceImpl<typeof DirectoryServiceDesc> {
  return {
    get: (req) =>
      streaming(async function* () {
        if (req.byWhat.case !== "digest") {
          throw new InvalidRequestError("by_what needs to be specified");
        }
        const digest = B3Digest.fromBytes(req.byWhat.value);
        const root = await directories.get(digest);
        if (!root) throw new NotFoundError(`directory ${digest} not found`);
        if (!req.recursive) {
          yield root;
          return;
        }
        yield* directories.getRecursive(digest);
      }),
    put: (reqs: AsyncIterable<Directory>) =>
      unary(async () => {
        const validator = new ClosureValidator(limits);
        const putter = directories.putMultipleStart();
        for await (const dir of reqs) {
          try {
            validator.add(dir);
          } catch (e) {
            throw new InvalidRequestError(
              `directory #${validator.count + 1} in the stream: ${(e as Error).message}`,
            );
          }
          await putter.put(dir);
        }
        if (validator.count === 0) throw new InvalidRequestError("no directories received");
        validator.finish();
        const root = await putter.close();
        return create(PutDirectoryResponseSchema, { rootDigest: root.bytes });
      }),
  };
}
