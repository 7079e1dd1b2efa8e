/**
 * Renders a castore node (and everything below it) as a NAR stream, reading blobs and
 * directories from the services as it goes. Memory use is bounded by one blob chunk and one
 * directory per level, whatever the size of the tree or its files.
 *
 * @module
 */
import type { BlobService } from "../castore/blob_service.ts";
import { B3Digest } from "../castore/digest.ts";
import { openVerifiedRead } from "../castore/verify.ts";
import { type AnyNode, directoryNodes } from "../castore/directory.ts";
import { displayName } from "../base/bytes.ts";
import type { DirectoryService } from "../castore/directory_service.ts";
import { NotFoundError, StorageError } from "../base/errors.ts";
import { type NarSink, NarWriter, type NarWriterOptions } from "./writer.ts";

/**
 * Drives `writer` through the NAR of `root`, yielding (nothing) after every blob chunk and
 * directory so a caller can drain the writer's output between steps. The shared core of
 * {@linkcode renderNar} and {@linkcode writeNar}.
 *
 * Throws {@linkcode NotFoundError} when a blob or directory is missing,
 * {@linkcode StorageError} when a blob's length differs from its node's size, and
 * {@linkcode InvalidRequestError} for a root node with a bad digest.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { type AnyNode, putBlob } from "@nixcas/nixcas/castore";
 * import { NarWriter } from "@nixcas/nixcas/nar";
 * import { walkNar } from "./render.ts";
 * const blobs = new MemoryBlobService();
 * const contents = new TextEncoder().encode("Hello, world!\n");
 * const root: AnyNode = {
 *   case: "file",
 *   value: {
 *     $typeName: "tvix.castore.v1.FileNode",
 *     name: new TextEncoder().encode("hello.txt"),
 *     digest: (await putBlob(blobs, contents)).bytes,
 *     size: contents.length,
 *     executable: false,
 *   },
 * };
 * let pending: Uint8Array[] = [];
 * const writer = new NarWriter((bytes) => pending.push(bytes));
 * let sent = 0;
 * for await (const _ of walkNar(writer, root, blobs, new MemoryDirectoryService())) {
 *   // Drain what the writer produced so far, e.g. to a socket.
 *   for (const bytes of pending) sent += bytes.length;
 *   pending = [];
 * }
 * for (const bytes of pending) sent += bytes.length; // finish() flushed the rest
 * assert.equal(sent, 128);
 * ```
 */
export async function* walkNar(
  writer: NarWriter,
  root: AnyNode,
  blobs: BlobService,
  directories: DirectoryService,
): AsyncGenerator<void> {
  // Iterative depth-first walk: a stack of the directories' entry iterators.
  const stack: Iterator<AnyNode>[] = [];
  let node: AnyNode | null = root;
  while (node !== null) {
    const name = node.value.name;
    switch (node.case) {
      case "symlink":
        writer.symlink(node.value.target);
        break;
      case "file": {
        const { size, executable } = node.value;
        const digest = B3Digest.fromBytes(node.value.digest);
        const reader = await openVerifiedRead(blobs, digest);
        if (!reader) {
          throw new NotFoundError(`blob ${digest} not found, referred to by ${displayName(name)}`);
        }
        try {
          writer.fileStart(executable, size);
          let got = 0;
          for await (const chunk of reader.chunks()) {
            if (got + chunk.length > size) {
              throw new StorageError(
                `blob ${digest} (${displayName(name)}) is longer than the size ${size} ` +
                  `recorded in its node`,
              );
            }
            got += chunk.length;
            writer.fileChunk(chunk);
            yield;
          }
          if (got !== size) {
            throw new StorageError(
              `blob ${digest} (${displayName(name)}) has ${got} bytes, its node says ${size}`,
            );
          }
          writer.fileEnd();
        } finally {
          await reader.close();
        }
        break;
      }
      case "directory": {
        const digest = B3Digest.fromBytes(node.value.digest);
        const dir = await directories.get(digest);
        if (!dir) {
          throw new NotFoundError(
            `directory ${digest} not found, referred to by ${displayName(name)}`,
          );
        }
        writer.directoryStart();
        stack.push(directoryNodes(dir));
        yield;
        break;
      }
    }
    // Next: the next entry of the innermost unfinished directory, closing finished ones.
    node = null;
    while (stack.length > 0) {
      const next = stack[stack.length - 1].next();
      if (!next.done) {
        writer.entry(next.value.value.name);
        node = next.value;
        break;
      }
      stack.pop();
      writer.directoryEnd();
    }
  }
  writer.finish();
}

/**
 * The NAR of `root` as a stream of byte arrays (each valid after it was yielded: the consumer
 * may keep it). Pulls data only as fast as the consumer reads.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { directoryNodeFor, makeDirectory } from "@nixcas/nixcas/castore";
 * import { renderNar } from "@nixcas/nixcas/nar";
 * const directories = new MemoryDirectoryService();
 * const dir = makeDirectory({
 *   symlinks: [{
 *     $typeName: "tvix.castore.v1.SymlinkNode",
 *     name: new TextEncoder().encode("hosts"),
 *     target: new TextEncoder().encode("/etc/hosts"),
 *   }],
 * });
 * await directories.put(dir);
 * const node = { case: "directory", value: directoryNodeFor(new Uint8Array(), dir) } as const;
 * const tmp = await Deno.makeTempDir();
 * const file = await Deno.open(`${tmp}/out.nar`, { write: true, create: true });
 * const nar = renderNar(node, new MemoryBlobService(), directories);
 * await ReadableStream.from(nar).pipeTo(file.writable); // closes the file
 * assert.equal((await Deno.stat(`${tmp}/out.nar`)).size, 296);
 * await Deno.remove(tmp, { recursive: true });
 * ```
 */
export async function* renderNar(
  root: AnyNode,
  blobs: BlobService,
  directories: DirectoryService,
): AsyncGenerator<Uint8Array> {
  let pending: Uint8Array[] = [];
  const writer = new NarWriter((b) => pending.push(b));
  for await (const _ of walkNar(writer, root, blobs, directories)) {
    if (pending.length > 0) {
      const out = pending;
      pending = [];
      yield* out;
    }
  }
  yield* pending;
}

/**
 * Writes the NAR of `root` to a synchronous sink (a hasher, a counter). With `reuseBuffer`
 * the sink must consume each array before returning. Returns the NAR size.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createHash } from "node:crypto";
 * import { MemoryBlobService, MemoryDirectoryService } from "@nixcas/nixcas/backends";
 * import { type AnyNode } from "@nixcas/nixcas/castore";
 * import { writeNar } from "@nixcas/nixcas/nar";
 * const root: AnyNode = {
 *   case: "symlink",
 *   value: {
 *     $typeName: "tvix.castore.v1.SymlinkNode",
 *     name: new TextEncoder().encode("hosts"),
 *     target: new TextEncoder().encode("/etc/hosts"),
 *   },
 * };
 * const sha256 = createHash("sha256");
 * const size = await writeNar(
 *   (bytes) => sha256.update(bytes),
 *   root,
 *   new MemoryBlobService(),
 *   new MemoryDirectoryService(),
 *   { reuseBuffer: true },
 * );
 * assert.equal(size, 128);
 * assert.equal(
 *   sha256.digest("hex"),
 *   "fdd8918e938e42eac4186842e30a5d8f0f6fa4f292afff46a30b90787be0e135",
 * );
 * ```
 */
export async function writeNar(
  sink: NarSink,
  root: AnyNode,
  blobs: BlobService,
  directories: DirectoryService,
  options: NarWriterOptions = {},
): Promise<number> {
  const writer = new NarWriter(sink, options);
  for await (const _ of walkNar(writer, root, blobs, directories)) {
    // Nothing to drain: the sink consumes synchronously.
  }
  return writer.bytesWritten;
}
