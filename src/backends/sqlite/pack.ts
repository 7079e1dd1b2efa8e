/**
 * The pack file beside an SQLite store, `<file>-pack`: the bytes of large blobs, in 1 MiB
 * chunks at positions the database hands out. Bytes are written once per use of their space
 * (space no blob kept is handed out again), with `pwrite` on Deno's thread pool, so storing a
 * chunk costs the calling thread nothing but the call; reads are `pread`s there too. A chunk is
 * only reachable through a committed `blobs` row, written after the chunk's bytes were synced.
 *
 * @module
 */
import * as libc from "../../sys/libc.ts";

/** Chunk storage at byte positions: a file, or memory for `:memory:` databases. */
export interface Pack {
  /** Where it lives, for messages (`:memory:` in memory). */
  readonly path: string;
  /** Writes `data` at `pos`; `data` must not change until the promise settles. */
  write(pos: number, data: Uint8Array): Promise<void>;
  /**
   * Writes `parts` one after another from `pos` (the bytes of several small blobs); they must
   * not change until the promise settles.
   */
  writeParts(pos: number, parts: Uint8Array[]): Promise<void>;
  /** Writes `data` at `pos` on this thread (migrations). */
  writeSync(pos: number, data: Uint8Array): void;
  /** Reads `length` bytes at `pos`; fewer bytes there is an error naming the file. */
  read(pos: number, length: number): Promise<Uint8Array>;
  /** {@linkcode Pack.read} on this thread (small blobs). */
  readSync(pos: number, length: number): Uint8Array;
  /** Fills `into` with the bytes at `pos` (on the thread pool); `into` must not change meanwhile. */
  readInto(pos: number, into: Uint8Array): Promise<void>;
  /** {@linkcode Pack.readInto} on this thread. */
  readIntoSync(pos: number, into: Uint8Array): void;
  /** The file's descriptor for reads elsewhere, or -1 (in memory, or missing). */
  readonly fd: number;
  /** Makes everything written so far durable. */
  sync(): Promise<void>;
  /** Makes everything written so far durable, on this thread. */
  syncSync(): void;
  /** Cuts the file to `size` bytes (migrations restarting after a crash, space given back). */
  truncate(size: number): void;
  /** The size of the file (in memory: the end of the last chunk). */
  size(): number;
  /** Forgets the chunks starting in `pos` to `pos + length` (space given back; in memory). */
  discard(pos: number, length: number): void;
  /** Closes it. */
  close(): void;
}

/** The pack file beside the database at `path`. */
export function packFilePath(path: string): string {
  return `${path}-pack`;
}

/**
 * Opens the pack of the database at `path` (created if needed, unless `readOnly`); `:memory:`
 * gets a private one.
 */
export function openPack(path: string, options: { readOnly?: boolean } = {}): Pack {
  if (path === ":memory:") return new MemoryPack();
  return new FilePack(packFilePath(path), options.readOnly ?? false);
}

class FilePack implements Pack {
  readonly path: string;
  #name: Uint8Array;
  #fd: number;

  constructor(path: string, readOnly: boolean) {
    this.path = path;
    this.#name = libc.toBytes(path);
    if (!readOnly) {
      this.#fd = libc.openAt(libc.AT_FDCWD, this.#name, libc.O_RDWR | libc.O_CREAT, 0o644);
      return;
    }
    try {
      this.#fd = libc.openAt(libc.AT_FDCWD, this.#name, libc.O_RDONLY);
    } catch (e) {
      // A store without large blobs reads fine without it; reading a large blob says why not.
      if (!(e instanceof libc.LibcError && e.code === "ENOENT")) throw e;
      this.#fd = -1;
    }
  }

  write(pos: number, data: Uint8Array): Promise<void> {
    return libc.pwriteAllAsync(this.#fd, data, pos, this.#name);
  }

  async writeParts(pos: number, parts: Uint8Array[]): Promise<void> {
    // One pwritev per IOV_MAX parts, from the parts where they lie: neither a thread pool round
    // trip per part nor a copy of them all.
    for (let i = 0; i < parts.length; i += libc.IOV_MAX) {
      const group = parts.slice(i, i + libc.IOV_MAX);
      let total = 0;
      for (const p of group) total += p.length;
      let done = await libc.pwritevAsync(this.#fd, group, pos);
      // A short or failed write: the rest one part at a time, where a failure tells why (the
      // pool thread's errno is lost).
      if (done < total) {
        done = Math.max(done, 0);
        for (let k = 0, at = 0; k < group.length; at += group[k].length, k++) {
          const end = at + group[k].length;
          if (end <= done) continue;
          const skip = Math.max(0, done - at);
          await libc.pwriteAllAsync(this.#fd, group[k].subarray(skip), pos + at + skip, this.#name);
        }
      }
      pos += total;
    }
  }

  writeSync(pos: number, data: Uint8Array): void {
    libc.pwriteAll(this.#fd, data, pos, this.#name);
  }

  get fd(): number {
    return this.#fd;
  }

  async read(pos: number, length: number): Promise<Uint8Array> {
    const buf = new Uint8Array(length);
    await this.readInto(pos, buf);
    return buf;
  }

  readSync(pos: number, length: number): Uint8Array {
    const buf = new Uint8Array(length);
    this.readIntoSync(pos, buf);
    return buf;
  }

  async readInto(pos: number, into: Uint8Array): Promise<void> {
    if (this.#fd < 0) throw new Error(`${this.path} is missing`);
    for (let got = 0; got < into.length;) {
      const n = await libc.preadAsync(this.#fd, into.subarray(got), pos + got, this.#name);
      if (n === 0) {
        throw new Error(`${this.path} ends before byte ${pos + into.length} (truncated?)`);
      }
      got += n;
    }
  }

  readIntoSync(pos: number, into: Uint8Array): void {
    if (this.#fd < 0) throw new Error(`${this.path} is missing`);
    for (let got = 0; got < into.length;) {
      const n = libc.pread(this.#fd, into.subarray(got), pos + got, this.#name);
      if (n === 0) {
        throw new Error(`${this.path} ends before byte ${pos + into.length} (truncated?)`);
      }
      got += n;
    }
  }

  sync(): Promise<void> {
    return libc.fdatasyncAsync(this.#fd, this.#name);
  }

  syncSync(): void {
    libc.fdatasync(this.#fd, this.#name);
  }

  truncate(size: number): void {
    libc.ftruncate(this.#fd, size, this.#name);
  }

  size(): number {
    return this.#fd < 0 ? 0 : libc.fstat(this.#fd, this.#name).size;
  }

  discard(): void {
    // The bytes stay until overwritten or cut off: nothing points at them any more.
  }

  close(): void {
    if (this.#fd >= 0) libc.close(this.#fd);
    this.#fd = -1;
  }
}

/** Chunks kept in memory, by position (each write is one chunk, read back whole or in part). */
class MemoryPack implements Pack {
  readonly path = ":memory:";
  readonly fd = -1;
  #chunks = new Map<number, Uint8Array>();

  write(pos: number, data: Uint8Array): Promise<void> {
    this.writeSync(pos, data);
    return Promise.resolve();
  }

  writeParts(pos: number, parts: Uint8Array[]): Promise<void> {
    for (const p of parts) {
      this.writeSync(pos, p);
      pos += p.length;
    }
    return Promise.resolve();
  }

  writeSync(pos: number, data: Uint8Array): void {
    this.#chunks.set(pos, data.slice());
  }

  read(pos: number, length: number): Promise<Uint8Array> {
    try {
      return Promise.resolve(this.readSync(pos, length));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  readSync(pos: number, length: number): Uint8Array {
    const c = this.#chunks.get(pos);
    if (!c || c.length < length) throw new Error(`no ${length} bytes stored at ${pos} in memory`);
    return c.subarray(0, length);
  }

  readInto(pos: number, into: Uint8Array): Promise<void> {
    try {
      this.readIntoSync(pos, into);
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  readIntoSync(pos: number, into: Uint8Array): void {
    // A read may span neighbouring writes (small blobs stored back to back).
    for (let got = 0; got < into.length;) {
      const c = this.#chunks.get(pos + got);
      if (!c) throw new Error(`no ${into.length - got} bytes stored at ${pos + got} in memory`);
      const n = Math.min(c.length, into.length - got);
      into.set(c.subarray(0, n), got);
      got += n;
    }
  }

  sync(): Promise<void> {
    return Promise.resolve();
  }

  syncSync(): void {}

  truncate(size: number): void {
    for (const pos of [...this.#chunks.keys()]) if (pos >= size) this.#chunks.delete(pos);
  }

  size(): number {
    let end = 0;
    for (const [pos, c] of this.#chunks) end = Math.max(end, pos + c.length);
    return end;
  }

  discard(pos: number, length: number): void {
    for (const p of [...this.#chunks.keys()]) {
      if (p >= pos && p < pos + length) this.#chunks.delete(p);
    }
  }

  close(): void {
    this.#chunks.clear();
  }
}

/** Chunk positions as stored in a `blobs` row: 8 bytes each, little-endian. */
export function encodePositions(positions: number[]): Uint8Array {
  const out = new Uint8Array(positions.length * 8);
  const v = new DataView(out.buffer);
  positions.forEach((p, i) => {
    v.setUint32(i * 8, p % 0x1_0000_0000, true);
    v.setUint32(i * 8 + 4, Math.floor(p / 0x1_0000_0000), true);
  });
  return out;
}

/** The inverse of {@linkcode encodePositions}. */
export function decodePositions(bytes: Uint8Array): number[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: number[] = [];
  for (let o = 0; o + 8 <= bytes.length; o += 8) {
    out.push(v.getUint32(o, true) + v.getUint32(o + 4, true) * 0x1_0000_0000);
  }
  return out;
}
