import assert from "node:assert/strict";
import { B3Digest } from "../../src/castore/digest.ts";
import {
  type AnyNode,
  type Directory,
  directoryDigest,
  type DirectoryNode,
  directorySize,
  type FileNode,
  makeDirectory,
  type SymlinkNode,
} from "../../src/castore/directory.ts";
import { InvalidRequestError } from "../../src/base/errors.ts";
import type { BlobService, BlobWriter, SmallBlobPut } from "../../src/castore/blob_service.ts";
import { CHUNK_SIZE } from "../../src/castore/blob_service.ts";
import { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import { readBlob } from "../../src/castore/blob_util.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import type { DirectoryPutter, DirectoryService } from "../../src/castore/directory_service.ts";
import {
  importPath,
  UnsupportedFileTypeError,
  walk,
  type WalkEntry,
} from "../../src/castore/import/mod.ts";
import * as libc from "../../src/sys/libc.ts";
import { calculateNar, NarImportObserver } from "../../src/nar/hash.ts";

const enc = new TextEncoder();
const b = (s: string) => enc.encode(s);
const hex = (s: string) => B3Digest.parse(s).bytes;

/** BLAKE3 of `data` computed by the native `b3sum` (independent of our hash-wasm path). */
async function b3sum(data: Uint8Array): Promise<Uint8Array> {
  const p = new Deno.Command("b3sum", {
    args: ["--no-names", "-"],
    stdin: "piped",
    stdout: "piped",
  })
    .spawn();
  const w = p.stdin.getWriter();
  await w.write(data);
  await w.close();
  const out = await p.output();
  assert.ok(out.success);
  return hex(new TextDecoder().decode(out.stdout).trim());
}

/** Runs `fn` with a fresh temp dir (bytes + open fd); removes it afterwards. */
async function withTempDir<T>(fn: (dir: Uint8Array, fd: number) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "nixcas-import-" });
  const fd = libc.openDirAt(libc.AT_FDCWD, b(dir));
  try {
    return await fn(b(dir), fd);
  } finally {
    libc.close(fd);
    await Deno.remove(dir, { recursive: true });
  }
}

/** Records what happens to blob writers: each must end closed or aborted. */
class SpyBlobs implements BlobService {
  inner = new MemoryBlobService();
  opened = 0;
  closed = 0;
  aborted = 0;
  maxChunk = 0;
  has = (d: B3Digest) => this.inner.has(d);
  openRead = (d: B3Digest) => this.inner.openRead(d);
  close = () => this.inner.close();
  async openWrite(): Promise<BlobWriter> {
    const w = await this.inner.openWrite();
    this.opened++;
    return {
      write: (data) => {
        this.maxChunk = Math.max(this.maxChunk, data.length);
        return w.write(data);
      },
      close: async () => {
        const d = await w.close();
        this.closed++;
        return d;
      },
      abort: async () => {
        await w.abort();
        this.aborted++;
      },
    };
  }
}

/** Records every put and whether the putter was closed. */
class SpyDirectories implements DirectoryService {
  inner = new MemoryDirectoryService();
  puts: Directory[] = [];
  putterCloses = 0;
  get = (d: B3Digest) => this.inner.get(d);
  put = (d: Directory) => this.inner.put(d);
  getRecursive = (d: B3Digest) => this.inner.getRecursive(d);
  close = () => this.inner.close();
  putMultipleStart(): DirectoryPutter {
    const p = this.inner.putMultipleStart();
    return {
      put: (d) => {
        this.puts.push(d);
        return p.put(d);
      },
      close: () => {
        this.putterCloses++;
        return p.close();
      },
    };
  }
}

const fileNode = (
  name: string | Uint8Array,
  digest: Uint8Array,
  size: number,
  executable = false,
) =>
  ({
    $typeName: "tvix.castore.v1.FileNode",
    name: typeof name === "string" ? b(name) : name,
    digest,
    size,
    executable,
  }) as FileNode;
const symlinkNode = (name: string | Uint8Array, target: string | Uint8Array) =>
  ({
    $typeName: "tvix.castore.v1.SymlinkNode",
    name: typeof name === "string" ? b(name) : name,
    target: typeof target === "string" ? b(target) : target,
  }) as SymlinkNode;
const dirNode = (name: string | Uint8Array, dir: Directory) =>
  ({
    $typeName: "tvix.castore.v1.DirectoryNode",
    name: typeof name === "string" ? b(name) : name,
    digest: directoryDigest(dir).bytes,
    size: directorySize(dir),
  }) as DirectoryNode;

const EMPTY_BLOB = hex("af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
const HELLO = b("Hello World!");

Deno.test("a single file becomes a file node named after the path", async () => {
  await withTempDir(async (dir, fd) => {
    libc.createFileAt(fd, b("root"), HELLO, 0o644);
    const blobs = new SpyBlobs();
    const dirs = new SpyDirectories();
    const node = await importPath(libc.joinPath(dir, b("root")), blobs, dirs);
    assert.deepEqual(node, { case: "file", value: fileNode("root", await b3sum(HELLO), 12) });
    assert.ok(await blobs.has(B3Digest.fromBytes(await b3sum(HELLO))));
    assert.equal(dirs.puts.length, 0);
    assert.equal(dirs.putterCloses, 0);
  });
});

Deno.test("a root symlink is imported as a symlink, dangling or not", async () => {
  await withTempDir(async (dir, fd) => {
    libc.symlinkAt(b("/nix/store/somewhereelse"), fd, b("doesntmatter"));
    const node = await importPath(
      new TextDecoder().decode(dir) + "/doesntmatter",
      new MemoryBlobService(),
      new MemoryDirectoryService(),
    );
    assert.deepEqual(node, {
      case: "symlink",
      value: symlinkNode("doesntmatter", "/nix/store/somewhereelse"),
    });
    // A symlink to a directory is not followed either.
    libc.mkdirAt(fd, b("realdir"));
    libc.symlinkAt(b("realdir"), fd, b("todir"));
    const n2 = await importPath(
      libc.joinPath(dir, b("todir")),
      new MemoryBlobService(),
      new MemoryDirectoryService(),
    );
    assert.deepEqual(n2, { case: "symlink", value: symlinkNode("todir", "realdir") });
  });
});

Deno.test("an empty directory has the BLAKE3 of the empty string as digest", async () => {
  await withTempDir(async (dir, fd) => {
    libc.mkdirAt(fd, b("empty"));
    const dirs = new SpyDirectories();
    // Trailing slashes are ignored for the name.
    const node = await importPath(libc.joinPath(dir, b("empty/")), new MemoryBlobService(), dirs);
    assert.deepEqual(node, {
      case: "directory",
      value: {
        $typeName: "tvix.castore.v1.DirectoryNode",
        name: b("empty"),
        digest: await b3sum(new Uint8Array()),
        size: 0,
      },
    });
    assert.equal(dirs.puts.length, 1);
    assert.equal(dirs.putterCloses, 1);
    assert.ok(await dirs.get(B3Digest.fromBytes(EMPTY_BLOB)));
  });
});

Deno.test("tvix's 'complicated' fixture: .keep, aa -> /nix/store/somewhereelse, keep/.keep", async () => {
  await withTempDir(async (dir, fd) => {
    libc.createFileAt(fd, b(".keep"));
    libc.symlinkAt(b("/nix/store/somewhereelse"), fd, b("aa"));
    libc.mkdirAt(fd, b("keep"));
    libc.createFileAt(fd, b("keep/.keep"));
    const withKeep = makeDirectory({ files: [fileNode(".keep", EMPTY_BLOB, 0)] });
    const complicated = makeDirectory({
      directories: [dirNode("keep", withKeep)],
      files: [fileNode(".keep", EMPTY_BLOB, 0)],
      symlinks: [symlinkNode("aa", "/nix/store/somewhereelse")],
    });
    // Independent of our encoder: the protobuf bytes of DIRECTORY_WITH_KEEP written by hand
    // (field 2 = files, FileNode{1: name, 2: digest}; size 0 and executable false omitted),
    // hashed by b3sum.
    const handEncoded = new Uint8Array([
      0x12,
      0x29,
      0x0a,
      0x05,
      ...b(".keep"),
      0x12,
      0x20,
      ...EMPTY_BLOB,
    ]);
    assert.deepEqual(directoryDigest(withKeep).bytes, await b3sum(handEncoded));
    const blobs = new SpyBlobs();
    const dirs = new SpyDirectories();
    const node = await importPath(dir, blobs, dirs);
    assert.deepEqual(node, { case: "directory", value: dirNode(libc.basename(dir), complicated) });
    assert.deepEqual(await dirs.get(directoryDigest(withKeep)), withKeep);
    assert.deepEqual(await dirs.get(directoryDigest(complicated)), complicated);
    assert.ok(await blobs.has(B3Digest.fromBytes(EMPTY_BLOB)));
    assert.deepEqual(dirs.puts, [withKeep, complicated]); // leaves first
    assert.equal(blobs.opened, 2);
    assert.equal(blobs.closed, 2);
  });
});

Deno.test("executable iff the owner-execute bit is set", async () => {
  await withTempDir(async (dir, fd) => {
    const modes: [string, number, boolean][] = [
      ["m0644", 0o644, false],
      ["m0744", 0o744, true],
      ["m0645", 0o645, false],
      ["m0700", 0o700, true],
      ["m0400", 0o400, false],
      ["m4755", 0o4755, true],
      ["m0055", 0o055, false],
    ];
    for (const [name, mode] of modes) libc.createFileAt(fd, b(name), b(name), mode);
    const node = await importPath(dir, new MemoryBlobService(), new MemoryDirectoryService());
    const expected = makeDirectory({
      files: await Promise.all(
        // ASCII names: string order is byte order.
        [...modes].sort(([p], [q]) => p < q ? -1 : 1).map(async ([name, _, x]) =>
          fileNode(name, await b3sum(b(name)), 5, x)
        ),
      ),
    });
    assert.deepEqual(node, { case: "directory", value: dirNode(libc.basename(dir), expected) });
  });
});

Deno.test("tricky names: byte-wise order across kinds, non-UTF-8 bytes kept exactly", async () => {
  await withTempDir(async (dir, fd) => {
    const ff = new Uint8Array([0x66, 0xff]);
    const fffe = new Uint8Array([0x66, 0xff, 0xfe]);
    const hi = new Uint8Array([0x80, 0x01]);
    // Created in scrambled order; kinds interleave so only a byte-wise sort per list is right.
    libc.createFileAt(fd, b("é"), b("e acute"));
    libc.mkdirAt(fd, b("a0"));
    libc.createFileAt(fd, b("a-"), b("a dash"));
    libc.symlinkAt(b("/abs/target"), fd, b("a."));
    libc.createFileAt(fd, b("B"), b("upper"));
    libc.createFileAt(fd, b("a"), b("just a"));
    libc.createFileAt(fd, fffe, b("ff fe"));
    libc.symlinkAt(new Uint8Array([0x2e, 0x2e, 0x2f, 0xfe, 0xed]), fd, ff); // dangling, raw
    libc.mkdirAt(fd, hi);
    libc.createFileAt(fd, libc.joinPath(hi, b("name-0001")), b("1"));
    libc.createFileAt(fd, libc.joinPath(hi, b("name-0002")), b("2"));
    libc.createFileAt(fd, libc.joinPath(hi, b("name-00010")), b("10"));

    const sub = makeDirectory({
      files: [
        fileNode("name-0001", await b3sum(b("1")), 1),
        fileNode("name-00010", await b3sum(b("10")), 2),
        fileNode("name-0002", await b3sum(b("2")), 1),
      ],
    });
    const empty = makeDirectory({});
    const expected = makeDirectory({
      directories: [dirNode("a0", empty), dirNode(hi, sub)],
      files: [
        fileNode("B", await b3sum(b("upper")), 5),
        fileNode("a", await b3sum(b("just a")), 6),
        fileNode("a-", await b3sum(b("a dash")), 6),
        fileNode(fffe, await b3sum(b("ff fe")), 5),
        fileNode("é", await b3sum(b("e acute")), 7),
      ],
      symlinks: [
        symlinkNode("a.", "/abs/target"),
        symlinkNode(ff, new Uint8Array([0x2e, 0x2e, 0x2f, 0xfe, 0xed])),
      ],
    });
    const dirs = new SpyDirectories();
    const node = await importPath(dir, new MemoryBlobService(), dirs);
    assert.deepEqual(node, { case: "directory", value: dirNode(libc.basename(dir), expected) });
    const stored = await dirs.get(directoryDigest(expected));
    assert.deepEqual(stored!.files[3].name, fffe);
    assert.deepEqual(stored!.directories[1].name, hi);
    assert.deepEqual(dirs.puts, [empty, sub, expected]);

    // The walker yields the same order, parent before child, with an end per directory.
    const seen = [...walk(dir)].map((e: WalkEntry) =>
      `${e.kind}:${e.depth}:${libc.displayPath(e.name)}`
    );
    const root = libc.displayPath(libc.basename(dir));
    assert.deepEqual(seen, [
      `directory:0:${root}`,
      "file:1:B",
      "file:1:a",
      "file:1:a-",
      "symlink:1:a.",
      "directory:1:a0",
      "end:1:a0",
      "symlink:1:f\\xff",
      "file:1:f\\xff\\xfe",
      "directory:1:\\x80\\x01",
      "file:2:name-0001",
      "file:2:name-00010",
      "file:2:name-0002",
      "end:1:\\x80\\x01",
      "file:1:é",
      `end:0:${root}`,
    ]);
  });
});

Deno.test("nested and identical subdirectories: each distinct directory is put once", async () => {
  await withTempDir(async (dir, fd) => {
    for (const top of ["x", "y", "z"]) {
      libc.mkdirAt(fd, b(top));
      libc.mkdirAt(fd, b(`${top}/inner`));
      libc.mkdirAt(fd, b(`${top}/inner/deeper`));
      libc.createFileAt(fd, b(`${top}/inner/deeper/f`), b("same"));
      libc.mkdirAt(fd, b(`${top}/empty`));
    }
    libc.createFileAt(fd, b("z/extra"), b("makes z different"));
    const blobs = new SpyBlobs();
    const dirs = new SpyDirectories();
    const node = await importPath(dir, blobs, dirs);
    const deeper = makeDirectory({ files: [fileNode("f", await b3sum(b("same")), 4)] });
    const inner = makeDirectory({ directories: [dirNode("deeper", deeper)] });
    const empty = makeDirectory({});
    const xy = makeDirectory({ directories: [dirNode("empty", empty), dirNode("inner", inner)] });
    const z = makeDirectory({
      directories: [dirNode("empty", empty), dirNode("inner", inner)],
      files: [fileNode("extra", await b3sum(b("makes z different")), 17)],
    });
    const root = makeDirectory({
      directories: [dirNode("x", xy), dirNode("y", xy), dirNode("z", z)],
    });
    assert.deepEqual(node, { case: "directory", value: dirNode(libc.basename(dir), root) });
    // Leaves first, each distinct digest once.
    assert.deepEqual(dirs.puts, [empty, deeper, inner, xy, z, root]);
    assert.equal(directorySize(root), 16); // (1+4) + (1+4) + (1+5)
    assert.equal(blobs.opened, 4);
  });
});

Deno.test("a FIFO is an error naming it; nothing is committed", async () => {
  await withTempDir(async (dir, fd) => {
    libc.mkdirAt(fd, b("d"));
    // Big enough files that uploads are in flight when the walk reaches the FIFO.
    const data = new Uint8Array(3 * CHUNK_SIZE + 5).fill(7);
    for (let i = 0; i < 6; i++) libc.createFileAt(fd, b(`d/a${i}`), data);
    const fifoName = new Uint8Array([0x70, 0x69, 0x70, 0x65, 0xff]);
    libc.mkfifoAt(fd, libc.joinPath(b("d"), fifoName));
    for (let i = 0; i < 3; i++) libc.createFileAt(fd, b(`d/z${i}`), data);
    const blobs = new SpyBlobs();
    const dirs = new SpyDirectories();
    const fifoPath = libc.joinPath(libc.joinPath(dir, b("d")), fifoName);
    await assert.rejects(importPath(dir, blobs, dirs), (e: unknown) => {
      assert.ok(e instanceof UnsupportedFileTypeError);
      assert.ok(e instanceof InvalidRequestError);
      assert.equal(e.kind, "fifo");
      assert.deepEqual(e.path, fifoPath);
      assert.equal(e.message, `unsupported file type (fifo): ${libc.displayPath(fifoPath)}`);
      assert.match(e.message, /\/d\/pipe\\xff$/);
      return true;
    });
    assert.equal(dirs.putterCloses, 0);
    assert.equal(blobs.opened, blobs.closed + blobs.aborted); // no writer left open
    assert.ok(blobs.opened <= 6); // nothing after the FIFO was started
    // A FIFO at the root, too.
    await assert.rejects(
      importPath(fifoPath, new MemoryBlobService(), new MemoryDirectoryService()),
      /^UnsupportedFileTypeError: unsupported file type \(fifo\): .*pipe\\xff$/,
    );
  });
});

Deno.test("a missing path is an error naming it", async () => {
  await withTempDir(async (dir) => {
    const missing = libc.joinPath(dir, b("not-here"));
    await assert.rejects(
      importPath(missing, new MemoryBlobService(), new MemoryDirectoryService()),
      (e: unknown) => {
        assert.ok(e instanceof libc.LibcError);
        assert.equal(e.code, "ENOENT");
        assert.ok(e.message.startsWith(`ENOENT: ${libc.displayPath(missing)} `));
        return true;
      },
    );
    await assert.rejects(
      importPath("/", new MemoryBlobService(), new MemoryDirectoryService()),
      /not a valid name/,
    );
  });
});

Deno.test("a failing blob service aborts the open writers and leaves the putter open", async () => {
  await withTempDir(async (dir, fd) => {
    for (let i = 0; i < 20; i++) libc.createFileAt(fd, b(`f${i}`), new Uint8Array(100_000).fill(i));
    const blobs = new SpyBlobs();
    const dirs = new SpyDirectories();
    let writes = 0;
    const failing: BlobService = {
      ...blobs,
      has: (d) => blobs.has(d),
      openRead: (d) => blobs.openRead(d),
      close: () => blobs.close(),
      openWrite: async () => {
        const w = await blobs.openWrite();
        return {
          ...w,
          write: (data) => {
            if (++writes === 5) return Promise.reject(new Error("disk full"));
            return w.write(data);
          },
        };
      },
    };
    await assert.rejects(importPath(dir, failing, dirs), /disk full/);
    assert.equal(blobs.opened, blobs.closed + blobs.aborted);
    assert.ok(blobs.aborted >= 1);
    assert.equal(dirs.putterCloses, 0);
  });
});

Deno.test("2000 files in 20 directories: same result for any concurrency", async () => {
  await withTempDir(async (dir, fd) => {
    for (let d = 0; d < 20; d++) {
      libc.mkdirAt(fd, b(`dir${d}`));
      for (let f = 0; f < 100; f++) {
        libc.createFileAt(
          fd,
          b(`dir${d}/file${f}`),
          b(`${d}/${f}`.repeat(f + 1)),
          0o644 | (f % 2) * 0o100,
        );
      }
    }
    let last = { files: 0, bytes: 0 };
    const t0 = performance.now();
    const node = await importPath(dir, new MemoryBlobService(), new MemoryDirectoryService(), {
      onProgress: (p) => (last = p),
    });
    const ms = performance.now() - t0;
    console.log(`    2000 files imported in ${ms.toFixed(0)} ms`);
    assert.equal(node.case, "directory");
    assert.equal((node.value as DirectoryNode).size, 20 + 2000);
    assert.equal(last.files, 2000);
    const serial = await importPath(dir, new MemoryBlobService(), new MemoryDirectoryService(), {
      concurrency: 1,
    });
    assert.deepEqual(serial, node);
    // Spot-check one directory against hand-built nodes hashed by b3sum.
    const dirs = new MemoryDirectoryService();
    await importPath(libc.joinPath(dir, b("dir7")), new MemoryBlobService(), dirs);
    const names = Array.from({ length: 100 }, (_, f) => f).sort((x, y) =>
      `file${x}` < `file${y}` ? -1 : 1
    );
    const files: FileNode[] = [];
    for (const f of names) {
      const content = b(`7/${f}`.repeat(f + 1));
      files.push(fileNode(`file${f}`, await b3sum(content), content.length, f % 2 === 1));
    }
    assert.ok(await dirs.get(directoryDigest(makeDirectory({ files }))));
  });
});

Deno.test("a 32 MiB file streams in chunks of at most 1 MiB and reads back equal", async () => {
  await withTempDir(async (dir, fd) => {
    const data = new Uint8Array(32 * CHUNK_SIZE + 12345);
    let x = 0x12345678;
    for (let i = 0; i < data.length; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      data[i] = x;
      data[i + 1] = x >> 8;
      data[i + 2] = x >> 16;
      data[i + 3] = x >> 24;
    }
    libc.createFileAt(fd, b("big"), data, 0o755);
    const blobs = new SpyBlobs();
    let bytes = 0;
    const t0 = performance.now();
    const node: AnyNode = await importPath(
      libc.joinPath(dir, b("big")),
      blobs,
      new MemoryDirectoryService(),
      { onProgress: (p) => (bytes = p.bytes) },
    );
    const ms = performance.now() - t0;
    console.log(`    ${(data.length / 2 ** 20 / (ms / 1000)).toFixed(0)} MiB/s`);
    const expected = fileNode("big", await b3sum(data), data.length, true);
    assert.deepEqual(node, { case: "file", value: expected });
    assert.equal(bytes, data.length);
    assert.equal(blobs.maxChunk, CHUNK_SIZE);
    const back = await readBlob(blobs, B3Digest.fromBytes(expected.digest));
    assert.equal(back.length, data.length);
    assert.ok(back.every((v, i) => v === data[i]));
  });
});

Deno.test("deep trees work, and a walk stopped early releases its descriptors", async () => {
  await withTempDir(async (dir, fd) => {
    let p: Uint8Array = b("n");
    libc.mkdirAt(fd, p);
    for (let i = 0; i < 150; i++) {
      p = libc.joinPath(p, b("n"));
      libc.mkdirAt(fd, p);
    }
    libc.createFileAt(fd, libc.joinPath(p, b("leaf")), b("deep"));
    // Descriptors open below the tree (other test modules share this process under --parallel,
    // so a plain count of /proc/self/fd would see their descriptors come and go).
    const root = new TextDecoder().decode(dir) + "/";
    const fds = () =>
      [...Deno.readDirSync("/proc/self/fd")].filter((e) => {
        try {
          return Deno.readLinkSync(`/proc/self/fd/${e.name}`).startsWith(root);
        } catch {
          return false; // closed meanwhile
        }
      }).length;
    const before = fds();
    assert.equal(before, 0);
    const dirs = new SpyDirectories();
    const node = await importPath(libc.joinPath(dir, b("n")), new MemoryBlobService(), dirs);
    let expected = makeDirectory({ files: [fileNode("leaf", await b3sum(b("deep")), 4)] });
    for (let i = 0; i < 150; i++) {
      expected = makeDirectory({ directories: [dirNode("n", expected)] });
    }
    assert.deepEqual(node, { case: "directory", value: dirNode("n", expected) });
    assert.equal(dirs.puts.length, 151);
    assert.equal(fds(), before);
    let n = 0;
    for (const _ of walk(libc.joinPath(dir, b("n")))) {
      // Mid-walk the directories on the way down are open: the check sees them.
      if (++n === 100) {
        assert.ok(fds() > 0);
        break;
      }
    }
    assert.equal(fds(), before);
  });
});

/**
 * A blob service whose small blobs are stored only on a later turn of the event loop (as
 * SQLite's batches are), counting what was handed over and is not stored yet.
 */
class DeferredSmallBlobs extends SpyBlobs {
  pendingBytes = 0;
  pendingFiles = 0;
  maxBytes = 0;
  maxFiles = 0;
  putSmall(data: Uint8Array): SmallBlobPut {
    const put = this.inner.putSmall(data);
    this.pendingBytes += data.length;
    this.pendingFiles++;
    this.maxBytes = Math.max(this.maxBytes, this.pendingBytes);
    this.maxFiles = Math.max(this.maxFiles, this.pendingFiles);
    const stored = libc.nextTurn().then(() => {
      this.pendingBytes -= data.length;
      this.pendingFiles--;
    });
    return { digest: put.digest, stored };
  }
}

Deno.test("small files handed over but not stored are bounded, not the whole tree", async () => {
  await withTempDir(async (dir, fd) => {
    // 48 MiB in 3000 files of 16 KiB, and 3000 tiny files.
    libc.mkdirAt(fd, b("big"));
    libc.mkdirAt(fd, b("tiny"));
    for (let i = 0; i < 3000; i++) {
      const data = new Uint8Array(16 << 10).fill(i & 255);
      new DataView(data.buffer).setUint32(0, i);
      libc.createFileAt(fd, b(`big/f${i}`), data);
      libc.createFileAt(fd, b(`tiny/f${i}`), b(`${i}`));
    }
    const reference = await importPath(dir, new MemoryBlobService(), new MemoryDirectoryService());
    for (const [concurrency, maxBytes, maxFiles] of [[1, 4 << 20, 512], [8, 20 << 20, 2560]]) {
      const blobs = new DeferredSmallBlobs();
      const dirs = new MemoryDirectoryService();
      const nar = new NarImportObserver();
      let maxBacklog = 0;
      const node = await importPath(dir, blobs, dirs, {
        concurrency,
        observer: nar,
        onProgress: () => maxBacklog = Math.max(maxBacklog, nar.backlogBytes),
      });
      assert.deepEqual(node, reference);
      assert.ok(blobs.maxBytes <= maxBytes, `${concurrency}: ${blobs.maxBytes} bytes pending`);
      assert.ok(blobs.maxFiles <= maxFiles, `${concurrency}: ${blobs.maxFiles} files pending`);
      // Bytes waiting for the SHA-256 thread are bounded too.
      assert.ok(maxBacklog <= 24 << 20, `${concurrency}: NAR hash backlog ${maxBacklog}`);
      assert.equal(blobs.pendingFiles, 0); // all stored before the import returned
      assert.deepEqual(await nar.result(), await calculateNar(node, blobs, dirs));
    }
  });
});

Deno.test("a tree of small files lets the event loop run every few files", async () => {
  await withTempDir(async (dir, fd) => {
    for (let d = 0; d < 10; d++) {
      libc.mkdirAt(fd, b(`d${d}`));
      for (let f = 0; f < 400; f++) libc.createFileAt(fd, b(`d${d}/f${f}`), b(`${d}/${f}\n`));
    }
    // A chain of event-loop turns beside the import (each one a round trip through the thread
    // pool, as the importer's own pauses are): the files imported between two links show how
    // long this thread went without a turn.
    let files = 0;
    const gaps: number[] = [];
    let running = true;
    const ticker = (async () => {
      for (let seen = 0; running;) {
        await libc.nextTurn();
        gaps.push(files - seen);
        seen = files;
      }
    })();
    const calls: number[] = [];
    try {
      const node = await importPath(dir, new MemoryBlobService(), new MemoryDirectoryService(), {
        onProgress: (p) => {
          files = p.files;
          calls.push(p.files);
        },
      });
      assert.equal((node.value as DirectoryNode).size, 4010);
    } finally {
      running = false;
      await ticker;
    }
    // A callback per file, and the event loop got a turn every few dozen files (the median,
    // so a thread-pool thread that was late once does not matter; before, no turn at all).
    const called = new Set(calls);
    for (let i = 1; i <= 4000; i++) assert.ok(called.has(i), `no progress at file ${i}`);
    const during = gaps.filter((g) => g > 0).sort((x, y) => x - y);
    // Loose bounds: a turn's round trip through the thread pool slows under load while the
    // import does not wait for it, so a busy machine sees fewer turns; before, there were none.
    assert.ok(during.length >= 4, `${during.length} turns while files were imported`);
    const median = during[Math.floor(during.length / 2)];
    assert.ok(median <= 1000, `a turn every ${median} files`);
  });
});

Deno.test("failures anywhere reject the import; nothing is left rejecting unobserved", async () => {
  await withTempDir(async (dir, fd) => {
    libc.mkdirAt(fd, b("d"));
    for (let i = 0; i < 600; i++) libc.createFileAt(fd, b(`d/a${i}`), new Uint8Array(9000).fill(i));
    libc.createFileAt(fd, b("d/big"), new Uint8Array(3 * CHUNK_SIZE).fill(1));
    libc.mkfifoAt(fd, b("d/m-fifo"));
    for (let i = 0; i < 50; i++) libc.createFileAt(fd, b(`d/z${i}`), b(`${i}`));
    const fifo = /unsupported file type \(fifo\): .*\/d\/m-fifo$/;
    const failingSmall = (how: "later" | "now"): BlobService => {
      const inner = new SpyBlobs();
      let n = 0;
      return Object.assign(inner, {
        putSmall: (data: Uint8Array): SmallBlobPut => {
          if (++n < 100) return inner.inner.putSmall(data);
          if (how === "now") throw new Error("putSmall refused");
          // Stored blobs fail on a later turn, while the walk goes on to the FIFO.
          const stored = libc.nextTurn().then(() => {
            throw new Error("commit failed");
          });
          return { digest: inner.inner.putSmall(data).digest, stored };
        },
      });
    };
    await assert.rejects(
      importPath(dir, failingSmall("later"), new MemoryDirectoryService(), {
        observer: new NarImportObserver(),
      }),
      /commit failed/,
    );
    await assert.rejects(
      importPath(dir, failingSmall("now"), new MemoryDirectoryService()),
      /putSmall refused/,
    );
    // The walk fails while small blobs, a big upload and the NAR hash are still in flight.
    const slow = new DeferredSmallBlobs();
    await assert.rejects(
      importPath(dir, slow, new MemoryDirectoryService(), { observer: new NarImportObserver() }),
      fifo,
    );
    assert.equal(slow.opened, slow.closed + slow.aborted);
    // A directory putter that fails.
    const dirs = new MemoryDirectoryService();
    const failingDirs: DirectoryService = Object.assign(Object.create(dirs), {
      putMultipleStart: (): DirectoryPutter => ({
        put: () => Promise.reject(new Error("directory put failed")),
        close: () => Promise.reject(new Error("not reached")),
      }),
    });
    Deno.removeSync(`${new TextDecoder().decode(dir)}/d/m-fifo`);
    await assert.rejects(
      importPath(libc.joinPath(dir, b("d")), new MemoryBlobService(), failingDirs),
      /directory put failed/,
    );
    // Everything settled: a turn later, nothing rejects unobserved (the test would fail).
    await libc.nextTurn();
  });
});
