/**
 * Child process of client_goaway_test.ts: uploads blobs to daemons through our remote
 * BlobService and stops each daemon while the client's connection is still open. Deno's
 * `node:http2` client used to crash here (exit 134 or 139) when the daemon's GOAWAY arrived;
 * this process prints "survived" when it did not.
 *
 * Usage: client_goaway_child.ts <rounds> <tcp|unix> <work dir>
 *
 * @module
 */
import { startDaemonProcess } from "./helpers.ts";
import { openBlobService } from "../../src/backends/open.ts";

const [rounds, transport, dir] = Deno.args;
for (let i = 0; i < Number(rounds); i++) {
  const listen = transport === "unix" ? `unix:${dir}/d${i}.sock` : "127.0.0.1:0";
  const d = await startDaemonProcess(listen);
  const url = d.address.startsWith("unix:")
    ? `grpc+unix://${d.address.slice(5)}`
    : `grpc+http://${d.address}`;
  const blobs = await openBlobService(url);
  // Sizes around the HTTP/2 flow-control window, where the crash was most frequent.
  for (const size of [70_000, 4 << 20]) {
    const w = await blobs.openWrite();
    await w.write(new Uint8Array(size).fill(i + 1));
    await w.close();
  }
  const s = await d.stop();
  if (s.code !== 0) throw new Error(`daemon exited with ${s.code}: ${d.stderr()}`);
  // Give the session time to read the GOAWAY and the end of the connection.
  await new Promise((r) => setTimeout(r, 100));
  await blobs.close();
}
console.log("survived");
