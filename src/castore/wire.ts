/**
 * Protobuf wire encoding of the castore messages (`Directory`, `Node`), written by hand.
 *
 * The output is byte-identical to protobuf-es's `toBinary` for these messages (fields in number
 * order, proto3 defaults omitted); decoding keeps what protobuf-es keeps except unknown fields,
 * which are dropped, as tvix (prost) drops them. Why not protobuf-es here: loading its runtime
 * and the generated descriptors costs ~25 ms at startup, a tenth of importing a 5,000-file tree,
 * and the importer needs nothing else from it. The gRPC layer still uses protobuf-es.
 *
 * @module
 */
import type {
  Directory,
  DirectoryNode,
  FileNode,
  Node,
  SymlinkNode,
} from "../gen/tvix/castore/protos/castore_pb.ts";
import { InvalidRequestError } from "../base/errors.ts";

/** Thrown for bytes that are not a valid encoding of the expected message. */
export class WireError extends InvalidRequestError {
  /** Creates the error; `what` names the message being decoded. */
  constructor(what: string, why: string) {
    super(`cannot decode ${what}: ${why}`);
    this.name = "WireError";
  }
}

/** Wire types. */
const VARINT = 0, I64 = 1, LEN = 2, SGROUP = 3, EGROUP = 4, I32 = 5;

/** An append-only byte buffer with the few protobuf primitives these messages need. */
export class WireWriter {
  #buf: Uint8Array;
  #len = 0;

  /** A writer whose buffer starts at `capacity` bytes (it grows as needed). */
  constructor(capacity = 256) {
    this.#buf = new Uint8Array(capacity);
  }

  #room(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    const next = new Uint8Array(Math.max(this.#buf.length * 2, this.#len + n));
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
  }

  /** A varint of a non-negative safe integer. */
  varint(n: number): this {
    this.#room(10);
    while (n > 0x7f) {
      this.#buf[this.#len++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.#buf[this.#len++] = n;
    return this;
  }

  /** A varint of an unsigned 64-bit integer. */
  varint64(n: bigint): this {
    this.#room(10);
    n = BigInt.asUintN(64, n);
    while (n > 0x7fn) {
      this.#buf[this.#len++] = Number(n & 0x7fn) | 0x80;
      n >>= 7n;
    }
    this.#buf[this.#len++] = Number(n);
    return this;
  }

  /** A field key. */
  tag(field: number, wireType: number): this {
    return this.varint(field * 8 + wireType);
  }

  /** The key and length of a length-delimited field whose `len` bytes the caller writes next. */
  lenPrefix(field: number, len: number): this {
    return this.tag(field, LEN).varint(len);
  }

  /** A length-delimited field. */
  bytes(field: number, data: Uint8Array): this {
    this.tag(field, LEN).varint(data.length);
    this.#room(data.length);
    this.#buf.set(data, this.#len);
    this.#len += data.length;
    return this;
  }

  /** The bytes written so far (a copy). */
  finish(): Uint8Array {
    return this.#buf.slice(0, this.#len);
  }
}

/** Reads fields of one message from `bytes`. */
export class WireReader {
  #b: Uint8Array;
  #pos = 0;
  #what: string;

  /** Reads `bytes` as a `what` (the name is used in errors). */
  constructor(bytes: Uint8Array, what: string) {
    this.#b = bytes;
    this.#what = what;
  }

  /** True while fields remain. */
  more(): boolean {
    return this.#pos < this.#b.length;
  }

  #fail(why: string): never {
    throw new WireError(this.#what, why);
  }

  /** A varint as a JS number (exact up to 2^53; larger values lose low bits). */
  varint(): number {
    let n = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.#pos >= this.#b.length) this.#fail("premature end of data");
      const byte = this.#b[this.#pos++];
      n += (byte & 0x7f) * mul;
      if (byte < 0x80) return n;
      mul *= 0x80;
    }
    this.#fail("varint longer than 10 bytes");
  }

  /** A varint as an unsigned 64-bit integer. */
  varint64(): bigint {
    let n = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (this.#pos >= this.#b.length) this.#fail("premature end of data");
      const byte = this.#b[this.#pos++];
      n |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return BigInt.asUintN(64, n);
    }
    this.#fail("varint longer than 10 bytes");
  }

  /** A uint32 field (a varint's low 32 bits, as protobuf decoders take it). */
  uint32(): number {
    const start = this.#pos;
    const n = this.varint();
    if (n <= 0xffff_ffff) return n;
    // Beyond 2^53 a number has lost the low bits: take them from the bytes themselves.
    let low = 0;
    for (let i = 0; i < 5; i++) low += (this.#b[start + i] & 0x7f) * 2 ** (7 * i);
    return low % 2 ** 32;
  }

  /** The next field key as `[field, wireType]`. */
  tag(): [number, number] {
    const key = this.varint();
    const field = Math.floor(key / 8);
    if (field < 1 || field > 0x1fff_ffff) this.#fail(`invalid field number ${field}`);
    return [field, key % 8];
  }

  /** A length-delimited value (a view into the input). */
  bytes(): Uint8Array {
    const n = this.varint();
    if (this.#pos + n > this.#b.length) this.#fail("premature end of data");
    const out = this.#b.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }

  /** Checks that `field` came with `wireType`. */
  expect(field: number, got: number, wireType: number): void {
    if (got !== wireType) this.#fail(`field ${field} has wire type ${got}, expected ${wireType}`);
  }

  /** A bytes field's value (copied out of the input). */
  bytesField(field: number, wireType: number): Uint8Array {
    this.expect(field, wireType, LEN);
    return this.bytes().slice();
  }

  /** An embedded message field's encoding (a view into the input). */
  messageField(field: number, wireType: number): Uint8Array {
    this.expect(field, wireType, LEN);
    return this.bytes();
  }

  /** A uint32 field's value. */
  uint32Field(field: number, wireType: number): number {
    this.expect(field, wireType, VARINT);
    return this.uint32();
  }

  /** A bool field's value. */
  boolField(field: number, wireType: number): boolean {
    this.expect(field, wireType, VARINT);
    return this.varint() !== 0;
  }

  /** Skips a field of an unknown number. */
  skip(field: number, wireType: number): void {
    switch (wireType) {
      case VARINT:
        this.varint();
        return;
      case I64:
        this.#advance(8);
        return;
      case LEN:
        this.bytes();
        return;
      case I32:
        this.#advance(4);
        return;
      case SGROUP:
        for (;;) {
          const [f, wt] = this.tag();
          if (wt === EGROUP) {
            if (f !== field) this.#fail(`group ${field} ended by ${f}`);
            return;
          }
          this.skip(f, wt);
        }
      default:
        this.#fail(`invalid wire type ${wireType}`);
    }
  }

  #advance(n: number): void {
    if (this.#pos + n > this.#b.length) this.#fail("premature end of data");
    this.#pos += n;
  }
}

// ---- castore messages ----

function writeDirectoryNode(w: WireWriter, n: DirectoryNode): void {
  if (n.name.length) w.bytes(1, n.name);
  if (n.digest.length) w.bytes(2, n.digest);
  if (n.size) w.tag(3, VARINT).varint(n.size);
}

function writeFileNode(w: WireWriter, n: FileNode): void {
  if (n.name.length) w.bytes(1, n.name);
  if (n.digest.length) w.bytes(2, n.digest);
  if (n.size) w.tag(3, VARINT).varint(n.size);
  if (n.executable) w.tag(4, VARINT).varint(1);
}

function writeSymlinkNode(w: WireWriter, n: SymlinkNode): void {
  if (n.name.length) w.bytes(1, n.name);
  if (n.target.length) w.bytes(2, n.target);
}

/** Encoded length of a varint of `n` (a non-negative safe integer). */
function varintLen(n: number): number {
  let len = 1;
  while (n > 0x7f) {
    n = Math.floor(n / 0x80);
    len++;
  }
  return len;
}

/** Encoded length of a bytes field numbered 1–15 holding `len` bytes, 0 when empty. */
function bytesLen(len: number): number {
  return len ? 1 + varintLen(len) + len : 0;
}

// Each node's length is computed up front, so nodes are written straight into the message's
// buffer: no buffer per node (a directory of 100 files would otherwise allocate 200 times).
function directoryNodeLen(n: DirectoryNode): number {
  return bytesLen(n.name.length) + bytesLen(n.digest.length) + (n.size ? 1 + varintLen(n.size) : 0);
}

function fileNodeLen(n: FileNode): number {
  return bytesLen(n.name.length) + bytesLen(n.digest.length) +
    (n.size ? 1 + varintLen(n.size) : 0) + (n.executable ? 2 : 0);
}

function symlinkNodeLen(n: SymlinkNode): number {
  return bytesLen(n.name.length) + bytesLen(n.target.length);
}

function sub<T>(write: (w: WireWriter, m: T) => void, m: T): Uint8Array {
  const w = new WireWriter();
  write(w, m);
  return w.finish();
}

/** Encodes a Directory (the canonical encoding its digest is taken over). */
export function encodeDirectoryWire(d: Directory): Uint8Array {
  let total = 0;
  for (const n of d.directories) total += bytesLen(directoryNodeLen(n)) || 2;
  for (const n of d.files) total += bytesLen(fileNodeLen(n)) || 2;
  for (const n of d.symlinks) total += bytesLen(symlinkNodeLen(n)) || 2;
  const w = new WireWriter(total);
  for (const n of d.directories) writeDirectoryNode(w.lenPrefix(1, directoryNodeLen(n)), n);
  for (const n of d.files) writeFileNode(w.lenPrefix(2, fileNodeLen(n)), n);
  for (const n of d.symlinks) writeSymlinkNode(w.lenPrefix(3, symlinkNodeLen(n)), n);
  return w.finish();
}

/** Writes a Node's fields (the oneof) into `w`. */
export function writeNode(w: WireWriter, n: Node): void {
  const v = n.node;
  if (v.case === "directory") {
    writeDirectoryNode(w.lenPrefix(1, directoryNodeLen(v.value)), v.value);
  } else if (v.case === "file") writeFileNode(w.lenPrefix(2, fileNodeLen(v.value)), v.value);
  else if (v.case === "symlink") writeSymlinkNode(w.lenPrefix(3, symlinkNodeLen(v.value)), v.value);
}

/** Encodes a Node. */
export function encodeNodeWire(n: Node): Uint8Array {
  return sub(writeNode, n);
}

function readDirectoryNode(bytes: Uint8Array): DirectoryNode {
  const r = new WireReader(bytes, "tvix.castore.v1.DirectoryNode");
  const n: DirectoryNode = {
    $typeName: "tvix.castore.v1.DirectoryNode",
    name: new Uint8Array(0),
    digest: new Uint8Array(0),
    size: 0,
  };
  while (r.more()) {
    const [f, wt] = r.tag();
    if (f === 1) n.name = r.bytesField(f, wt);
    else if (f === 2) n.digest = r.bytesField(f, wt);
    else if (f === 3) n.size = r.uint32Field(f, wt);
    else r.skip(f, wt);
  }
  return n;
}

function readFileNode(bytes: Uint8Array): FileNode {
  const r = new WireReader(bytes, "tvix.castore.v1.FileNode");
  const n: FileNode = {
    $typeName: "tvix.castore.v1.FileNode",
    name: new Uint8Array(0),
    digest: new Uint8Array(0),
    size: 0,
    executable: false,
  };
  while (r.more()) {
    const [f, wt] = r.tag();
    if (f === 1) n.name = r.bytesField(f, wt);
    else if (f === 2) n.digest = r.bytesField(f, wt);
    else if (f === 3) n.size = r.uint32Field(f, wt);
    else if (f === 4) n.executable = r.boolField(f, wt);
    else r.skip(f, wt);
  }
  return n;
}

function readSymlinkNode(bytes: Uint8Array): SymlinkNode {
  const r = new WireReader(bytes, "tvix.castore.v1.SymlinkNode");
  const n: SymlinkNode = {
    $typeName: "tvix.castore.v1.SymlinkNode",
    name: new Uint8Array(0),
    target: new Uint8Array(0),
  };
  while (r.more()) {
    const [f, wt] = r.tag();
    if (f === 1) n.name = r.bytesField(f, wt);
    else if (f === 2) n.target = r.bytesField(f, wt);
    else r.skip(f, wt);
  }
  return n;
}

/** Decodes a Directory; throws {@linkcode WireError} on malformed bytes. */
export function decodeDirectoryWire(bytes: Uint8Array): Directory {
  const r = new WireReader(bytes, "tvix.castore.v1.Directory");
  const d: Directory = {
    $typeName: "tvix.castore.v1.Directory",
    directories: [],
    files: [],
    symlinks: [],
  };
  while (r.more()) {
    const [f, wt] = r.tag();
    if (f === 1) d.directories.push(readDirectoryNode(r.messageField(f, wt)));
    else if (f === 2) d.files.push(readFileNode(r.messageField(f, wt)));
    else if (f === 3) d.symlinks.push(readSymlinkNode(r.messageField(f, wt)));
    else r.skip(f, wt);
  }
  return d;
}

/** Decodes a Node; throws {@linkcode WireError} on malformed bytes. */
export function decodeNodeWire(bytes: Uint8Array): Node {
  const r = new WireReader(bytes, "tvix.castore.v1.Node");
  const n: Node = { $typeName: "tvix.castore.v1.Node", node: { case: undefined } };
  while (r.more()) {
    const [f, wt] = r.tag();
    // A oneof member seen twice is merged, as protobuf decoders do for message fields.
    if (f === 1) {
      const prev = n.node.case === "directory" ? sub(writeDirectoryNode, n.node.value) : null;
      n.node = { case: "directory", value: readDirectoryNode(merged(prev, r.messageField(f, wt))) };
    } else if (f === 2) {
      const prev = n.node.case === "file" ? sub(writeFileNode, n.node.value) : null;
      n.node = { case: "file", value: readFileNode(merged(prev, r.messageField(f, wt))) };
    } else if (f === 3) {
      const prev = n.node.case === "symlink" ? sub(writeSymlinkNode, n.node.value) : null;
      n.node = { case: "symlink", value: readSymlinkNode(merged(prev, r.messageField(f, wt))) };
    } else r.skip(f, wt);
  }
  return n;
}

/** Two encodings of one message, concatenated: decoding that merges them. */
export function merged(prev: Uint8Array | null, next: Uint8Array): Uint8Array {
  if (!prev || prev.length === 0) return next;
  const out = new Uint8Array(prev.length + next.length);
  out.set(prev);
  out.set(next, prev.length);
  return out;
}
