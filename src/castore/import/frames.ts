/**
 * The importer's directory frames: one per directory the walk is in, collecting its children's
 * nodes (files and subdirectories may still be uploading). When a directory ends its Directory
 * message is built once its children are known and put through one putter, in the order
 * directories end: leaves first, the root last, each distinct directory once.
 *
 * @module
 */
import { quiet } from "../../base/async.ts";
import { StorageError } from "../../base/errors.ts";
import { B3_LEN, type B3Digest } from "../digest.ts";
import {
  type AnyNode,
  directoryDigest,
  type DirectoryNode,
  directorySize,
  type FileNode,
  makeDirectory,
  type SymlinkNode,
} from "../directory.ts";
import type { DirectoryPutter, DirectoryService } from "../directory_service.ts";

interface Frame {
  dirs: Promise<DirectoryNode>[];
  files: (FileNode | Promise<FileNode>)[];
  symlinks: SymlinkNode[];
}

/** The open directories of one import, and the puts of those that ended. */
export class DirectoryFrames {
  #directories: DirectoryService;
  #fail: (error: unknown) => void;
  #frames: Frame[] = [];
  #root: Promise<AnyNode> | null = null;
  #putter: DirectoryPutter | null = null;
  #putDigests = new Set<string>();
  #putChain: Promise<void> = Promise.resolve();

  /** Puts go to `directories`; a failing put reports to `fail`. */
  constructor(directories: DirectoryService, fail: (error: unknown) => void) {
    this.#directories = directories;
    this.#fail = fail;
  }

  /** A directory is entered (the root, or a child of the current one). */
  enter(): void {
    this.#frames.push({ dirs: [], files: [], symlinks: [] });
  }

  /** A symlink at `depth` (0: the root). */
  symlink(depth: number, node: SymlinkNode): void {
    if (depth === 0) this.#root = Promise.resolve({ case: "symlink", value: node });
    else this.#frames[this.#frames.length - 1].symlinks.push(node);
  }

  /** A file at `depth` (0: the root), known now or once its upload finished (a quiet promise). */
  file(depth: number, node: FileNode | Promise<FileNode>): void {
    if (depth === 0) {
      this.#root = node instanceof Promise
        ? quiet(node.then((value) => ({ case: "file", value })))
        : Promise.resolve({ case: "file", value: node });
    } else this.#frames[this.#frames.length - 1].files.push(node);
  }

  /**
   * The current directory, named `name`, has no more entries: its Directory is built once its
   * children are known and put after the directories that ended before it.
   */
  leave(name: Uint8Array): void {
    const frame = this.#frames.pop()!;
    const built = quiet(
      Promise.all([Promise.all(frame.dirs), Promise.all(frame.files)]).then(
        ([ds, fs]) => {
          const dir = makeDirectory({ directories: ds, files: fs, symlinks: frame.symlinks });
          return { dir, digest: directoryDigest(dir) };
        },
      ),
    );
    // Puts run one after another in the order directories end: children before parents.
    this.#putChain = this.#putChain.then(async () => {
      const { dir, digest } = await built;
      if (this.#putDigests.has(digest.key)) return;
      this.#putDigests.add(digest.key);
      this.#putter ??= this.#directories.putMultipleStart();
      await this.#putter.put(dir);
    });
    this.#putChain.catch(this.#fail);
    const node = quiet(built.then(({ dir, digest }): DirectoryNode => ({
      $typeName: "tvix.castore.v1.DirectoryNode",
      name,
      digest: digest.bytes,
      size: directorySize(dir),
    })));
    if (this.#frames.length === 0) {
      this.#root = quiet(node.then((value) => ({ case: "directory", value })));
    } else this.#frames[this.#frames.length - 1].dirs.push(node);
  }

  /** The root node, once every upload below it finished; call after the walk ended. */
  root(): Promise<AnyNode> {
    return this.#root!;
  }

  /** Resolves when every directory put so far is done; rejects with a put's error. */
  puts(): Promise<void> {
    return this.#putChain;
  }

  /**
   * Closes the putter and checks the root digest it returns against `root`'s; call when
   * everything else succeeded. A root that is not a directory put none.
   */
  async close(root: AnyNode): Promise<void> {
    if (root.case !== "directory") return;
    const digest = await this.#putter!.close();
    if (!sameDigest(digest, root.value.digest)) {
      throw new StorageError(
        `directory putter returned root ${digest}, expected the imported root directory`,
      );
    }
  }
}

function sameDigest(a: B3Digest, b: Uint8Array): boolean {
  if (b.length !== B3_LEN) return false;
  for (let i = 0; i < B3_LEN; i++) if (a.bytes[i] !== b[i]) return false;
  return true;
}
