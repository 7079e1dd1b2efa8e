/**
 * A client that uploaded a NAR keeps the narinfo it wrote (Nix does, for a month) and later
 * fetches the URL it chose: the server answers that URL, compressed as its name says, also
 * after a restart when it remembers the URLs in a file.
 */
import assert from "node:assert/strict";
import { openStore } from "../../src/backends/open.ts";
import { fromNodeMessage } from "../../src/castore/directory.ts";
import { compress, decompress } from "../../src/compress/compression.ts";
import { binaryCacheHandler } from "../../src/http/binary_cache.ts";
import { renderNar } from "../../src/nar/render.ts";
import { importStorePath } from "../../src/store/import.ts";
import { pathInfoToNarInfo, renderNarInfo } from "../../src/store/narinfo.ts";

const bytesOf = async (s: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>) =>
  await new Response(s instanceof ReadableStream ? s : ReadableStream.from(s)).bytes();

Deno.test("an uploader's own NAR URL is served, compressed as named, after a restart too", async () => {
  const tmp = await Deno.makeTempDir();
  const source = await openStore("memory://");
  const served = await openStore(`sqlite://${tmp}/store.db`);
  try {
    await Deno.writeTextFile(`${tmp}/hello.txt`, "Hello, world!\n".repeat(1000));
    const { pathInfo, storePath } = await importStorePath(`${tmp}/hello.txt`, source);
    const nar = await bytesOf(
      renderNar(fromNodeMessage(pathInfo.node), source.blobs, source.directories),
    );
    const xz = await bytesOf(compress("xz", ReadableStream.from([nar])));
    const url = "nar/0ndgf1gdbg80rf26kndc1xh0ci4pkvjr4ad7wpbl71spnfkjdxv7.nar.xz";
    const options = { ...served, uploadUrlsFile: `${tmp}/urls.db` };
    let handler = binaryCacheHandler(options);
    const put = await handler(new Request(`http://x/${url}`, { method: "PUT", body: xz }));
    assert.equal(put.status, 200, await put.text());
    const narinfo = renderNarInfo(pathInfoToNarInfo(pathInfo, { url, compression: "xz" }));
    const hash = storePath.toString().slice(0, 32);
    const info = await handler(
      new Request(`http://x/${hash}.narinfo`, { method: "PUT", body: narinfo }),
    );
    assert.equal(info.status, 200, await info.text());

    for (const round of ["running", "restarted"]) {
      if (round === "restarted") handler = binaryCacheHandler(options);
      const res = await handler(new Request(`http://x/${url}`));
      assert.equal(res.status, 200, round);
      assert.deepEqual(await bytesOf(decompress("xz", res.body!)), nar, round);
    }
    // Without the file, a new server knows only its own URLs.
    const forgetful = binaryCacheHandler(served);
    const gone = await forgetful(new Request(`http://x/${url}`));
    assert.equal(gone.status, 404);
    await gone.body?.cancel();
  } finally {
    await source.close();
    await served.close();
    await Deno.remove(tmp, { recursive: true });
  }
});
