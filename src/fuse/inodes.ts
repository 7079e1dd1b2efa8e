/**
 * Inode allocation for the store filesystem. The same content always gets the same inode,
 * wherever it appears: files by digest (and executable bit), symlinks by target, directories by
 * digest. The Merkle structure is a DAG, so inodes cannot be reserved per store path. Inodes
 * are never freed: they stand for immutable content and cost a few dozen bytes each.
 *
 * @module
 */
import { type AnyNode, type Directory, directoryNodes } from "../castore/directory.ts";

/** The root inode of every FUSE filesystem. */
export const ROOT_INO = 1;

/** One child of a populated directory. */
export interface DirChild {
  /** The child's inode. */
  ino: number;
  /** The child's node (name, digest/target, size). */
  node: AnyNode;
}

/** A directory's children in name order, with an index by name. */
export interface DirChildren {
  /** Children in byte-wise name order. */
  list: DirChild[];
  /** Name (bytes as a latin1 string) to index into `list`. */
  byName: Map<string, number>;
}

/** What an inode stands for. */
export type InodeData =
  | { kind: "file"; digest: Uint8Array; size: number; executable: boolean }
  | { kind: "symlink"; target: Uint8Array }
  | {
    kind: "directory";
    digest: Uint8Array;
    size: number;
    /** Null until the Directory has been fetched (directories are fetched lazily). */
    children: DirChildren | null;
  };

/** Bytes as a string with one char per byte: a cheap, exact Map key. */
export function bytesKey(b: Uint8Array): string {
  if (b.length <= 4096) return String.fromCharCode.apply(null, b as unknown as number[]);
  let s = "";
  for (let i = 0; i < b.length; i += 4096) {
    s += String.fromCharCode.apply(null, b.subarray(i, i + 4096) as unknown as number[]);
  }
  return s;
}

/** Allocates inodes and keeps what they stand for. */
export class InodeTracker {
  #data: (InodeData | undefined)[] = [undefined, undefined]; // index = inode; 1 = root
  #files = new Map<string, number>();
  #symlinks = new Map<string, number>();
  #dirs = new Map<string, number>();

  /** What an inode stands for, or undefined (the root and unknown inodes). */
  get(ino: number): InodeData | undefined {
    return this.#data[ino];
  }

  /** Number of inodes allocated, the root included. */
  get count(): number {
    return this.#data.length - 1;
  }

  /** The inode for a node, allocated on first sight. A directory starts unpopulated. */
  put(node: AnyNode): number {
    switch (node.case) {
      case "file": {
        const digest = node.value.digest;
        const key = bytesKey(digest) + (node.value.executable ? "x" : "");
        return this.#intern(this.#files, key, () => ({
          kind: "file",
          digest,
          size: node.value.size,
          executable: node.value.executable,
        }));
      }
      case "symlink": {
        const target = node.value.target;
        return this.#intern(this.#symlinks, bytesKey(target), () => ({ kind: "symlink", target }));
      }
      case "directory": {
        const digest = node.value.digest;
        return this.#intern(this.#dirs, bytesKey(digest), () => ({
          kind: "directory",
          digest,
          size: node.value.size,
          children: null,
        }));
      }
    }
  }

  /**
   * Fills in a directory inode's children from its fetched Directory, allocating their inodes.
   * Populating twice (two concurrent fetches) keeps the first result.
   */
  populate(ino: number, directory: Directory): DirChildren {
    const data = this.#data[ino];
    if (!data || data.kind !== "directory") throw new Error(`inode ${ino} is not a directory`);
    if (data.children) return data.children;
    const list: DirChild[] = [];
    const byName = new Map<string, number>();
    for (const node of directoryNodes(directory)) {
      byName.set(bytesKey(node.value.name), list.length);
      list.push({ ino: this.put(node), node });
    }
    data.children = { list, byName };
    return data.children;
  }

  #intern(index: Map<string, number>, key: string, make: () => InodeData): number {
    let ino = index.get(key);
    if (ino === undefined) {
      ino = this.#data.length;
      this.#data.push(make());
      index.set(key, ino);
    }
    return ino;
  }
}
