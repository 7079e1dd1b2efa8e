/**
 * The `tvix.store.v1.PathInfoService` gRPC handlers over any {@linkcode PathInfoService}.
 *
 * @module
 */
import { create } from "npm:@bufbuild/protobuf@2.17.0";
import type { ServiceImpl } from "npm:@connectrpc/connect@2.2.0";
import { fromNodeMessage, validateNode } from "../castore/directory.ts";
import { InvalidRequestError, NotFoundError } from "../base/errors.ts";
import type { PathInfoService } from "../store/path_info_service.ts";
import {
  CalculateNARResponseSchema,
  type PathInfoService as PathInfoServiceDesc,
} from "../gen/tvix/store/protos/rpc_pathinfo_pb.ts";
import { streaming, unary } from "./errors.ts";

/** Length of the digest in a store path (the part behind the nixbase32 text). */
export const STORE_PATH_DIGEST_LEN = 20;

/**
 * Handlers for PathInfoService. Put hands the message to the backend, which validates it
 * (PathInfoService.put's contract); a missing root node is rejected here already.
 */
export function pathInfoServiceImpl(
  pathInfos: PathInfoService,
): ServiceImpl<typeof PathInfoServiceDesc> {
  return {
    get: (req) =>
      unary(async () => {
        if (req.byWhat.case !== "byOutputHash") {
          throw new InvalidRequestError("by_what needs to be specified");
        }
        const digest = req.byWhat.value;
        if (digest.length !== STORE_PATH_DIGEST_LEN) {
          throw new InvalidRequestError(
            `invalid output digest length: ${digest.length} (want ${STORE_PATH_DIGEST_LEN})`,
          );
        }
        const info = await pathInfos.get(digest);
        if (!info) throw new NotFoundError("PathInfo not found");
        return info;
      }),
    put: (info) =>
      unary(async () => {
        validateNode(fromNodeMessage(info.node));
        return await pathInfos.put(info);
      }),
    calculateNAR: (node) =>
      unary(async () => {
        if (node.node.case === undefined) throw new InvalidRequestError("no root node sent");
        const root = fromNodeMessage(node);
        validateNode(root);
        const r = await pathInfos.calculateNar(root);
        return create(CalculateNARResponseSchema, {
          narSize: BigInt(r.narSize),
          narSha256: r.narSha256,
        });
      }),
    list: () => streaming(() => pathInfos.list()),
  };
}
