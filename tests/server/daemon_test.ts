/**
 * Daemon behaviour beyond the services' semantics: graceful stop on SIGTERM (in-flight calls
 * finish, socket file removed), lost and frozen daemons give UnavailableError instead of a
 * hang, IPv6 loopback with our own client (the bracketless :authority trap), address parsing.
 */
import assert from "node:assert/strict";
import { B3Digest } from "../../src/castore/digest.ts";
import { putBlob } from "../../src/castore/blob_util.ts";
import { InvalidRequestError, UnavailableError } from "../../src/base/errors.ts";
import { GrpcBlobService } from "../../src/backends/grpc/blob.ts";
import { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import { createTransport } from "../../src/backends/grpc/transport.ts";
import { parseGrpcUrl, parseListenAddress } from "../../src/backends/grpc/address.ts";
import { serveDaemon } from "../../src/server/daemon.ts";
import { startDaemonProcess } from "./helpers.ts";

const MiB = 1 << 20;

Deno.test("SIGTERM: an in-flight read finishes, the socket file is removed, exit 0", async () => {
  const dir = await Deno.makeTempDir();
  const sock = `${dir}/d.sock`;
  const d = await startDaemonProcess(`unix:${sock}`);
  const blobs = new GrpcBlobService(`grpc+unix://${sock}`);
  try {
    const data = new Uint8Array(48 * MiB).map((_, i) => i & 255);
    const digest = await putBlob(blobs, data);
    const reader = (await blobs.openRead(digest))!;
    let got = 0;
    let signalled = false;
    for await (const chunk of reader.chunks()) {
      got += chunk.length;
      if (!signalled) {
        d.child.kill("SIGTERM");
        signalled = true;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    assert.equal(got, data.length, "the read begun before SIGTERM completed (and verified)");
    const status = await d.status;
    assert.equal(status.code, 0, d.stderr());
    await assert.rejects(Deno.lstat(sock), Deno.errors.NotFound);
  } finally {
    await blobs.close();
    await d.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a daemon that went away gives UnavailableError, not a hang", async () => {
  const d = await startDaemonProcess("127.0.0.1:0");
  const blobs = new GrpcBlobService(`grpc+http://${d.address}`);
  try {
    const digest = await putBlob(blobs, new Uint8Array([1, 2, 3]));
    assert.equal(await blobs.has(digest), true);
    await d.stop();
    await assert.rejects(blobs.has(digest), UnavailableError);
    await assert.rejects(putBlob(blobs, new Uint8Array(10)), UnavailableError);
  } finally {
    await blobs.close();
    await d.stop();
  }
  // Nobody listening at all.
  const none = new GrpcBlobService("grpc+unix:///nonexistent/nixcas.sock");
  await assert.rejects(none.has(B3Digest.fromBytes(new Uint8Array(32))), UnavailableError);
  await none.close();
});

Deno.test("a frozen daemon (SIGSTOP) gives UnavailableError after the ping timeout", async () => {
  const d = await startDaemonProcess("127.0.0.1:0");
  const remote = createTransport(`grpc+http://${d.address}`, {
    pingIntervalMs: 300,
    pingTimeoutMs: 300,
  });
  const blobs = new GrpcBlobService(remote);
  try {
    const digest = await putBlob(blobs, new Uint8Array(8 * MiB));
    const reader = (await blobs.openRead(digest))!;
    d.child.kill("SIGSTOP");
    const t0 = performance.now();
    await assert.rejects(
      (async () => {
        for await (const _ of reader.chunks()) { /* the first chunks may be buffered */ }
      })(),
      UnavailableError,
    );
    assert.ok(performance.now() - t0 < 8000, "detected within seconds");
  } finally {
    d.child.kill("SIGCONT");
    await blobs.close();
    await d.stop();
  }
});

Deno.test("IPv6 loopback: our client's bracketless :authority does not break the daemon", async () => {
  let daemon;
  try {
    daemon = await serveDaemon({
      listen: "[::1]:0",
      blobs: new MemoryBlobService(),
      directories: new MemoryDirectoryService(),
    });
  } catch (e) {
    console.warn(`skipping: no IPv6 loopback here (${e})`);
    return;
  }
  const blobs = new GrpcBlobService(`grpc+http://${daemon.addressText}`);
  try {
    assert.match(daemon.addressText, /^\[::1\]:\d+$/);
    const d = await putBlob(blobs, new TextEncoder().encode("v6"));
    assert.equal(await blobs.has(d), true);
  } finally {
    await blobs.close();
    await daemon.close(1000);
  }
});

Deno.test("listen addresses and service URLs", () => {
  assert.deepEqual(parseListenAddress("[::1]:8000"), {
    transport: "tcp",
    hostname: "::1",
    port: 8000,
  });
  assert.deepEqual(parseListenAddress("127.0.0.1:0"), {
    transport: "tcp",
    hostname: "127.0.0.1",
    port: 0,
  });
  assert.deepEqual(parseListenAddress("localhost:1"), {
    transport: "tcp",
    hostname: "localhost",
    port: 1,
  });
  assert.deepEqual(parseListenAddress("unix:/run/x.sock"), {
    transport: "unix",
    path: "/run/x.sock",
  });
  for (const bad of ["::1:8000", "unix:rel.sock", "host", "host:99999", "[::1]", ""]) {
    assert.throws(() => parseListenAddress(bad), /listen address/, bad);
  }
  assert.deepEqual(parseGrpcUrl("grpc+unix:///run/x.sock"), { kind: "unix", path: "/run/x.sock" });
  assert.deepEqual(parseGrpcUrl("grpc+http://[::1]:8000"), {
    kind: "http",
    baseUrl: "http://[::1]:8000",
  });
  assert.deepEqual(parseGrpcUrl("grpc+https://example.org:443"), {
    kind: "https",
    baseUrl: "https://example.org:443",
  });
  for (
    const bad of ["grpc+unix://host/x.sock", "grpc+http://h:1/path", "http://h:1", "grpc+unix://"]
  ) {
    assert.throws(() => parseGrpcUrl(bad), InvalidRequestError, bad);
  }
});
