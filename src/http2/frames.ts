/**
 * HTTP/2 framing (RFC 9113 section 4 and 6): frame types, flags, settings and error codes, and
 * the writers of the frames a client sends.
 *
 * @module
 */

/** Frame types. */
export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

/** Frame flags (END_STREAM and ACK share a bit, on different frame types). */
export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

/** SETTINGS parameters. */
export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** Error codes of RST_STREAM and GOAWAY. */
export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
} as const;

/** The name of an error code, for messages. */
export function errorCodeName(code: number): string {
  for (const [name, value] of Object.entries(ErrorCode)) if (value === code) return name;
  return `error code 0x${code.toString(16)}`;
}

/** The client connection preface (RFC 9113 section 3.4). */
export const CLIENT_PREFACE: Uint8Array = new TextEncoder().encode(
  "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
);

/** Length of a frame header. */
export const FRAME_HEADER = 9;

/** The largest window (2^31 - 1). */
export const MAX_WINDOW = 0x7fffffff;

/**
 * Writes a frame header into `out` at `at`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FrameType, frameHeader } from "./frames.ts";
 * const out = new Uint8Array(9);
 * frameHeader(out, 0, 5, FrameType.DATA, 1, 3);
 * assert.deepEqual([...out], [0, 0, 5, 0, 1, 0, 0, 0, 3]);
 * ```
 */
export function frameHeader(
  out: Uint8Array,
  at: number,
  length: number,
  type: number,
  flags: number,
  stream: number,
): void {
  out[at] = length >>> 16;
  out[at + 1] = (length >>> 8) & 0xff;
  out[at + 2] = length & 0xff;
  out[at + 3] = type;
  out[at + 4] = flags;
  new DataView(out.buffer, out.byteOffset + at + 5, 4).setUint32(0, stream & MAX_WINDOW);
}

/** A whole frame: header and payload in one buffer. */
export function frame(
  type: number,
  flags: number,
  stream: number,
  payload: Uint8Array,
): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER + payload.length);
  frameHeader(out, 0, payload.length, type, flags, stream);
  out.set(payload, FRAME_HEADER);
  return out;
}

/** A SETTINGS frame with the given parameters (none and `ack` for the acknowledgement). */
export function settingsFrame(settings: [id: number, value: number][], ack = false): Uint8Array {
  const payload = new Uint8Array(6 * settings.length);
  const view = new DataView(payload.buffer);
  settings.forEach(([id, value], i) => {
    view.setUint16(6 * i, id);
    view.setUint32(6 * i + 2, value);
  });
  return frame(FrameType.SETTINGS, ack ? Flag.ACK : 0, 0, payload);
}

/** A WINDOW_UPDATE frame. */
export function windowUpdateFrame(stream: number, increment: number): Uint8Array {
  const payload = new Uint8Array(4);
  new DataView(payload.buffer).setUint32(0, increment);
  return frame(FrameType.WINDOW_UPDATE, 0, stream, payload);
}

/** A RST_STREAM frame. */
export function rstStreamFrame(stream: number, code: number): Uint8Array {
  const payload = new Uint8Array(4);
  new DataView(payload.buffer).setUint32(0, code);
  return frame(FrameType.RST_STREAM, 0, stream, payload);
}

/** A GOAWAY frame. */
export function goawayFrame(lastStream: number, code: number): Uint8Array {
  const payload = new Uint8Array(8);
  const view = new DataView(payload.buffer);
  view.setUint32(0, lastStream);
  view.setUint32(4, code);
  return frame(FrameType.GOAWAY, 0, 0, payload);
}
