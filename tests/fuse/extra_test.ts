// Beyond the seed: byte names, concurrency, a slow blob, diff -r against a source tree, the
// fusermount3 path, external unmounts, and the store path name parser.
import assert from "node:assert/strict";
import type { BlobReader, BlobService } from "../../src/castore/blob_service.ts";
import { putBlob } from "../../src/castore/blob_util.ts";
import { type AnyNode, directoryNodeFor, makeDirectory } from "../../src/castore/directory.ts";
import { compareBytes } from "../../src/base/bytes.ts";
import type { DirectoryService } from "../../src/castore/directory_service.ts";
import { type B3Digest, blake3 } from "../../src/castore/digest.ts";
import { mountStore } from "../../src/fuse/mod.ts";
import {
  b,
  BLOB_A,
  BLOB_A_NAME,
  fileNode,
  genSvcs,
  HAVE_FUSE,
  pathInfo,
  pattern,
  populate,
  run,
  type Services,
  unmountOrDetach,
  withMount,
} from "./helpers.ts";

const STORE_DIR_NAME = "7777777777777777777777777777777a-tree";

/** Imports a directory tree (UTF-8 names) into the services; a stand-in for the importer. */
async function importTree(s: Services, path: string, name: Uint8Array): Promise<AnyNode> {
  const st = await Deno.lstat(path);
  if (st.isSymlink) {
    return {
      case: "symlink",
      value: {
        $typeName: "tvix.castore.v1.SymlinkNode",
        name,
        target: b(await Deno.readLink(path)),
      },
    };
  }
  if (st.isFile) {
    const data = await Deno.readFile(path);
    await putBlob(s.blobs, data);
    return fileNode(name, data, (st.mode! & 0o100) !== 0);
  }
  const children: AnyNode[] = [];
  for await (const e of Deno.readDir(path)) {
    children.push(await importTree(s, `${path}/${e.name}`, b(e.name)));
  }
  children.sort((x, y) => compareBytes(x.value.name, y.value.name));
  const dir = makeDirectory(
    {
      directories: children.filter((c) => c.case === "directory").map((c) => c.value),
      files: children.filter((c) => c.case === "file").map((c) => c.value),
      symlinks: children.filter((c) => c.case === "symlink").map((c) => c.value),
    } as Parameters<typeof makeDirectory>[0],
  );
  await s.directories.put(dir);
  return { case: "directory", value: directoryNodeFor(name, dir) };
}

Deno.test({
  name: "diff -r of a mounted store path against its source",
  ignore: !HAVE_FUSE,
  fn: async () => {
    const src = await Deno.makeTempDir({ prefix: "nixcas-fuse-src-" });
    try {
      await Deno.writeFile(`${src}/empty`, new Uint8Array(0));
      await Deno.writeFile(`${src}/big.bin`, pattern(3 * 1024 * 1024 + 5, 11));
      await Deno.writeTextFile(`${src}/run.sh`, "#!/bin/sh\necho hi\n", { mode: 0o755 });
      await Deno.mkdir(`${src}/a/b/c`, { recursive: true });
      await Deno.mkdir(`${src}/emptydir`);
      await Deno.writeTextFile(`${src}/a/b/c/deep.txt`, "deep\n");
      await Deno.symlink("../run.sh", `${src}/a/rel-link`);
      await Deno.symlink("/nix/store/dangling", `${src}/abs-link`);
      // Enough entries that a listing takes several READDIR(PLUS) round trips.
      await Deno.mkdir(`${src}/many`);
      for (let i = 0; i < 300; i++) {
        await Deno.writeTextFile(
          `${src}/many/file-with-a-longish-name-${i}`,
          `${i}\n`.repeat(i % 7),
        );
      }
      const s = genSvcs();
      const root = await importTree(s, src, b(STORE_DIR_NAME));
      await s.pathInfos.put(pathInfo(root));
      await withMount(s, async (mnt) => {
        const p = `${mnt}/${STORE_DIR_NAME}`;
        const out = await new Deno.Command("diff", { args: ["-r", "--no-dereference", src, p] })
          .output();
        assert.equal(new TextDecoder().decode(out.stdout), "");
        assert.ok(out.success, "diff -r is empty");
        assert.equal((await Deno.stat(`${p}/run.sh`)).mode! & 0o777, 0o555);
        assert.equal((await Deno.stat(`${p}/big.bin`)).mode! & 0o777, 0o444);
        const listed = new TextDecoder().decode(await run("ls", ["-f", `${p}/many`]));
        assert.equal(listed.trim().split("\n").length, 302, "300 entries plus . and ..");
      });
    } finally {
      await Deno.remove(src, { recursive: true });
    }
  },
});

Deno.test({
  name: "names that are not UTF-8",
  ignore: !HAVE_FUSE,
  fn: async () => {
    const s = genSvcs();
    const names = [
      new Uint8Array([0x63, 0x61, 0x66, 0xe9]), // "caf\xe9" (latin1)
      new Uint8Array([0xff, 0xfe, 0x41]),
      b("plain"),
      new Uint8Array([0x80]),
    ].sort(compareBytes);
    const contents = names.map((_, i) => b(`content ${i}\n`));
    for (const c of contents) await putBlob(s.blobs, c);
    const dir = makeDirectory({
      files: names.map((n, i) => fileNode(n, contents[i]).value) as never,
    });
    await s.directories.put(dir);
    await s.pathInfos.put(
      pathInfo({ case: "directory", value: directoryNodeFor(b(STORE_DIR_NAME), dir) }),
    );
    await withMount(s, async (mnt) => {
      const p = `${mnt}/${STORE_DIR_NAME}`;
      // find(1) prints raw bytes, in readdir order (name order).
      const listed = await run("find", [p, "-mindepth", "1", "-printf", "%f\\0"]);
      const expect = names.flatMap((n) => [...n, 0]);
      assert.deepEqual([...listed], expect);
      // Look each name up by its bytes and read it: concatenated contents in name order.
      const cat = await run("sh", [
        "-c",
        `find "$1" -mindepth 1 -type f -print0 | xargs -0 cat`,
        "sh",
        p,
      ]);
      assert.equal(
        new TextDecoder().decode(cat),
        contents.map((c) => new TextDecoder().decode(c)).join(""),
      );
      // A byte name in the root is not a store path.
      const r = await new Deno.Command("sh", {
        args: ["-c", `stat "$1/$(printf '\\377')"`, "sh", mnt],
        stderr: "piped",
      }).output();
      assert.ok(!r.success);
      assert.match(new TextDecoder().decode(r.stderr), /No such file/);
    });
  },
});

Deno.test({
  name: "concurrent readers at any offset get every byte right",
  ignore: !HAVE_FUSE,
  fn: async () => {
    const s = genSvcs();
    const files = [0, 1, 2, 3].map((i) => pattern(4 * 1024 * 1024 + 1000 * i + 1, 100 + i));
    const names = files.map((_, i) => `${"8".repeat(31)}${i}-file`);
    for (const [i, data] of files.entries()) {
      await putBlob(s.blobs, data);
      await s.pathInfos.put(pathInfo(fileNode(names[i], data)));
    }
    await withMount(s, async (mnt) => {
      const readAll = async (i: number, chunk: number) => {
        using f = await Deno.open(`${mnt}/${names[i]}`);
        const want = files[i];
        const buf = new Uint8Array(chunk);
        let pos = 0;
        while (true) {
          const n = await f.read(buf);
          if (n === null) break;
          for (let k = 0; k < n; k++) {
            if (buf[k] !== want[pos + k]) throw new Error(`file ${i} byte ${pos + k} differs`);
          }
          pos += n;
        }
        assert.equal(pos, want.length);
      };
      const readRandom = async (i: number, seed: number) => {
        using f = await Deno.open(`${mnt}/${names[i]}`);
        const want = files[i];
        const rnd = pattern(64 * 4, seed);
        const dv = new DataView(rnd.buffer);
        for (let k = 0; k < 64; k++) {
          const off = dv.getUint32(k * 4, true) % (want.length + 10);
          const len = 1 + (off % 200_000);
          await f.seek(off, Deno.SeekMode.Start);
          const buf = new Uint8Array(len);
          let got = 0;
          while (got < len) {
            const n = await f.read(buf.subarray(got));
            if (n === null) break;
            got += n;
          }
          assert.equal(got, Math.max(0, Math.min(len, want.length - off)), `length at ${off}`);
          for (let j = 0; j < got; j++) {
            if (buf[j] !== want[off + j]) throw new Error(`file ${i} byte ${off + j} differs`);
          }
        }
      };
      await Promise.all([
        ...files.map((_, i) => readAll(i, 65536 + 7 * i)),
        ...files.map((_, i) => readRandom(i, 9 + i)),
        readAll(0, 1 << 20),
        readAll(3, 4097),
      ]);
    });
  },
});

/** Blobs whose reads wait on a gate: a stand-in for a slow remote. */
class GatedBlobs implements BlobService {
  gate: Promise<void>;
  open!: () => void;
  constructor(readonly inner: BlobService, readonly slow: B3Digest) {
    this.gate = new Promise((r) => this.open = r);
  }
  has(d: B3Digest) {
    return this.inner.has(d);
  }
  async openRead(d: B3Digest): Promise<BlobReader | null> {
    const r = await this.inner.openRead(d);
    if (!r || !d.equals(this.slow)) return r;
    return {
      readAt: async (o, l) => {
        await this.gate;
        return r.readAt(o, l);
      },
      // The mount verifies what it serves, reading through chunks() too.
      chunks: async function* (this: GatedBlobs, o?: number) {
        await this.gate;
        yield* r.chunks(o);
      }.bind(this),
      close: () => r.close(),
    };
  }
  openWrite() {
    return this.inner.openWrite();
  }
  close() {
    return this.inner.close();
  }
}

Deno.test({
  name: "a slow blob does not stall other readers",
  ignore: !HAVE_FUSE,
  fn: async () => {
    const s = genSvcs();
    await populate.blobA(s);
    const slowData = pattern(100_000, 5);
    const slowName = `${"9".repeat(32)}-slow`;
    await putBlob(s.blobs, slowData);
    await s.pathInfos.put(pathInfo(fileNode(slowName, slowData)));
    const gated = new GatedBlobs(
      s.blobs,
      blake3(slowData),
    );
    await withMount({ ...s, blobs: gated }, async (mnt) => {
      let slowDone = false;
      const slow = Deno.readFile(`${mnt}/${slowName}`).then((d) => {
        slowDone = true;
        return d;
      });
      await new Promise((r) => setTimeout(r, 50));
      for (let i = 0; i < 5; i++) {
        assert.deepEqual(await Deno.readFile(`${mnt}/${BLOB_A_NAME}`), BLOB_A);
        assert.ok((await Deno.stat(mnt)).isDirectory);
      }
      assert.equal(slowDone, false, "the slow read is still waiting");
      gated.open();
      assert.deepEqual(await slow, slowData);
    });
  },
});

Deno.test({
  name: "mount through fusermount3 (fd passed over a unix socket)",
  ignore: !HAVE_FUSE,
  fn: async () => {
    const s = genSvcs();
    await populate.blobA(s);
    await withMount(s, async (mnt) => {
      const line = Deno.readTextFileSync("/proc/self/mountinfo").split("\n")
        .find((l) => l.includes(` ${mnt} `));
      assert.ok(line?.includes("fuse.nixcas"), line);
      assert.deepEqual(await Deno.readFile(`${mnt}/${BLOB_A_NAME}`), BLOB_A);
    }, { method: "fusermount" });
  },
});

Deno.test({
  name: "an external umount ends serving",
  ignore: !HAVE_FUSE,
  fn: async () => {
    const s = genSvcs();
    await populate.blobA(s);
    const dir = await Deno.makeTempDir({ prefix: "nixcas-fuse-" });
    const h = await mountStore({ ...s, mountpoint: dir });
    try {
      assert.deepEqual(await Deno.readFile(`${dir}/${BLOB_A_NAME}`), BLOB_A);
      await run("umount", [dir]);
      await h.unmounted;
    } finally {
      await unmountOrDetach(h, dir);
      await Deno.remove(dir);
    }
  },
});

Deno.test({
  name: "a missing mountpoint is a clear error",
  ignore: !HAVE_FUSE,
  fn: async () => {
    const s: { blobs: BlobService; directories: DirectoryService } & Services = genSvcs();
    await assert.rejects(
      mountStore({ ...s, mountpoint: "/nonexistent/nixcas-mnt" }),
      /mountpoint \/nonexistent\/nixcas-mnt does not exist/,
    );
  },
});
