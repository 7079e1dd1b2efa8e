/**
 * The binary cache handler without Nix: requests built by hand against a memory store. HEAD is
 * GET without a body; absent paths are 404; Range gives 206 or 416; an upload becomes a store
 * path only when a narinfo that matches it (hash, size, references present) is put, and a corrupt
 * or truncated upload registers nothing; auth and read-only refuse what they should; a NAR whose
 * data is missing errors its body instead of ending short.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { openStore } from "../../src/backends/open.ts";
import { compress, type Compression } from "../../src/compress/compression.ts";
import { fromNodeMessage } from "../../src/castore/directory.ts";
import { binaryCacheHandler, type BinaryCacheServerOptions } from "../../src/http/mod.ts";
import { renderNar } from "../../src/nar/render.ts";
import { importStorePath } from "../../src/store/import.ts";
import { pathInfoToNarInfo, renderNarInfo } from "../../src/store/narinfo.ts";
import { encode as nixbase32 } from "../../src/store/nixbase32.ts";
import type { PathInfo } from "../../src/store/path_info_service.ts";
import type { StorePath } from "../../src/store/store_path.ts";

/** A store path made outside the cache under test: its NAR and what a narinfo for it says. */
interface Item {
  storePath: StorePath;
  hash: string;
  nar: Uint8Array;
  info: PathInfo;
  /** The narinfo Nix would PUT for the NAR at `url`. */
  narinfo(url: string, compression: Compression): string;
}

async function makeItem(name: string, fill: (dir: string) => Promise<void>): Promise<Item> {
  const dir = await Deno.makeTempDir({ prefix: "nixcas-handler-" });
  const src = await openStore("memory://");
  try {
    await fill(`${dir}/${name}`);
    const { storePath, pathInfo: info } = await importStorePath(`${dir}/${name}`, src);
    const parts: Uint8Array<ArrayBuffer>[] = [];
    for await (const c of renderNar(fromNodeMessage(info.node), src.blobs, src.directories)) {
      parts.push(c.slice());
    }
    const nar = new Uint8Array(await new Blob(parts).arrayBuffer());
    return {
      storePath,
      hash: storePath.toString().slice(0, 32),
      nar,
      info,
      narinfo: (url, compression) => renderNarInfo(pathInfoToNarInfo(info, { url, compression })),
    };
  } finally {
    await src.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const bigItem = () =>
  makeItem("big", async (p) => {
    await Deno.mkdir(p);
    const data = new Uint8Array(3 << 20);
    for (let o = 0; o < data.length; o += 65536) {
      crypto.getRandomValues(data.subarray(o, o + 65536));
    }
    await Deno.writeFile(`${p}/data.bin`, data);
    await Deno.writeTextFile(`${p}/small`, "small\n");
    await Deno.symlink("small", `${p}/link`);
  });

const smallItem = (text: string) => makeItem("small.txt", (p) => Deno.writeTextFile(p, text));

async function compressed(kind: Compression, data: Uint8Array): Promise<Uint8Array> {
  return await new Response(compress(kind, new Blob([data.slice()]).stream(), { level: 1 }))
    .bytes();
}

const SUFFIX: Record<Compression, string> = { none: "", xz: ".xz", zstd: ".zst", bzip2: ".bz2" };
const narUrl = (data: Uint8Array, kind: Compression) =>
  `nar/${nixbase32(createHash("sha256").update(data).digest())}.nar${SUFFIX[kind]}`;

type Handler = (req: Request) => Promise<Response>;

async function withCache(
  fn: (h: Handler, store: Awaited<ReturnType<typeof openStore>>) => Promise<void>,
  options: Partial<BinaryCacheServerOptions> = {},
): Promise<void> {
  const store = await openStore("memory://");
  try {
    await fn(binaryCacheHandler({ ...store, ...options }), store);
  } finally {
    await store.close();
  }
}

const req = (
  method: string,
  path: string,
  body?: string | Uint8Array,
  headers: Record<string, string> = {},
) =>
  new Request(`http://cache${path}`, {
    method,
    body: body instanceof Uint8Array ? body.slice() : body,
    headers,
  });

/** A request's status and body as text (the body is always read, so nothing leaks). */
async function call(
  h: Handler,
  r: Request,
): Promise<{ status: number; text: string; res: Response }> {
  const res = await h(r);
  return { status: res.status, text: await res.text(), res };
}

/** Uploads `item` as Nix does (NAR then narinfo), compressed as `kind`. */
async function push(h: Handler, item: Item, kind: Compression = "none"): Promise<void> {
  const file = await compressed(kind, item.nar);
  const url = narUrl(file, kind);
  const put = await call(h, req("PUT", `/${url}`, file));
  assert.equal(put.status, 200, put.text);
  const ni = await call(h, req("PUT", `/${item.hash}.narinfo`, item.narinfo(url, kind)));
  assert.equal(ni.status, 200, ni.text);
}

async function count(store: { pathInfos: { list(): AsyncIterable<unknown> } }): Promise<number> {
  let n = 0;
  for await (const _ of store.pathInfos.list()) n++;
  return n;
}

Deno.test("serve handler: nix-cache-info, narinfo, NAR, .ls; HEAD is GET without a body", async () => {
  const item = await bigItem();
  await withCache(async (h) => {
    const info = await call(h, req("GET", "/nix-cache-info"));
    assert.equal(info.status, 200);
    assert.equal(info.text, "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n");
    assert.equal(info.res.headers.get("content-type"), "text/x-nix-cache-info");

    await push(h, item, "xz");
    const get = await call(h, req("GET", `/${item.hash}.narinfo`));
    assert.equal(get.status, 200);
    assert.equal(get.res.headers.get("content-type"), "text/x-nix-narinfo");
    assert.match(get.text, new RegExp(`^StorePath: ${item.storePath.absolute}\n`));
    assert.match(get.text, /\nCompression: none\n/);
    assert.match(get.text, new RegExp(`\nNarSize: ${item.nar.length}\n`));
    const head = await call(h, req("HEAD", `/${item.hash}.narinfo`));
    assert.equal(head.status, 200);
    assert.equal(head.text, "");
    assert.equal(head.res.headers.get("content-type"), "text/x-nix-narinfo");

    const url = /^URL: (.*)$/m.exec(get.text)![1];
    const nar = await h(req("GET", `/${url}`));
    assert.equal(nar.status, 200);
    assert.equal(nar.headers.get("content-length"), String(item.nar.length));
    assert.equal(nar.headers.get("accept-ranges"), "bytes");
    assert.deepEqual(await nar.bytes(), item.nar);
    const narHead = await call(h, req("HEAD", `/${url}`));
    assert.equal(narHead.status, 200);
    assert.equal(narHead.text, "");
    assert.equal(narHead.res.headers.get("content-length"), String(item.nar.length));

    const ls = await call(h, req("GET", `/${item.hash}.ls`));
    assert.equal(ls.status, 200);
    const listing = JSON.parse(ls.text);
    assert.equal(listing.version, 1);
    const data = listing.root.entries["data.bin"];
    assert.deepEqual([data.type, data.size], ["regular", 3 << 20]);
    // narOffset points at the file's bytes inside the NAR.
    const original = item.nar.subarray(data.narOffset, data.narOffset + 16);
    const fromRange = await h(
      req("GET", `/${url}`, undefined, { range: `bytes=${data.narOffset}-${data.narOffset + 15}` }),
    );
    assert.equal(fromRange.status, 206);
    assert.deepEqual(await fromRange.bytes(), original);
    assert.deepEqual(listing.root.entries.link, { type: "symlink", target: "small" });
  });
});

Deno.test("serve handler: absent paths are 404, unknown routes 404, other methods 405", async () => {
  await withCache(async (h) => {
    const absent = "0".repeat(32);
    for (const path of [`/${absent}.narinfo`, `/nar/${absent}.nar`, `/${absent}.ls`]) {
      for (const method of ["GET", "HEAD"]) {
        assert.equal((await call(h, req(method, path))).status, 404, `${method} ${path}`);
      }
    }
    assert.equal((await call(h, req("GET", `/nar/${"1".repeat(52)}.nar.xz`))).status, 404);
    for (
      const path of ["/", "/foo", "/nar/", "/nar/x.nar", "/abc.narinfo", `/${absent}.narinfo/x`]
    ) {
      assert.equal((await call(h, req("GET", path))).status, 404, path);
    }
    const put = await call(h, req("PUT", "/foo", "x"));
    assert.equal(put.status, 404);
    for (const method of ["POST", "DELETE", "PATCH", "OPTIONS"]) {
      const r = await call(
        h,
        req(method, "/nix-cache-info", method === "OPTIONS" ? undefined : "x"),
      );
      assert.equal(r.status, 405, method);
      assert.match(r.res.headers.get("allow") ?? "", /GET/);
    }
    assert.equal((await call(h, req("GET", "/health"))).status, 200);
  });
});

Deno.test("serve handler: Range requests give 206 with Content-Range, or 416", async () => {
  const item = await smallItem("0123456789".repeat(50));
  await withCache(async (h) => {
    await push(h, item);
    const url = `/nar/${item.hash}.nar`;
    const size = item.nar.length;
    const cases: [string, number, number][] = [
      ["bytes=0-9", 0, 9],
      ["bytes=100-", 100, size - 1],
      ["bytes=-20", size - 20, size - 1],
      [`bytes=10-${size + 100}`, 10, size - 1], // clipped to the end
      [`bytes=${size - 1}-${size - 1}`, size - 1, size - 1],
    ];
    for (const [range, start, end] of cases) {
      const res = await h(req("GET", url, undefined, { range }));
      assert.equal(res.status, 206, range);
      assert.equal(res.headers.get("content-range"), `bytes ${start}-${end}/${size}`, range);
      assert.equal(res.headers.get("content-length"), String(end - start + 1), range);
      assert.deepEqual(await res.bytes(), item.nar.subarray(start, end + 1), range);
      const head = await call(h, req("HEAD", url, undefined, { range }));
      assert.equal(head.status, 206);
      assert.equal(head.text, "");
    }
    for (const range of [`bytes=${size}-`, `bytes=${size + 5}-${size + 9}`, "bytes=9-3"]) {
      const res = await call(h, req("GET", url, undefined, { range }));
      assert.equal(res.status, 416, range);
      assert.equal(res.res.headers.get("content-range"), `bytes */${size}`);
    }
    // What is not one byte range is ignored: the whole NAR.
    for (const range of ["bytes=0-1,5-6", "items=0-1", "bytes=-"]) {
      const res = await h(req("GET", url, undefined, { range }));
      assert.equal(res.status, 200, range);
      assert.deepEqual(await res.bytes(), item.nar);
    }
  });
});

Deno.test("serve handler: each compression is ingested and served back as the same NAR", async () => {
  for (const kind of ["none", "xz", "zstd", "bzip2"] as const) {
    const item = await smallItem(`compressed as ${kind}\n`.repeat(1000));
    await withCache(async (h) => {
      await push(h, item, kind);
      const nar = await h(req("GET", `/nar/${item.hash}.nar`));
      assert.deepEqual(await nar.bytes(), item.nar, kind);
    });
  }
});

Deno.test("serve handler: a narinfo that does not match its NAR is 400 and registers nothing", async () => {
  const item = await bigItem();
  const other = await smallItem("another NAR\n");
  await withCache(async (h, store) => {
    const url = narUrl(item.nar, "none");
    assert.equal((await call(h, req("PUT", `/${url}`, item.nar))).status, 200);
    // The uploaded NAR is there for Nix's HEAD check before the narinfo.
    assert.equal((await call(h, req("HEAD", `/${url}`))).status, 200);
    const good = item.narinfo(url, "none");

    const wrongSize = good.replace(/^NarSize: \d+$/m, `NarSize: ${item.nar.length + 8}`);
    let r = await call(h, req("PUT", `/${item.hash}.narinfo`, wrongSize));
    assert.equal(r.status, 400);
    assert.match(r.text, new RegExp(`${item.storePath.absolute}: the NAR at ${url} has size`));

    const otherHash = /^NarHash: (.*)$/m.exec(other.narinfo("x", "none"))![1];
    const wrongHash = good.replace(/^NarHash: .*$/m, `NarHash: ${otherHash}`);
    r = await call(h, req("PUT", `/${item.hash}.narinfo`, wrongHash));
    assert.equal(r.status, 400);
    assert.match(r.text, /the narinfo says/);

    // Another path's narinfo for this NAR.
    r = await call(h, req("PUT", `/${other.hash}.narinfo`, good));
    assert.equal(r.status, 400);
    assert.match(
      r.text,
      new RegExp(`${other.hash}\\.narinfo describes ${item.storePath.absolute}`),
    );

    // A narinfo whose NAR was never uploaded.
    r = await call(h, req("PUT", `/${other.hash}.narinfo`, other.narinfo("nar/none.nar", "none")));
    assert.equal(r.status, 400);
    assert.match(r.text, /was not uploaded/);

    // A reference that is not in the cache.
    const missing = "1b9p07z77phvv2hf6gm9f28syp39f1ag-dep";
    const withRef = good.replace(/^References: .*$/m, `References: ${missing}`);
    r = await call(h, req("PUT", `/${item.hash}.narinfo`, withRef));
    assert.equal(r.status, 400);
    assert.match(r.text, new RegExp(`its reference /nix/store/${missing} is not in this cache`));

    for (
      const bad of [
        "garbage",
        "StorePath: /nix/store/x\n",
        good.replace(/\n$/, ""), // no final newline
        good.replace(/^NarHash: .*\n/m, ""), // a required field missing
        good.replace(/^NarSize: .*$/m, "NarSize: 0"),
        good + "NarSize: 1\n", // a field twice
      ]
    ) {
      r = await call(h, req("PUT", `/${item.hash}.narinfo`, bad));
      assert.equal(r.status, 400, JSON.stringify(bad.slice(0, 60)));
      assert.match(r.text, /narinfo/);
    }
    assert.equal(await count(store), 0);
    assert.equal((await call(h, req("GET", `/${item.hash}.narinfo`))).status, 404);

    // The right narinfo still works after all that.
    r = await call(h, req("PUT", `/${item.hash}.narinfo`, good));
    assert.equal(r.status, 200, r.text);
    assert.equal(await count(store), 1);
  });
});

Deno.test("serve handler: a corrupt or truncated upload is 400 and registers nothing", async () => {
  const item = await bigItem();
  await withCache(async (h, store) => {
    const xz = await compressed("xz", item.nar);
    const cases: [string, Compression, Uint8Array][] = [
      ["garbage as xz", "xz", new TextEncoder().encode("this is not xz at all")],
      ["xz cut short", "xz", xz.subarray(0, xz.length - 100)],
      ["xz with a flipped byte", "xz", xz.map((b, i) => i === xz.length >> 1 ? b ^ 0xff : b)],
      ["NAR cut short", "none", item.nar.subarray(0, item.nar.length - 64)],
      ["NAR with trailing bytes", "none", new Uint8Array([...item.nar, 0, 0, 0, 0, 0, 0, 0, 0])],
      ["zstd garbage", "zstd", new Uint8Array(1000).fill(1)],
    ];
    for (const [what, kind, bytes] of cases) {
      const url = narUrl(bytes, kind);
      const put = await call(h, req("PUT", `/${url}`, bytes));
      assert.equal(put.status, 400, `${what}: ${put.text}`);
      assert.equal((await call(h, req("HEAD", `/${url}`))).status, 404, what);
      const ni = await call(h, req("PUT", `/${item.hash}.narinfo`, item.narinfo(url, kind)));
      assert.equal(ni.status, 400, what);
      assert.match(ni.text, /was not uploaded/, what);
    }
    assert.equal(await count(store), 0);
  });
});

Deno.test("serve handler: references must be there first; a re-put with the same NAR is fine", async () => {
  const dep = await smallItem("the dependency\n");
  const top = await smallItem("depends on it\n");
  await withCache(async (h, store) => {
    const url = narUrl(top.nar, "none");
    assert.equal((await call(h, req("PUT", `/${url}`, top.nar))).status, 200);
    const withRef = top.narinfo(url, "none").replace(
      /^References: .*$/m,
      `References: ${dep.storePath} ${top.storePath}`, // a self-reference is allowed
    );
    let r = await call(h, req("PUT", `/${top.hash}.narinfo`, withRef));
    assert.equal(r.status, 400);
    await push(h, dep);
    r = await call(h, req("PUT", `/${top.hash}.narinfo`, withRef));
    assert.equal(r.status, 200, r.text);
    const served = await call(h, req("GET", `/${top.hash}.narinfo`));
    assert.match(served.text, new RegExp(`^References: .*${dep.storePath}`, "m"));
    // The same narinfo again (the upload is consumed; the path is known): accepted, no change.
    r = await call(h, req("PUT", `/${top.hash}.narinfo`, withRef));
    assert.equal(r.status, 200, r.text);
    assert.equal(await count(store), 2);
    // Another NAR for a stored path: store paths are immutable, 409 (not a 5xx Nix retries).
    const otherHash = /^NarHash: (.*)$/m.exec(dep.narinfo("x", "none"))![1];
    const changed = withRef.replace(/^NarHash: .*$/m, `NarHash: ${otherHash}`)
      .replace(/^URL: .*$/m, "URL: nar/never-uploaded.nar");
    r = await call(h, req("PUT", `/${top.hash}.narinfo`, changed));
    assert.equal(r.status, 409, r.text);
    assert.match(r.text, new RegExp(top.storePath.absolute));
    const still = await call(h, req("GET", `/${top.hash}.narinfo`));
    assert.equal(/^NarHash: (.*)$/m.exec(still.text)![1], /^NarHash: (.*)$/m.exec(withRef)![1]);
  });
});

Deno.test("serve handler: two paths with one NAR, pushed interleaved as parallel Nix copies do", async () => {
  // `nix-store --add f` and `--add-fixed sha256 f` (or one file under two names) share a NAR:
  // Nix copies them in parallel, each HEADs the NAR URL, uploads it if absent, puts its narinfo.
  const a = await makeItem("a.txt", (p) => Deno.writeTextFile(p, "same bytes\n"));
  const b = await makeItem("b.txt", (p) => Deno.writeTextFile(p, "same bytes\n"));
  assert.deepEqual(a.nar, b.nar);
  await withCache(async (h, store) => {
    const file = await compressed("xz", a.nar);
    const url = narUrl(file, "xz");
    assert.equal((await call(h, req("HEAD", `/${url}`))).status, 404); // a: absent
    assert.equal((await call(h, req("PUT", `/${url}`, file))).status, 200); // a uploads
    assert.equal((await call(h, req("HEAD", `/${url}`))).status, 200); // b: there, no upload
    let r = await call(h, req("PUT", `/${a.hash}.narinfo`, a.narinfo(url, "xz")));
    assert.equal(r.status, 200, r.text);
    r = await call(h, req("PUT", `/${b.hash}.narinfo`, b.narinfo(url, "xz")));
    assert.equal(r.status, 200, r.text);
    assert.equal(await count(store), 2);
    for (const item of [a, b]) {
      const nar = await h(req("GET", `/nar/${item.hash}.nar`));
      assert.deepEqual(await nar.bytes(), item.nar);
    }
  });
});

Deno.test("serve handler: tokens, read-only, authenticated reads", async () => {
  const item = await smallItem("secret\n");
  const bearer = { authorization: "Bearer s3cret" };
  const basic = { authorization: `Basic ${btoa("x:s3cret")}` };
  await withCache(async (h) => {
    const url = narUrl(item.nar, "none");
    let r = await call(h, req("PUT", `/${url}`, item.nar));
    assert.equal(r.status, 401);
    assert.match(r.res.headers.get("www-authenticate") ?? "", /^Basic/);
    r = await call(h, req("PUT", `/${url}`, item.nar, { authorization: "Bearer wrong" }));
    assert.equal(r.status, 401);
    r = await call(
      h,
      req("PUT", `/${url}`, item.nar, { authorization: `Basic ${btoa("x:wrong")}` }),
    );
    assert.equal(r.status, 401);
    r = await call(h, req("PUT", `/${url}`, item.nar, bearer));
    assert.equal(r.status, 200, r.text);
    r = await call(h, req("PUT", `/${item.hash}.narinfo`, item.narinfo(url, "none"), basic));
    assert.equal(r.status, 200, r.text);
    // Reads are public without authenticateReads.
    assert.equal((await call(h, req("GET", `/${item.hash}.narinfo`))).status, 200);
  }, { authTokens: ["other", "s3cret"] });

  await withCache(async (h) => {
    for (
      const [path, body] of [[`/${narUrl(item.nar, "none")}`, item.nar], ["/nix-cache-info", "x"]]
    ) {
      const r = await call(h, req("PUT", path as string, body, bearer));
      assert.equal(r.status, 403, String(path));
    }
    assert.equal((await call(h, req("GET", "/nix-cache-info"))).status, 200);
  }, { authTokens: ["s3cret"], readOnly: true });

  await withCache(async (h) => {
    const absent = `/${"0".repeat(32)}.narinfo`;
    for (const path of ["/nix-cache-info", absent, `/nar/${"0".repeat(32)}.nar`]) {
      assert.equal((await call(h, req("GET", path))).status, 401, path);
      assert.equal((await call(h, req("HEAD", path))).status, 401, path);
    }
    assert.equal((await call(h, req("GET", "/health"))).status, 200);
    assert.equal((await call(h, req("GET", "/nix-cache-info", undefined, basic))).status, 200);
    assert.equal((await call(h, req("GET", absent, undefined, bearer))).status, 404);
  }, { authTokens: ["s3cret"], authenticateReads: true });
});

Deno.test("serve handler: build logs are kept and served; without a log dir, refused", async () => {
  const logDir = await Deno.makeTempDir({ prefix: "nixcas-logs-" });
  const name = "/log/1b9p07z77phvv2hf6gm9f28syp39f1ag-hello.drv";
  try {
    await withCache(async (h) => {
      assert.equal((await call(h, req("GET", name))).status, 404);
      assert.equal((await call(h, req("PUT", name, "building hello\n"))).status, 200);
      const r = await call(h, req("GET", name));
      assert.deepEqual([r.status, r.text], [200, "building hello\n"]);
      assert.equal((await call(h, req("GET", "/log/../../etc/passwd"))).status, 404);
    }, { logDir });
    await withCache(async (h) => {
      assert.equal((await call(h, req("PUT", name, "x"))).status, 403);
    });
  } finally {
    await Deno.remove(logDir, { recursive: true });
  }
});

Deno.test("serve handler: a NAR whose data is missing errors the body, not a short success", async () => {
  const item = await bigItem();
  const store = await openStore("memory://");
  try {
    await push(binaryCacheHandler(store), item);
    // The same store, but every blob has vanished since the path was put.
    const blobs = new Proxy(store.blobs, {
      get: (target, key) =>
        key === "openRead" ? () => Promise.resolve(null) : Reflect.get(target, key, target),
    });
    const errors: string[] = [];
    const h = binaryCacheHandler({ ...store, blobs, onError: (m) => errors.push(m) });
    const url = `/nar/${item.hash}.nar`;
    for (const headers of [{}, { range: "bytes=100-" }] as Record<string, string>[]) {
      const res = await h(req("GET", url, undefined, headers));
      // The status went out before the data was found missing: the body must error.
      assert.ok(res.status === 200 || res.status === 206);
      await assert.rejects(res.bytes());
    }
    assert.equal(errors.length, 2);
    assert.match(errors[0], new RegExp(`GET ${url}: `));
  } finally {
    await store.close();
  }
});
