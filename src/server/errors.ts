/**
 * Maps our error classes to gRPC status codes, so no handler error escapes as UNKNOWN or kills
 * the daemon.
 *
 * @module
 */
import { Code, ConnectError } from "npm:@connectrpc/connect@2.2.0";
import {
  CorruptDataError,
  InvalidRequestError,
  NotFoundError,
  StorageError,
  UnavailableError,
} from "../base/errors.ts";

/**
 * The status a failed call answers with: INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE for ours,
 * INTERNAL for a backend failure or anything unexpected. ConnectErrors pass through.
 */
export function toConnectError(e: unknown): ConnectError {
  if (e instanceof ConnectError) return e;
  if (e instanceof InvalidRequestError) return new ConnectError(e.message, Code.InvalidArgument);
  if (e instanceof NotFoundError) return new ConnectError(e.message, Code.NotFound);
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
