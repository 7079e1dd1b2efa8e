/**
 * Directory Put limits and PathInfo immutability through a real `nixcas daemon` process (over
 * an SQLite store) and our gRPC clients: `--max-directories-per-put` and
 * `--max-directory-bytes-per-put` refuse a stream at the directory that passes them, and
 * nothing of it is stored; a changed store path is FAILED_PRECONDITION, seen as
 * PreconditionError.
 */
import assert from "node:assert/strict";
import { GrpcBlobService } from "../../src/backends/grpc/blob.ts";
import { GrpcDirectoryService } from "../../src/backends/grpc/directory.ts";
import { GrpcPathInfoService } from "../../src/backends/grpc/path_info.ts";
import { InvalidRequestError, PreconditionError } from "../../src/base/errors.ts";
import {
  type Directory,
  directoryDigest,
  directoryNodeFor,
  makeDirectory,
} from "../../src/castore/directory.ts";
import { makePathInfo } from "../../src/store/path_info.ts";
import { StorePath } from "../../src/store/store_path.ts";
import { ROOT } from "../prereq.ts";

const enc = new TextEncoder();

/** Starts `nixcas daemon` on a unix socket over a fresh SQLite store, with `extra` flags. */
async function daemon(extra: string[]) {
  const dir = await Deno.makeTempDir({ prefix: "nixcas-limits-" });
  const sock = `${dir}/d.sock`;
  const store = `sqlite://${dir}/store.db`;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--quiet",
      `${ROOT}/mod.ts`,
      "daemon",
      "-l",
      `unix:${sock}`,
      "--blob-service-addr",
      store,
      "--directory-service-addr",
      store,
      "--path-info-service-addr",
      store,
      ...extra,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let err = "";
  while (!/listening/.test(err)) {
    const { value, done } = await lines.read();
    if (done) throw new Error(`daemon did not start: ${err}`);
    err += value;
  }
  (async () => {
    while (!(await lines.read()).done) { /* drain */ }
  })();
  return {
    url: `grpc+unix://${sock}`,
    stop: async () => {
      child.kill("SIGTERM");
      await child.status;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** A chain of `n` directories, each holding the one before, leaves first. */
function chain(n: number, pad = ""): Directory[] {
  const out = [makeDirectory({})];
  while (out.length < n) {
    out.push(makeDirectory({
      directories: [directoryNodeFor(enc.encode(`d${pad}`), out[out.length - 1])],
    }));
  }
  return out;
}

Deno.test("nixcas daemon --max-directories-per-put: a longer stream is cut off", async () => {
  const d = await daemon(["--max-directories-per-put", "5"]);
  const directories = new GrpcDirectoryService(d.url);
  try {
    const five = chain(5);
    const p = directories.putMultipleStart();
    for (const dir of five) await p.put(dir);
    assert.equal((await p.close()).toString(), directoryDigest(five[4]).toString());

    // An endless stream: the putter fails soon after the daemon refuses the 6th directory, not
    // at the end (a pause after each put lets the answer in: 1,000 small directories would
    // otherwise all be on their way before it comes).
    const endless = chain(1000);
    const q = directories.putMultipleStart();
    let sent = 0;
    await assert.rejects(
      (async () => {
        for (const dir of endless) {
          await q.put(dir);
          sent++;
          await new Promise((r) => setTimeout(r, 1));
        }
        await q.close();
      })(),
      (e) => e instanceof InvalidRequestError && /more than 5 directories/.test(e.message),
    );
    assert.ok(sent < 1000, `${sent} directories were sent`);
    assert.equal(await directories.get(directoryDigest(endless[5])), null);
  } finally {
    await directories.close();
    await d.stop();
  }
});

Deno.test("nixcas daemon --max-directory-bytes-per-put: a bigger stream is refused", async () => {
  const d = await daemon(["--max-directory-bytes-per-put", "1000"]);
  const directories = new GrpcDirectoryService(d.url);
  try {
    // Each directory but the empty leaf encodes to a little under 300 bytes: the leaf and three
    // more fit in 1000 bytes, a fourth does not.
    const long = "x".repeat(250);
    await directories.put(makeDirectory({}));
    const p = directories.putMultipleStart();
    await assert.rejects(
      (async () => {
        for (const dir of chain(5, long)) await p.put(dir);
        await p.close();
      })(),
      (e) => e instanceof InvalidRequestError && /more than 1000 bytes/.test(e.message),
    );
    const ok = directories.putMultipleStart();
    for (const dir of chain(4, long)) await ok.put(dir);
    await ok.close();
  } finally {
    await directories.close();
    await d.stop();
  }
});

Deno.test("nixcas daemon: a changed store path is refused, naming it", async () => {
  const d = await daemon([]);
  const blobs = new GrpcBlobService(d.url);
  const pathInfos = new GrpcPathInfoService(d.url);
  try {
    const storePath = StorePath.parse("00bgd045z0d4icpbc2yyz4gx48ak44la-hello");
    const info = (target: string) =>
      makePathInfo({
        storePath,
        node: {
          case: "symlink",
          value: {
            $typeName: "tvix.castore.v1.SymlinkNode",
            name: new Uint8Array(),
            target: enc.encode(target),
          },
        },
        narSize: 120,
        narSha256: new Uint8Array(32),
      });
    await pathInfos.put(info("/nix/store/x"));
    await pathInfos.put(info("/nix/store/x")); // the same again is fine
    await assert.rejects(
      pathInfos.put(info("/nix/store/y")),
      (e) => e instanceof PreconditionError && e.message.includes(storePath.absolute),
    );
  } finally {
    await Promise.all([blobs.close(), pathInfos.close()]);
    await d.stop();
  }
});
