/**
 * `tvix.castore.v1.BlobService/Read`, the call that carries the bytes, spoken without connect:
 * on our own HTTP/2 client and server (`src/http2/`): gRPC's length-prefixed messages, the
 * `BlobChunk` and `ReadBlobRequest` messages, and the status trailers. Through connect, a 1 MiB
 * Read between our client and daemon took 8.4–9.8 ms, the same bytes as one plain HTTP/2
 * response 2.5–3.0 ms (docs/decisions/grpc-blob-read.md).
 *
 * @module
 */
import { Code, ConnectError } from "npm:@connectrpc/connect@2.2.0";
import { codeFromHttpStatus, findTrailerError } from "npm:@connectrpc/connect@2.2.0/protocol-grpc";
import { WireReader } from "../../castore/wire.ts";
import type { Http2Call, Http2Client } from "../../http2/client.ts";
import type { HeaderField } from "../../http2/hpack.ts";
import { connectErrorOf, headersOf } from "./http_client.ts";

/** The request path of BlobService/Read. */
export const READ_PATH = "/tvix.castore.v1.BlobService/Read";

/** The content type of gRPC with protobuf messages. */
export const GRPC_CONTENT_TYPE = "application/grpc+proto";

/**
 * The 5-byte message prefix and the `BlobChunk.data` field key and length that go before
 * `size` bytes of data: sending the data itself as a second write saves copying it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { blobChunkPrefix } from "./blob_calls.ts";
 * // A message of 3 bytes (field 1, length 1) holding one byte.
 * assert.deepEqual([...blobChunkPrefix(1)], [0, 0, 0, 0, 3, 0x0a, 1]);
 * ```
 */
export function blobChunkPrefix(size: number): Uint8Array {
  const varint: number[] = [];
  let n = size;
  while (n >= 0x80) {
    varint.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 0x80);
  }
  varint.push(n);
  const length = 1 + varint.length + size;
  const out = new Uint8Array(5 + 1 + varint.length);
  new DataView(out.buffer).setUint32(1, length);
  out[5] = 0x0a; // field 1, length-delimited
  out.set(varint, 6);
  return out;
}

/**
 * A `ReadBlobRequest { bytes digest = 1; }` as one length-prefixed message.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeReadRequest, encodeReadRequest, MessageSplitter } from "./blob_calls.ts";
 * const digest = new Uint8Array(32).fill(9);
 * const [msg] = new MessageSplitter(1024).push(encodeReadRequest(digest));
 * assert.deepEqual(decodeReadRequest(msg), digest);
 * ```
 */
export function encodeReadRequest(digest: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + 2 + digest.length);
  new DataView(out.buffer).setUint32(1, 2 + digest.length);
  out[5] = 0x0a;
  out[6] = digest.length;
  out.set(digest, 7);
  return out;
}

/** Field 1 (`bytes`) of a `what` message, unknown fields skipped: a view into `msg`. */
function bytesField1(msg: Uint8Array, what: string): Uint8Array {
  const r = new WireReader(msg, what);
  let value: Uint8Array = new Uint8Array(0);
  while (r.more()) {
    const [f, wt] = r.tag();
    if (f === 1) value = r.messageField(f, wt);
    else r.skip(f, wt);
  }
  return value;
}

/** The digest of a `ReadBlobRequest` (a copy); a malformed message throws. */
export function decodeReadRequest(msg: Uint8Array): Uint8Array {
  return bytesField1(msg, "tvix.castore.v1.ReadBlobRequest").slice();
}

/** The `data` of a `BlobChunk` (a view into `msg`); a malformed message throws. */
export function decodeBlobChunk(msg: Uint8Array): Uint8Array {
  return bytesField1(msg, "tvix.castore.v1.BlobChunk");
}

/**
 * Cuts a byte stream into gRPC's length-prefixed messages. The pieces pushed are the splitter's
 * to keep (they must not change afterwards). A message arriving in one piece, or in pieces that
 * follow each other in one buffer, is handed out as a view; one spread over other pieces is
 * gathered into a buffer of its declared size, allocated once. Compressed messages and messages
 * over `maxBytes` are errors.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MessageSplitter } from "./blob_calls.ts";
 * const s = new MessageSplitter(100);
 * const stream = new Uint8Array([0, 0, 0, 0, 2, 7, 8, 0, 0, 0, 0, 1, 9]);
 * const got = [...s.push(stream.subarray(0, 3)), ...s.push(stream.subarray(3))];
 * assert.deepEqual(got.map((m) => [...m]), [[7, 8], [9]]);
 * assert.equal(s.pending, 0);
 * ```
 */
export class MessageSplitter {
  #max: number;
  #head = new Uint8Array(5);
  #headLen = 0;
  #body: Uint8Array | null = null;
  #bodyLen = 0;
  // A message begun in one piece and continued by pieces that follow it in the same buffer
  // (our HTTP/2 client reads into one buffer from the front) is kept as a view: its length and
  // the bytes so far.
  #viewLen = -1;
  #view: Uint8Array | null = null;

  /** A splitter refusing messages over `maxBytes`. */
  constructor(maxBytes: number) {
    this.#max = maxBytes;
  }

  /** Bytes of an incomplete message held (0 between messages). */
  get pending(): number {
    return this.#headLen + this.#bodyLen + (this.#view?.length ?? 0);
  }

  /** Adds bytes; returns the messages they completed. */
  push(data: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let o = 0;
    if (this.#view) {
      const v = this.#view;
      const take = Math.min(this.#viewLen - v.length, data.length);
      if (data.buffer === v.buffer && data.byteOffset === v.byteOffset + v.length) {
        this.#view = new Uint8Array(v.buffer, v.byteOffset, v.length + take);
      } else {
        // Not adjacent: gather from here on.
        this.#body = new Uint8Array(this.#viewLen);
        this.#body.set(v);
        this.#body.set(data.subarray(0, take), v.length);
        this.#bodyLen = v.length + take;
        this.#view = null;
      }
      o = take;
      if (this.#view && this.#view.length === this.#viewLen) {
        out.push(this.#view);
        this.#view = null;
      } else if (this.#body && this.#bodyLen === this.#body.length) {
        out.push(this.#body);
        this.#body = null;
        this.#bodyLen = 0;
      }
      if (this.#view || this.#body) return out;
    }
    while (o < data.length) {
      if (this.#body === null) {
        if (this.#headLen === 0 && data.length - o >= 5) {
          const len = this.#length(data, o);
          if (data.length - o - 5 >= len) {
            out.push(data.subarray(o + 5, o + 5 + len)); // whole: no copy
            o += 5 + len;
            continue;
          }
          // Begun here: a view until a piece that does not follow it.
          this.#viewLen = len;
          this.#view = data.subarray(o + 5);
          return out;
        }
        const take = Math.min(5 - this.#headLen, data.length - o);
        this.#head.set(data.subarray(o, o + take), this.#headLen);
        this.#headLen += take;
        o += take;
        if (this.#headLen < 5) break;
        this.#body = new Uint8Array(this.#length(this.#head, 0));
        this.#bodyLen = 0;
        this.#headLen = 0;
      }
      const take = Math.min(this.#body.length - this.#bodyLen, data.length - o);
      this.#body.set(data.subarray(o, o + take), this.#bodyLen);
      this.#bodyLen += take;
      o += take;
      if (this.#bodyLen === this.#body.length) {
        out.push(this.#body);
        this.#body = null;
        this.#bodyLen = 0;
      }
    }
    // A message whose body is empty completes with its prefix.
    if (this.#body !== null && this.#body.length === 0) {
      out.push(this.#body);
      this.#body = null;
    }
    return out;
  }

  #length(b: Uint8Array, at: number): number {
    if (b[at] !== 0) {
      throw new ConnectError(
        `compressed message (flags ${b[at]}) without negotiated compression`,
        Code.Internal,
      );
    }
    const len = new DataView(b.buffer, b.byteOffset + at + 1, 4).getUint32(0);
    if (len > this.#max) {
      throw new ConnectError(
        `message of ${len} bytes is larger than the limit of ${this.#max}`,
        Code.ResourceExhausted,
      );
    }
    return len;
  }
}

/** What {@linkcode readBlobCall} and {@linkcode putBlobCall} need. */
export interface BlobCallOptions {
  /** The HTTP/2 client of the server. */
  client: Http2Client;
  /** Request headers to add (authorization). */
  headers?: Record<string, string>;
  /** Largest message accepted. */
  readMaxBytes: number;
  /** Cancels the call. */
  signal?: AbortSignal;
}

/**
 * A gRPC response's messages as they arrive, then its status: a non-OK status (in trailers, or a
 * trailers-only answer) throws a ConnectError with the server's code and message.
 */
async function* responseMessages(call: Http2Call, maxBytes: number): AsyncGenerator<Uint8Array> {
  let head: HeaderField[];
  try {
    head = await call.response;
  } catch (e) {
    throw connectErrorOf(e);
  }
  const headers = headersOf(head);
  const status = Number(head.find(([n]) => n === ":status")?.[1]);
  if (headers.has("grpc-status")) {
    // A trailers-only answer: the status is all there is (grpcio answers so for no data).
    const failed = findTrailerError(headers);
    if (failed) throw failed;
    return;
  }
  if (status !== 200) {
    throw new ConnectError(`HTTP status ${status}`, codeFromHttpStatus(status));
  }
  const splitter = new MessageSplitter(maxBytes);
  try {
    for await (const piece of call.body()) yield* splitter.push(piece);
  } catch (e) {
    throw connectErrorOf(e);
  }
  if (splitter.pending > 0) {
    throw new ConnectError("protocol error: incomplete message", Code.Internal);
  }
  if (!call.trailers) throw new ConnectError("protocol error: missing trailers", Code.Internal);
  const end = headersOf(call.trailers);
  const failed = findTrailerError(end);
  if (failed) throw failed;
  if (!end.has("grpc-status")) {
    throw new ConnectError("protocol error: missing status", Code.Internal);
  }
}

function requestHeaders(path: string, opts: BlobCallOptions): HeaderField[] {
  return [
    [":method", "POST"],
    [":path", path],
    ["content-type", GRPC_CONTENT_TYPE],
    ["te", "trailers"],
    ...Object.entries(opts.headers ?? {}),
  ];
}

/**
 * Calls BlobService/Read for `digest` and yields each `BlobChunk`'s data as it arrives; a
 * non-OK status throws a ConnectError with the server's code and message.
 */
export async function* readBlobCall(
  digest: Uint8Array,
  opts: BlobCallOptions,
): AsyncGenerator<Uint8Array> {
  opts.signal?.throwIfAborted();
  let call: Http2Call;
  try {
    call = await opts.client.request(requestHeaders(READ_PATH, opts), encodeReadRequest(digest));
  } catch (e) {
    throw connectErrorOf(e);
  }
  const cancel = () => call.cancel();
  opts.signal?.addEventListener("abort", cancel, { once: true });
  try {
    for await (const msg of responseMessages(call, opts.readMaxBytes)) yield decodeBlobChunk(msg);
  } finally {
    opts.signal?.removeEventListener("abort", cancel);
    call.cancel();
  }
}

/** The request path of BlobService/Put. */
export const PUT_PATH = "/tvix.castore.v1.BlobService/Put";

/** A BlobService/Put in progress, as {@linkcode putBlobCall} opens it. */
export interface PutCall {
  /**
   * Sends `data` as `BlobChunk` messages of at most 1 MiB; resolves once it was written to the
   * connection (the caller may then reuse it). Rejects once the call has failed.
   */
  write(data: Uint8Array): Promise<void>;
  /** Ends the stream; resolves with the digest the server stored. */
  close(): Promise<Uint8Array>;
  /** Cancels the call: the server stores nothing. */
  abort(): void;
}

/** Largest `BlobChunk` sent. */
const PUT_MESSAGE = 1 << 20;

/**
 * Opens BlobService/Put: the chunks are sent without a copy as the caller writes them. The
 * server may answer (an error) before the stream ends; the next write or close rejects with it.
 */
export async function putBlobCall(opts: BlobCallOptions): Promise<PutCall> {
  let call: Http2Call;
  try {
    call = await opts.client.request(requestHeaders(PUT_PATH, opts), "writer");
  } catch (e) {
    throw connectErrorOf(e);
  }
  let failed: unknown = null;
  const result = (async () => {
    let digest: Uint8Array | null = null;
    for await (const msg of responseMessages(call, opts.readMaxBytes)) {
      if (digest) throw new ConnectError("protocol error: two Put responses", Code.Internal);
      digest = bytesField1(msg, "tvix.castore.v1.PutBlobResponse").slice();
    }
    if (!digest) throw new ConnectError("protocol error: no Put response", Code.Internal);
    return digest;
  })();
  result.catch((e) => (failed ??= e));
  return {
    write: async (data) => {
      if (failed) throw failed;
      for (let o = 0; o < data.length; o += PUT_MESSAGE) {
        const part = data.subarray(o, o + PUT_MESSAGE);
        try {
          await call.write([blobChunkPrefix(part.length), part]);
        } catch (e) {
          throw failed ?? connectErrorOf(e);
        }
        if (failed) throw failed;
      }
    },
    close: async () => {
      if (failed) throw failed;
      try {
        await call.end();
      } catch (e) {
        throw failed ?? connectErrorOf(e);
      }
      return await result;
    },
    abort: () => call.cancel(),
  };
}
