/**
 * NAR size and SHA-256 of a castore node, computed while streaming (the NAR is never held), and
 * of a tree while castore imports it ({@linkcode NarImportObserver}, on its observer hook).
 *
 * @module
 */
import type { BlobService } from "../castore/blob_service.ts";
import type { AnyNode } from "../castore/directory.ts";
import type { DirectoryService } from "../castore/directory_service.ts";
import { createSha256Stream, type Sha256Stream } from "../hash/sha256.ts";
import { writeNar } from "./render.ts";
import type { ImportFileSink, ImportObserver } from "../castore/import/observer.ts";
import { type NarSink, NarWriter } from "./writer.ts";

/**
 * Size and SHA-256 of the NAR serialisation of a node, as
 * {@linkcode PathInfoService.calculateNar} returns them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   MemoryBlobService,
 *   MemoryDirectoryService,
 *   MemoryPathInfoService,
 * } from "@nixcas/nixcas/backends";
 * import type { NarCalculation } from "@nixcas/nixcas/nar";
 * const pathInfos = new MemoryPathInfoService(
 *   new MemoryBlobService(),
 *   new MemoryDirectoryService(),
 * );
 * const nar: NarCalculation = await pathInfos.calculateNar({
 *   case: "symlink",
 *   value: {
 *     $typeName: "tvix.castore.v1.SymlinkNode",
 *     name: new TextEncoder().encode("link"),
 *     target: new TextEncoder().encode("/etc/hosts"),
 *   },
 * });
 * assert.equal(nar.narSize, 128);
 * assert.equal(nar.narSha256.length, 32);
 * ```
 */
export interface NarCalculation {
  /** Length of the NAR in bytes. */
  narSize: number;
  /** SHA-256 of the NAR (32 bytes). */
  narSha256: Uint8Array;
}

/**
 * Size and SHA-256 of the NAR of `root`. Errors are those of {@linkcode writeNar}: missing
 * blobs or directories, blob lengths that differ from their nodes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Buffer } from "node:buffer";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { type AnyNode, putBlob } from "@nixcas/nixcas/castore";
 * import { calculateNar } from "@nixcas/nixcas/nar";
 * const blobs = new MemoryBlobService();
 * const contents = new TextEncoder().encode("Hello, world!\n");
 * const node: AnyNode = {
 *   case: "file",
 *   value: {
 *     $typeName: "tvix.castore.v1.FileNode",
 *     name: new TextEncoder().encode("hello.txt"),
 *     digest: (await putBlob(blobs, contents)).bytes,
 *     size: contents.length,
 *     executable: false,
 *   },
 * };
 * const { narSize, narSha256 } = await calculateNar(node, blobs, new MemoryDirectoryService());
 * assert.equal(narSize, 128);
 * assert.equal(
 *   Buffer.from(narSha256).toString("hex"),
 *   "5849379a8b8cbfc4131d0c0f89ad020ea270d85f161e257b7d52135b58337ece",
 * );
 * ```
 */
export async function calculateNar(
  root: AnyNode,
  blobs: BlobService,
  directories: DirectoryService,
): Promise<NarCalculation> {
  // update() copies what it keeps, so the writer may reuse its buffer.
  const hash = createSha256Stream();
  const narSize = await writeNar((b) => hash.update(b), root, blobs, directories, {
    reuseBuffer: true,
  });
  return { narSize, narSha256: await hash.digest() };
}

// A file's contents waiting for earlier files are copied; past this many bytes its reader waits
// for its turn instead, so memory stays bounded however large the files are.
const SLOT_BUFFER_MAX = 8 << 20;

/**
 * SHA-256 of a NAR whose file contents arrive out of order: structure bytes come from a
 * {@linkcode NarWriter} on {@linkcode OrderedNarHasher.sink} in NAR order, and each file's
 * contents through its {@linkcode NarSlot}, reserved at its place in the stream. Contents of
 * the file whose turn it is are hashed as they come; others are held (bounded) until then.
 * Lets an importer hash the NAR in the same pass that reads the files, several at once.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createHash } from "node:crypto";
 * import { NarWriter } from "@nixcas/nixcas/nar";
 * import { OrderedNarHasher } from "./hash.ts";
 * import { toHex } from "../base/bytes.ts";
 * const enc = new TextEncoder();
 * const files = [["a.txt", enc.encode("first\n")], ["b.txt", enc.encode("second\n")]] as const;
 *
 * // The structure is written in NAR order; each file's contents get a slot.
 * const hasher = new OrderedNarHasher();
 * const nar = new NarWriter(hasher.sink);
 * nar.directoryStart();
 * const slots = files.map(([name, contents]) => {
 *   nar.entry(enc.encode(name));
 *   nar.fileStart(false, contents.length);
 *   nar.fileContentsElsewhere();
 *   const slot = hasher.slot(contents.length);
 *   nar.fileEnd();
 *   return slot;
 * });
 * nar.directoryEnd();
 * nar.finish();
 * // Contents arrive last file first: b.txt's are held until a.txt's are hashed.
 * for (const i of [1, 0]) {
 *   await slots[i].write(files[i][1]);
 *   slots[i].end();
 * }
 * const { narSize, narSha256 } = await hasher.result();
 *
 * // The same as hashing the NAR written in order.
 * const sha256 = createHash("sha256");
 * const inOrder = new NarWriter((b) => sha256.update(b), { reuseBuffer: true });
 * inOrder.directoryStart();
 * for (const [name, contents] of files) {
 *   inOrder.entry(enc.encode(name));
 *   inOrder.file(false, contents);
 * }
 * inOrder.directoryEnd();
 * inOrder.finish();
 * assert.equal(narSize, inOrder.bytesWritten);
 * assert.equal(toHex(narSha256), sha256.digest("hex"));
 * ```
 */
export class OrderedNarHasher {
  #hash: Sha256Stream = createSha256Stream();
  #size = 0;
  #queue: (Uint8Array | NarSlot)[] = [];
  #head: NarSlot | null = null;
  #held = 0;

  /** Bytes held because a file ahead of them is not hashed yet (for callers bounding memory). */
  get heldBytes(): number {
    return this.#held;
  }

  /**
   * Bytes given to this hasher and not hashed yet: those held behind an unfinished file plus
   * those waiting for the SHA-256 thread (for callers bounding memory).
   */
  get backlogBytes(): number {
    return this.#held + this.#hash.pendingBytes;
  }

  /** @internal Adjusts {@linkcode OrderedNarHasher.heldBytes}. */
  noteHeld(delta: number): void {
    this.#held += delta;
  }

  /** The sink for a NarWriter (without `reuseBuffer`: queued arrays must stay valid). */
  readonly sink: NarSink = (bytes) => {
    if (this.#idle()) {
      this.update(bytes); // small pieces: gathered into bigger updates
    } else {
      this.#queue.push(bytes);
      this.#held += bytes.length;
    }
  };

  /** Reserves the place of one file's `size` content bytes at the current end of the stream. */
  slot(size: number): NarSlot {
    const slot = new NarSlot(this, size);
    if (this.#idle()) this.#head = slot;
    else this.#queue.push(slot);
    return slot;
  }

  /** Size and SHA-256; every slot must have ended. */
  async result(): Promise<NarCalculation> {
    if (!this.#idle()) throw new Error("NAR hash requested before every file was hashed");
    return { narSize: this.#size, narSha256: await this.#hash.digest() };
  }

  /** @internal Hashes a copy of bytes at the current position. */
  update(bytes: Uint8Array): void {
    this.#hash.update(bytes);
    this.#size += bytes.length;
  }

  /**
   * @internal Hashes bytes at the current position without copying them; they must not change
   * until the promise resolves.
   */
  updateInPlace(bytes: Uint8Array): Promise<void> {
    this.#size += bytes.length;
    return this.#hash.updateInPlace(bytes);
  }

  /** @internal True when `slot` is the file whose turn it is. */
  isHead(slot: NarSlot): boolean {
    return this.#head === slot;
  }

  /** @internal The head slot ended: hash what waited behind it, up to the next unfinished file. */
  advance(): void {
    this.#head = null;
    while (this.#queue.length > 0) {
      const next = this.#queue.shift()!;
      if (next instanceof Uint8Array) {
        this.update(next);
        this.#held -= next.length;
        continue;
      }
      next.drainInto();
      if (!next.ended) {
        this.#head = next;
        next.wake();
        return;
      }
    }
  }

  #idle(): boolean {
    return this.#head === null && this.#queue.length === 0;
  }
}

/**
 * One file's place in an {@linkcode OrderedNarHasher}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NarWriter } from "@nixcas/nixcas/nar";
 * import { OrderedNarHasher } from "./hash.ts";
 * import { toHex } from "../base/bytes.ts";
 * const enc = new TextEncoder();
 * const hasher = new OrderedNarHasher();
 * const nar = new NarWriter(hasher.sink);
 * nar.fileStart(false, 14);
 * nar.fileContentsElsewhere();
 * const slot = hasher.slot(14); // the NAR of a single file, "Hello, world!\n"
 * nar.fileEnd();
 * nar.finish();
 * await slot.write(enc.encode("Hello, "));
 * assert.throws(() => slot.end(), /file has 7 bytes, 14 expected/);
 * slot.writeOwned(enc.encode("world!\n"));
 * slot.end();
 * assert.equal(
 *   toHex((await hasher.result()).narSha256),
 *   "5849379a8b8cbfc4131d0c0f89ad020ea270d85f161e257b7d52135b58337ece",
 * );
 * ```
 */
export class NarSlot {
  #owner: OrderedNarHasher;
  #held: Uint8Array[] = [];
  #heldBytes = 0;
  #got = 0;
  #wakeUp: (() => void) | null = null;
  /** Declared content size. */
  readonly size: number;
  /** True once {@linkcode NarSlot.end} was called. */
  ended = false;

  /** @internal */
  constructor(owner: OrderedNarHasher, size: number) {
    this.#owner = owner;
    this.size = size;
  }

  /**
   * Adds the next content bytes; `data` must not change until this resolves (it may be hashed
   * in place on another thread), and may be reused afterwards. Calls may overlap: bytes are
   * added in call order. With none waiting, hashing starts before this returns, so it runs on
   * another thread while the caller goes on with synchronous work.
   */
  write(data: Uint8Array): Promise<void> {
    const p = this.#writing === 0 ? this.#write(data) : this.#tail.then(() => this.#write(data));
    this.#writing++;
    const settle = () => void this.#writing--;
    p.then(settle, settle);
    this.#tail = p;
    return p;
  }

  #writing = 0;
  #tail: Promise<void> = Promise.resolve();

  async #write(data: Uint8Array): Promise<void> {
    this.#got += data.length;
    if (this.#got > this.size) throw new Error(`file grew past ${this.size} bytes while importing`);
    if (!this.#owner.isHead(this) && this.#heldBytes + data.length > SLOT_BUFFER_MAX) {
      // Wait for our turn; the file ahead of us holds an upload slot, so it progresses.
      await new Promise<void>((resolve) => this.#wakeUp = resolve);
    }
    if (this.#owner.isHead(this)) {
      await this.#owner.updateInPlace(data);
    } else {
      this.#hold(data.slice());
    }
  }

  /**
   * Adds the next content bytes synchronously, keeping a reference to `data` (which must not
   * change afterwards) if it cannot be hashed yet. No back-pressure: the caller bounds memory,
   * e.g. with {@linkcode OrderedNarHasher.heldBytes}.
   */
  writeOwned(data: Uint8Array): void {
    this.#got += data.length;
    if (this.#got > this.size) throw new Error(`file grew past ${this.size} bytes while importing`);
    if (this.#owner.isHead(this)) this.#owner.updateInPlace(data).catch(() => {});
    else this.#hold(data);
  }

  #hold(data: Uint8Array): void {
    this.#held.push(data);
    this.#heldBytes += data.length;
    this.#owner.noteHeld(data.length);
  }

  /** Marks the contents complete; throws when fewer bytes than declared arrived. */
  end(): void {
    if (this.#got !== this.size) {
      throw new Error(
        `file has ${this.#got} bytes, ${this.size} expected (changed while importing)`,
      );
    }
    this.ended = true;
    if (this.#owner.isHead(this)) this.#owner.advance();
  }

  /** @internal Hashes what was held. */
  drainInto(): void {
    for (const b of this.#held) this.#owner.updateInPlace(b).catch(() => {});
    this.#owner.noteHeld(-this.#heldBytes);
    this.#held = [];
    this.#heldBytes = 0;
  }

  /** @internal Our turn came. */
  wake(): void {
    this.#wakeUp?.();
    this.#wakeUp = null;
  }
}

/**
 * Hashes the NAR of what {@linkcode importPath} imports, in the same pass: pass it as the
 * `observer` option, then read {@linkcode NarImportObserver.result}. Structure goes through a
 * {@linkcode NarWriter} into an {@linkcode OrderedNarHasher}; a deferred file gets a
 * {@linkcode NarSlot} at its place in the stream.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Buffer } from "node:buffer";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { importPath } from "@nixcas/nixcas/castore";
 * import { calculateNar, NarImportObserver } from "@nixcas/nixcas/nar";
 * const tmp = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${tmp}/hello.txt`, "Hello, world!\n");
 * const nar = new NarImportObserver();
 * const blobs = new MemoryBlobService();
 * const directories = new MemoryDirectoryService();
 * const root = await importPath(`${tmp}/hello.txt`, blobs, directories, { observer: nar });
 * const { narSize, narSha256 } = await nar.result();
 * assert.equal(narSize, 128);
 * assert.equal(
 *   Buffer.from(narSha256).toString("hex"),
 *   "5849379a8b8cbfc4131d0c0f89ad020ea270d85f161e257b7d52135b58337ece",
 * );
 * // The same as rendering the stored tree's NAR afterwards.
 * assert.deepEqual(await calculateNar(root, blobs, directories), { narSize, narSha256 });
 * await Deno.remove(tmp, { recursive: true });
 * ```
 */
export class NarImportObserver implements ImportObserver {
  /**
   * @internal The hasher the NAR goes to. Not part of the API, nor is the constructor's
   * argument (callers leave it out): read {@linkcode NarImportObserver.result}.
   */
  readonly hasher: OrderedNarHasher;
  #nar: NarWriter;

  /** Hashes into `hasher` (a new one by default). */
  constructor(hasher: OrderedNarHasher = new OrderedNarHasher()) {
    this.hasher = hasher;
    this.#nar = new NarWriter(hasher.sink);
  }

  /** Size and SHA-256 of the NAR; once the import has returned. */
  result(): Promise<NarCalculation> {
    return this.hasher.result();
  }

  /** The {@linkcode ImportObserver} method of the same name. */
  directoryStart(): void {
    this.#nar.directoryStart();
  }

  /** The {@linkcode ImportObserver} method of the same name. */
  entry(name: Uint8Array): void {
    this.#nar.entry(name);
  }

  /** The {@linkcode ImportObserver} method of the same name. */
  symlink(target: Uint8Array): void {
    this.#nar.symlink(target);
  }

  /** The {@linkcode ImportObserver} method of the same name. */
  fileStart(executable: boolean, size: number): void {
    this.#nar.fileStart(executable, size);
  }

  /** The {@linkcode ImportObserver} method of the same name (the hasher may keep `bytes`). */
  fileChunk(bytes: Uint8Array): void {
    this.#nar.fileChunk(bytes);
  }

  /** The {@linkcode ImportObserver} method of the same name. */
  fileEnd(): void {
    this.#nar.fileEnd();
  }

  /** Reserves the contents' place in the NAR: the returned slot fills it. */
  fileDeferred(executable: boolean, size: number): ImportFileSink {
    const nar = this.#nar;
    nar.fileStart(executable, size);
    nar.fileContentsElsewhere();
    const slot = this.hasher.slot(size);
    nar.fileEnd();
    return slot;
  }

  /** The {@linkcode ImportObserver} method of the same name. */
  directoryEnd(): void {
    this.#nar.directoryEnd();
  }

  /** Checks the NAR is complete and hands the writer's last bytes to the hasher. */
  finish(): void {
    this.#nar.finish();
  }

  /** {@linkcode OrderedNarHasher.heldBytes}. */
  get heldBytes(): number {
    return this.hasher.heldBytes;
  }

  /** {@linkcode OrderedNarHasher.backlogBytes}. */
  get backlogBytes(): number {
    return this.hasher.backlogBytes;
  }
}
