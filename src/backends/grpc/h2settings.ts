/**
 * HTTP/2 settings for our gRPC client and server. Node's defaults (a 64 KiB window per stream
 * and per connection, 16 KiB frames) let one 1 MiB blob message cross only in many round
 * trips, each waiting for a WINDOW_UPDATE that has to pass the GOAWAY guard's pumps.
 *
 * @module
 */
import type * as http2 from "node:http2";

/** Stream window: a few 1 MiB messages in flight per call. */
export const STREAM_WINDOW = 8 << 20;
/** Connection window: room for several calls at full speed. */
export const CONNECTION_WINDOW = 32 << 20;

/** SETTINGS sent by both our client and our server. */
export const H2_SETTINGS: http2.Settings = {
  initialWindowSize: STREAM_WINDOW,
  maxFrameSize: (1 << 24) - 1,
};

/**
 * SETTINGS of our server: also a bound on the calls one connection runs at once (more wait in the
 * client), since each open stream costs the daemon memory even while its call waits for a read
 * slot (docs/performance.md).
 */
export const H2_SERVER_SETTINGS: http2.Settings = { ...H2_SETTINGS, maxConcurrentStreams: 256 };

/**
 * Raises a session's connection window (not a SETTINGS parameter: it starts at 64 KiB and
 * grows only by WINDOW_UPDATE). Harmless on a session already closing.
 */
export function widenConnectionWindow(session: http2.Http2Session): void {
  try {
    session.setLocalWindowSize(CONNECTION_WINDOW);
  } catch { /* the session is gone */ }
}
