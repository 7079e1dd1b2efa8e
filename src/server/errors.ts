/**
 * Maps our error classes to gRPC status codes, so no handler error escapes as UNKNOWN or kills
 * the daemon.
 *
 * @module
 */
import { Code, ConnectError } from "npm:@connectrpc/connect@2.2.0";
import type { UniversalServerResponse } from "npm:@connectrpc/connect@2.2.0/protocol";
import {
  CorruptDataError,
  InvalidRequestError,
  NotFoundError,
  PreconditionError,
  StorageError,
  UnavailableError,
} from "../base/errors.ts";

/**
 * The status a failed call answers with: INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION,
 * UNAVAILABLE for ours, INTERNAL for a backend failure or anything unexpected. ConnectErrors
 * pass through.
 */
export function toConnectError(e: unknown): ConnectError {
  if (e instanceof ConnectError) return e;
  if (e instanceof InvalidRequestError) return new ConnectError(e.message, Code.InvalidArgument);
  if (e instanceof NotFoundError) return new ConnectError(e.message, Code.NotFound);
  if (e instanceof PreconditionError) {
    return new ConnectError(e.message, Code.FailedPrecondition);
  }
  if (e instanceof UnavailableError) return new ConnectError(e.message, Code.Unavailable);
  if (e instanceof CorruptDataError) return new ConnectError(e.message, Code.DataLoss);
  if (e instanceof StorageError) return new ConnectError(e.message, Code.Internal);
  return new ConnectError(`internal error: ${(e as Error)?.message ?? String(e)}`, Code.Internal);
}

/** Runs a unary handler body, mapping whatever it throws. */
export async function unary<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (e) {
    throw toConnectError(e);
  }
}

/** Runs a server-streaming handler body, mapping whatever it throws. */
export async function* streaming<T>(body: () => AsyncIterable<T>): AsyncGenerator<T> {
  try {
    yield* body();
  } catch (e) {
    throw toConnectError(e);
  }
}

// What connect-es 2.2.0 (protocol/serialization.ts) throws, as INTERNAL, for a request message
// that is not valid protobuf: parsing happens before any handler runs, so only the response
// can be corrected.
const PARSE_ERROR = "parse binary: ";

/**
 * The response with a request that did not decode answered as INVALID_ARGUMENT ("undecodable
 * <type> message: …") instead of connect's INTERNAL: the client sent garbage, the server is
 * fine. Any other status passes unchanged. The trailer is only final once the body has been
 * sent, so it is corrected after the last body chunk.
 */
export function undecodableAsInvalidArgument(
  res: UniversalServerResponse,
  inputType: string,
): UniversalServerResponse {
  const trailer = res.trailer;
  if (!trailer) return res;
  const fix = () => {
    if (trailer.get("grpc-status") !== String(Code.Internal)) return;
    let msg = trailer.get("grpc-message") ?? "";
    try {
      msg = decodeURIComponent(msg);
    } catch { /* keep it as it is */ }
    if (!msg.startsWith(PARSE_ERROR)) return;
    trailer.set("grpc-status", String(Code.InvalidArgument));
    trailer.set(
      "grpc-message",
      encodeURIComponent(`undecodable ${inputType} message: ${msg.slice(PARSE_ERROR.length)}`),
    );
  };
  const body = res.body;
  if (!body) {
    fix();
    return res;
  }
  return {
    ...res,
    body: (async function* () {
      yield* body;
      fix();
    })(),
  };
}
