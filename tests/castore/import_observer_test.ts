/**
 * The importer's observer hook, with an observer of castore's own (no NAR): what it sees, in
 * which order, the contents of deferred files through their sinks, and the importer waiting on
 * the observer's two byte counts.
 */
import assert from "node:assert/strict";
import { MemoryBlobService } from "../../src/backends/memory/blob.ts";
import { MemoryDirectoryService } from "../../src/backends/memory/directory.ts";
import { CHUNK_SIZE } from "../../src/castore/blob_service.ts";
import {
  type ImportFileSink,
  type ImportObserver,
  importPath,
} from "../../src/castore/import/mod.ts";
import { blake3 } from "../../src/castore/digest.ts";
import { concat } from "../../src/base/bytes.ts";

const dec = new TextDecoder();

/** Records every call as a line; deferred files' contents are gathered per file. */
class Recorder implements ImportObserver {
  events: string[] = [];
  contents = new Map<string, Uint8Array[]>();
  open = 0; // deferred files whose sink has not ended
  held = () => 0;
  backlog = () => 0;
  #name = "";
  directoryStart() {
    this.events.push("(");
  }
  entry(name: Uint8Array) {
    this.#name = dec.decode(name);
    this.events.push(`entry ${this.#name}`);
  }
  symlink(target: Uint8Array) {
    this.events.push(`-> ${dec.decode(target)}`);
  }
  fileStart(executable: boolean, size: number) {
    this.events.push(`file ${executable ? "x" : "-"} ${size}`);
    this.contents.set(this.#name, []);
  }
  fileChunk(bytes: Uint8Array) {
    this.contents.get(this.#name)!.push(bytes);
  }
  fileEnd() {
    this.events.push("file end");
  }
  fileDeferred(executable: boolean, size: number): ImportFileSink {
    const name = this.#name;
    this.events.push(`deferred ${executable ? "x" : "-"} ${size}`);
    const parts: Uint8Array[] = [];
    this.contents.set(name, parts);
    this.open++;
    return {
      write: (bytes) => {
        parts.push(bytes.slice()); // the importer reuses its buffers
        return Promise.resolve();
      },
      end: () => {
        this.open--;
        this.events.push(`sink end ${name}`);
      },
    };
  }
  directoryEnd() {
    this.events.push(")");
  }
  finish() {
    this.events.push(".");
  }
  get heldBytes() {
    return this.held();
  }
  get backlogBytes() {
    return this.backlog();
  }
}

async function tree(files: Record<string, Uint8Array | string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "nixcas-observer-" });
  for (const [name, data] of Object.entries(files)) {
    const path = `${dir}/t/${name}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    if (typeof data === "string") await Deno.symlink(data, path);
    else await Deno.writeFile(path, data, { mode: name.endsWith(".sh") ? 0o755 : 0o644 });
  }
  return dir;
}

const big = new Uint8Array(3 * CHUNK_SIZE + 5).map((_, i) => (i * 31) & 0xff);

Deno.test("observer: sees the walk in order, deferred files' contents through their sinks", async () => {
  const dir = await tree({
    "a/run.sh": new TextEncoder().encode("#!/bin/sh\n"),
    "big.bin": big,
    "link": "a/run.sh",
    "z": new Uint8Array(0),
  });
  try {
    const observer = new Recorder();
    const blobs = new MemoryBlobService();
    const root = await importPath(`${dir}/t`, blobs, new MemoryDirectoryService(), {
      observer,
      concurrency: 1,
    });
    assert.equal(root.case, "directory");
    // The big file's sink ends whenever its upload does: set it apart from the walk order.
    const walkOrder = observer.events.filter((e) => !e.startsWith("sink end"));
    assert.deepEqual(walkOrder, [
      "(",
      "entry a",
      "(",
      "entry run.sh",
      "file x 10",
      "file end",
      ")",
      "entry big.bin",
      `deferred - ${big.length}`,
      "entry link",
      "-> a/run.sh",
      "entry z",
      "file - 0",
      "file end",
      ")",
      ".",
    ]);
    assert.deepEqual(observer.events.filter((e) => e.startsWith("sink end")), [
      "sink end big.bin",
    ]);
    assert.equal(observer.open, 0);
    assert.deepEqual(concat(observer.contents.get("big.bin")!), big);
    assert.equal(dec.decode(concat(observer.contents.get("run.sh")!)), "#!/bin/sh\n");
    assert.deepEqual(concat(observer.contents.get("z")!), new Uint8Array(0));
    // What the observer saw is what was stored.
    assert.ok(await blobs.has(blake3(big)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("observer: while it holds too many bytes, the walk waits for the uploads", async () => {
  const files: Record<string, Uint8Array> = { "a-big": big };
  for (let i = 0; i < 20; i++) files[`b${String(i).padStart(2, "0")}`] = new Uint8Array([i]);
  const dir = await tree(files);
  try {
    for (const held of [false, true]) {
      const observer = new Recorder();
      // Everything after a deferred file is "held" until that file's contents are complete.
      if (held) observer.held = () => observer.open > 0 ? Number.MAX_SAFE_INTEGER : 0;
      await importPath(`${dir}/t`, new MemoryBlobService(), new MemoryDirectoryService(), {
        observer,
      });
      const end = observer.events.indexOf("sink end a-big");
      const b01 = observer.events.indexOf("entry b01");
      if (held) {
        // One small file may follow the big one before the walk notices and waits.
        assert.ok(end < b01, `big file ended at ${end}, b01 entered at ${b01}`);
      } else {
        // Nothing made the walk wait: it was through long before the upload of 3 MiB.
        assert.ok(end > b01, `big file ended at ${end}, b01 entered at ${b01}`);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("observer: while its backlog is large, the walk lets the event loop run and waits", async () => {
  const files: Record<string, Uint8Array> = {};
  for (let i = 0; i < 300; i++) files[`f${String(i).padStart(3, "0")}`] = new Uint8Array([i & 255]);
  const dir = await tree(files);
  try {
    const observer = new Recorder();
    // The first time it is asked, the backlog is large for five more questions.
    let asked = 0;
    let eventsWhenAsked: number[] = [];
    observer.backlog = () => {
      asked++;
      eventsWhenAsked.push(observer.events.length);
      return asked <= 5 ? 1 << 30 : 0;
    };
    await importPath(`${dir}/t`, new MemoryBlobService(), new MemoryDirectoryService(), {
      observer,
    });
    assert.ok(asked >= 6, `backlog asked ${asked} times`);
    // The walk did not go on while the backlog was large: no event between the first six asks.
    eventsWhenAsked = eventsWhenAsked.slice(0, 6);
    assert.ok(eventsWhenAsked[0] > 0);
    assert.deepEqual(new Set(eventsWhenAsked).size, 1, `events at asks: ${eventsWhenAsked}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("observer: an error it throws fails the import with that error", async () => {
  const dir = await tree({ "a": new Uint8Array([1]), "b": big });
  try {
    for (const where of ["fileStart", "fileDeferred", "finish"] as const) {
      const observer = new Recorder();
      observer[where] = () => {
        throw new Error(`observer refused in ${where}`);
      };
      await assert.rejects(
        importPath(`${dir}/t`, new MemoryBlobService(), new MemoryDirectoryService(), {
          observer,
        }),
        new RegExp(`observer refused in ${where}`),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
