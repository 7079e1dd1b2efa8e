/**
 * Connect's HTTP client interface on our own HTTP/2 client (`src/http2/`), so that every gRPC
 * call of our clients, not only blob reads, runs on it: connect-es's gRPC protocol over a
 * {@linkcode UniversalClientFn}.
 *
 * @module
 */
import { Code, ConnectError } from "npm:@connectrpc/connect@2.2.0";
import type { UniversalClientFn } from "npm:@connectrpc/connect@2.2.0/protocol";
import { type Http2Client, Http2Error } from "../../http2/client.ts";
import { ErrorCode } from "../../http2/frames.ts";
import type { HeaderField } from "../../http2/hpack.ts";

/**
 * The gRPC status for a failure of our HTTP/2 client (the gRPC spec's table for resets).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Code } from "npm:@connectrpc/connect@2.2.0";
 * import { Http2Error } from "../../http2/client.ts";
 * import { connectErrorOf } from "./http_client.ts";
 * assert.equal(connectErrorOf(new Http2Error("unavailable", "lost")).code, Code.Unavailable);
 * assert.equal(connectErrorOf(new Http2Error("reset", "reset", 0xb)).code, Code.ResourceExhausted);
 * ```
 */
export function connectErrorOf(e: unknown): ConnectError {
  if (e instanceof ConnectError) return e;
  if (!(e instanceof Http2Error)) return ConnectError.from(e);
  let code: Code;
  switch (e.kind) {
    case "unavailable":
    case "refused":
      code = Code.Unavailable;
      break;
    case "cancelled":
      code = Code.Canceled;
      break;
    case "reset":
      code = e.h2Code === ErrorCode.REFUSED_STREAM
        ? Code.Unavailable
        : e.h2Code === ErrorCode.CANCEL
        ? Code.Canceled
        : e.h2Code === ErrorCode.ENHANCE_YOUR_CALM
        ? Code.ResourceExhausted
        : e.h2Code === ErrorCode.INADEQUATE_SECURITY
        ? Code.PermissionDenied
        : Code.Internal;
      break;
    default:
      code = Code.Internal;
  }
  return new ConnectError(e.message, code, undefined, undefined, e);
}

/** Header fields as a Headers object, pseudo-headers left out. */
export function headersOf(fields: readonly HeaderField[]): Headers {
  const out = new Headers();
  for (const [k, v] of fields) {
    if (!k.startsWith(":")) out.append(k, v);
  }
  return out;
}

/** Connect's HTTP client on `client`: each request one HTTP/2 stream. */
export function universalClient(client: Http2Client): UniversalClientFn {
  return async (req) => {
    req.signal?.throwIfAborted();
    const url = new URL(req.url);
    const fields: HeaderField[] = [[":method", req.method], [":path", url.pathname + url.search]];
    req.header.forEach((v, k) => fields.push([k, v]));
    let call;
    try {
      call = await client.request(fields, req.body ?? null);
    } catch (e) {
      throw connectErrorOf(e);
    }
    const cancel = () => call.cancel();
    req.signal?.addEventListener("abort", cancel, { once: true });
    let head: HeaderField[];
    try {
      head = await call.response;
    } catch (e) {
      req.signal?.removeEventListener("abort", cancel);
      throw connectErrorOf(e);
    }
    const trailer = new Headers();
    const body = async function* () {
      try {
        for await (const piece of call.body()) yield piece;
        for (const [k, v] of call.trailers ?? []) trailer.append(k, v);
      } catch (e) {
        throw connectErrorOf(e);
      } finally {
        req.signal?.removeEventListener("abort", cancel);
      }
    };
    return {
      status: Number(head.find(([n]) => n === ":status")?.[1] ?? 0),
      header: headersOf(head),
      body: body(),
      trailer,
    };
  };
}
