/**
 * The store as a read-only filesystem (the semantics of tvix-store's `TvixStoreFs`): the root
 * holds store paths, found by name on lookup and fetched lazily from the PathInfoService;
 * directories are fetched lazily from the DirectoryService; file contents come from the
 * BlobService, every chunk verified before it is returned. Missing directories and blobs, and
 * corrupt data, are EIO (logged); the mount keeps serving.
 *
 * @module
 */
import type { BlobReader, BlobService } from "../castore/blob_service.ts";
import { B3Digest } from "../castore/digest.ts";
import { openVerifiedRead } from "../castore/verify.ts";
import { type AnyNode, fromNodeMessage } from "../castore/directory.ts";
import type { DirectoryService } from "../castore/directory_service.ts";
import type { PathInfoService } from "../store/path_info_service.ts";
import { Errno } from "../sys/libc.ts";
import { bytesKey, type DirChildren, type InodeData, InodeTracker, ROOT_INO } from "./inodes.ts";
import { type Attr, type DirEntry, S_IFDIR, S_IFLNK, S_IFREG } from "./protocol.ts";
import { FuseErrno, type FuseOps, type Logger, type Opened } from "./session.ts";
import { StorePath } from "../store/store_path.ts";

/** The services and switches behind a {@linkcode StoreFs}. */
export interface StoreFsOptions {
  /** File contents. */
  blobs: BlobService;
  /** Directory structure. */
  directories: DirectoryService;
  /** Store paths in the root. */
  pathInfos: PathInfoService;
  /** Allow listing the root (every PathInfo); otherwise listing it is EPERM. */
  listRoot?: boolean;
  /** Log sink. */
  log?: Logger;
}

const ROOT_ATTR: Attr = { ino: ROOT_INO, size: 0, mode: S_IFDIR | 0o555, nlink: 1 };
const DOT = new Uint8Array([0x2e]);
const DOTDOT = new Uint8Array([0x2e, 0x2e]);

/** Attributes like /nix/store: files 0444, executables 0555, directories 0555, epoch times. */
export function attrOf(ino: number, data: InodeData): Attr {
  switch (data.kind) {
    case "file":
      return { ino, size: data.size, mode: S_IFREG | (data.executable ? 0o555 : 0o444), nlink: 1 };
    case "symlink":
      return { ino, size: data.target.length, mode: S_IFLNK | 0o444, nlink: 1 };
    case "directory":
      // nlink 1 tells find(1) not to count subdirectories from it.
      return { ino, size: data.size, mode: S_IFDIR | 0o555, nlink: 1 };
  }
}

/** {@linkcode FuseOps} over the three store services. */
export class StoreFs implements FuseOps {
  #o: StoreFsOptions;
  #log: Logger;
  #tracker = new InodeTracker();
  /** Store path basename (latin1 key) to the inode of its root node. */
  #roots = new Map<string, number>();
  #rootLookups = new Map<string, Promise<number | null>>();
  #dirFetches = new Map<number, Promise<DirChildren>>();
  #dirEntries = new Map<number, DirEntry[]>();
  #files = new Map<number, BlobReader>();
  #rootListings = new Map<number, DirEntry[]>();
  #nextFh = 1;

  /** Creates the filesystem; nothing is fetched until the kernel asks. */
  constructor(opts: StoreFsOptions) {
    this.#o = opts;
    this.#log = opts.log ?? (() => {});
  }

  /** The {@linkcode FuseOps} method of the same name. */
  inodeCount(): number {
    return this.#tracker.count;
  }

  #data(ino: number): InodeData {
    const d = this.#tracker.get(ino);
    if (!d) throw new FuseErrno(Errno.ENOENT, `unknown inode ${ino}`);
    return d;
  }

  /** The {@linkcode FuseOps} method of the same name. */
  async lookup(parent: number, name: Uint8Array): Promise<Attr> {
    if (parent === ROOT_INO) {
      const ino = await this.#lookupRoot(name);
      if (ino === null) throw new FuseErrno(Errno.ENOENT);
      return attrOf(ino, this.#data(ino));
    }
    const children = await this.#children(parent);
    const i = children.byName.get(bytesKey(name));
    if (i === undefined) throw new FuseErrno(Errno.ENOENT);
    const ino = children.list[i].ino;
    return attrOf(ino, this.#data(ino));
  }

  #lookupRoot(name: Uint8Array): Promise<number | null> | number | null {
    const key = bytesKey(name);
    const known = this.#roots.get(key);
    if (known !== undefined) return known;
    // Anything that is not a store path basename simply does not exist.
    let parsed: StorePath;
    try {
      parsed = StorePath.fromBytes(name);
    } catch {
      return null;
    }
    let p = this.#rootLookups.get(key);
    if (!p) {
      p = this.#fetchRoot(key, parsed.digest, name).finally(() => this.#rootLookups.delete(key));
      this.#rootLookups.set(key, p);
    }
    return p;
  }

  async #fetchRoot(key: string, digest: Uint8Array, name: Uint8Array): Promise<number | null> {
    let info;
    try {
      info = await this.#o.pathInfos.get(digest);
    } catch (e) {
      throw new FuseErrno(Errno.EIO, `path info ${key}: ${e instanceof Error ? e.message : e}`);
    }
    if (!info) return null;
    let node: AnyNode;
    try {
      node = fromNodeMessage(info.node);
    } catch {
      throw new FuseErrno(Errno.EIO, `path info ${key} has no root node`);
    }
    // The hash part alone is not enough: the whole name must match.
    if (bytesKey(node.value.name) !== bytesKey(name)) return null;
    const ino = this.#tracker.put(node);
    this.#roots.set(key, ino);
    return ino;
  }

  /** The children of a directory inode, fetching the Directory on first use. */
  #children(ino: number): Promise<DirChildren> | DirChildren {
    const data = this.#data(ino);
    if (data.kind !== "directory") throw new FuseErrno(Errno.ENOTDIR);
    if (data.children) return data.children;
    let p = this.#dirFetches.get(ino);
    if (!p) {
      p = (async () => {
        const digest = B3Digest.fromBytes(data.digest);
        let dir;
        try {
          dir = await this.#o.directories.get(digest);
        } catch (e) {
          throw new FuseErrno(
            Errno.EIO,
            `directory ${digest}: ${e instanceof Error ? e.message : e}`,
          );
        }
        if (!dir) throw new FuseErrno(Errno.EIO, `directory ${digest} not found`);
        return this.#tracker.populate(ino, dir);
      })().finally(() => this.#dirFetches.delete(ino));
      this.#dirFetches.set(ino, p);
    }
    return p;
  }

  /** The {@linkcode FuseOps} method of the same name. */
  getattr(ino: number): Attr {
    if (ino === ROOT_INO) return ROOT_ATTR;
    return attrOf(ino, this.#data(ino));
  }

  /** The {@linkcode FuseOps} method of the same name. */
  readlink(ino: number): Uint8Array {
    const data = ino === ROOT_INO ? null : this.#data(ino);
    if (data?.kind !== "symlink") throw new FuseErrno(Errno.EINVAL);
    return data.target;
  }

  /** The {@linkcode FuseOps} method of the same name. */
  async open(ino: number): Promise<Opened> {
    const data = ino === ROOT_INO ? null : this.#data(ino);
    if (data?.kind !== "file") throw new FuseErrno(Errno.EISDIR);
    const digest = B3Digest.fromBytes(data.digest);
    let reader;
    try {
      reader = await openVerifiedRead(this.#o.blobs, digest);
    } catch (e) {
      throw new FuseErrno(Errno.EIO, `blob ${digest}: ${e instanceof Error ? e.message : e}`);
    }
    if (!reader) throw new FuseErrno(Errno.EIO, `blob ${digest} not found`);
    const fh = this.#nextFh++;
    this.#files.set(fh, reader);
    return { fh, keepCache: true };
  }

  /** The {@linkcode FuseOps} method of the same name. */
  async read(ino: number, fh: number, offset: number, size: number): Promise<Uint8Array> {
    const reader = this.#files.get(fh);
    if (!reader) throw new FuseErrno(Errno.EBADF, `unknown file handle ${fh}`);
    const data = this.#data(ino);
    const fileSize = data.kind === "file" ? data.size : 0;
    const want = Math.min(size, Math.max(0, fileSize - offset));
    if (want === 0) return new Uint8Array(0);
    try {
      const first = await reader.readAt(offset, want);
      if (first.length === want || first.length === 0) return first;
      // A reader may return less than asked; the kernel wants a full answer except at EOF.
      const out = new Uint8Array(want);
      out.set(first);
      let got = first.length;
      while (got < want) {
        const more = await reader.readAt(offset + got, want - got);
        if (more.length === 0) break;
        out.set(more, got);
        got += more.length;
      }
      return out.subarray(0, got);
    } catch (e) {
      throw new FuseErrno(
        Errno.EIO,
        `reading blob at ${offset}: ${e instanceof Error ? e.message : e}`,
      );
    }
  }

  /** The {@linkcode FuseOps} method of the same name. */
  async release(_ino: number, fh: number): Promise<void> {
    const reader = this.#files.get(fh);
    this.#files.delete(fh);
    await reader?.close().catch((e) => this.#log("warn", `closing blob reader: ${e}`));
  }

  /** The {@linkcode FuseOps} method of the same name. */
  async opendir(ino: number): Promise<Opened> {
    // Without root listings no directory needs per-open state: ENOSYS tells the kernel to
    // skip OPENDIR/RELEASEDIR from now on and cache listings (two round trips less per
    // directory visited).
    if (!this.#o.listRoot) throw new FuseErrno(Errno.ENOSYS);
    if (ino !== ROOT_INO) {
      if (this.#data(ino).kind !== "directory") throw new FuseErrno(Errno.ENOTDIR);
      // The Directory itself is fetched by the first readdir (as in the seed).
      return { fh: 0, keepCache: true };
    }
    // A snapshot per open, so paging through a changing store stays consistent.
    const entries: DirEntry[] = [
      { name: DOT, attr: ROOT_ATTR, lookup: false },
      { name: DOTDOT, attr: ROOT_ATTR, lookup: false },
    ];
    try {
      for await (const info of this.#o.pathInfos.list()) {
        let node: AnyNode;
        try {
          node = fromNodeMessage(info.node);
        } catch {
          continue;
        }
        const key = bytesKey(node.value.name);
        let ino = this.#roots.get(key);
        if (ino === undefined) {
          ino = this.#tracker.put(node);
          this.#roots.set(key, ino);
        }
        entries.push({ name: node.value.name, attr: attrOf(ino, this.#data(ino)), lookup: true });
      }
    } catch (e) {
      throw new FuseErrno(Errno.EIO, `listing path infos: ${e instanceof Error ? e.message : e}`);
    }
    const fh = this.#nextFh++;
    this.#rootListings.set(fh, entries);
    return { fh, keepCache: false };
  }

  /** The {@linkcode FuseOps} method of the same name. */
  async readdir(ino: number, fh: number): Promise<readonly DirEntry[]> {
    if (ino === ROOT_INO) {
      const l = this.#rootListings.get(fh);
      if (!l) throw new FuseErrno(Errno.EPERM); // same as ipfs/kubo and the seed
      return l;
    }
    const cached = this.#dirEntries.get(ino);
    if (cached) return cached;
    const children = await this.#children(ino);
    const self = attrOf(ino, this.#data(ino));
    const entries: DirEntry[] = [
      { name: DOT, attr: self, lookup: false },
      { name: DOTDOT, attr: ROOT_ATTR, lookup: false }, // a DAG has no single parent
    ];
    for (const c of children.list) {
      entries.push({
        name: c.node.value.name,
        attr: attrOf(c.ino, this.#data(c.ino)),
        lookup: true,
      });
    }
    this.#dirEntries.set(ino, entries);
    this.#log("debug", `listed ${entries.length - 2} entries of inode ${ino}`);
    return entries;
  }

  /** The {@linkcode FuseOps} method of the same name. */
  releasedir(ino: number, fh: number): void {
    if (ino === ROOT_INO) this.#rootListings.delete(fh);
  }
}
