/**
 * A deliberately rude HTTP/2 gRPC client for crash-loop tests: it opens a session, reads a
 * blob (fully or partly), and leaves with GOAWAY, or by dropping the connection.
 *
 * @module
 */
import * as http2 from "node:http2";
import * as net from "node:net";

/** How a cycle ends the session. */
export type Leave = "goaway" | "close" | "destroy" | "early-goaway";

/** The gRPC request body of BlobService/Read for a digest (5-byte frame prefix + message). */
export function readRequestBody(digest: Uint8Array): Uint8Array {
  const msg = new Uint8Array(2 + digest.length);
  msg[0] = 0x0a; // field 1, length-delimited
  msg[1] = digest.length;
  msg.set(digest, 2);
  const body = new Uint8Array(5 + msg.length);
  new DataView(body.buffer).setUint32(1, msg.length);
  body.set(msg, 5);
  return body;
}

/** `host:port` or `unix:/path` → a function opening a session there. */
export function sessionOpener(address: string): () => http2.ClientHttp2Session {
  if (address.startsWith("unix:")) {
    const path = address.slice(5);
    return () => http2.connect("http://localhost", { createConnection: () => net.connect(path) });
  }
  return () => http2.connect(`http://${address}`);
}

/**
 * One connect/read/disconnect cycle; resolves with the bytes received (never rejects: a rude
 * client does not care how the server feels).
 */
export function readCycle(
  open: () => http2.ClientHttp2Session,
  body: Uint8Array,
  leave: Leave,
): Promise<number> {
  return new Promise((resolve) => {
    let got = 0;
    let done = false;
    const s = open();
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try {
        if (leave === "destroy") s.destroy();
        else {
          if (leave === "goaway" || leave === "early-goaway") s.goaway(0);
          s.close();
        }
      } catch { /* already gone */ }
      resolve(got);
    };
    const timer = setTimeout(finish, 10_000);
    s.on("error", finish);
    const r = s.request({
      ":method": "POST",
      ":path": "/tvix.castore.v1.BlobService/Read",
      "content-type": "application/grpc",
      te: "trailers",
    });
    r.on("error", finish);
    r.on("data", (c: Uint8Array) => {
      got += c.length;
      // Leave in the middle of the response, with data still in flight.
      if (leave === "early-goaway" && got > 100_000) finish();
    });
    r.on("close", finish);
    r.end(body);
  });
}
