/**
 * Protobuf wire encoding of `tvix.store.v1.PathInfo`, by hand, for the same reasons and with the
 * same guarantees as `../castore/wire.ts`: byte-identical to protobuf-es's `toBinary`, unknown
 * fields dropped on decoding.
 *
 * @module
 */
import type {
  NARInfo,
  NARInfo_CA,
  NARInfo_Signature,
  PathInfo,
  StorePath,
} from "../gen/tvix/store/protos/pathinfo_pb.ts";
import { decodeNodeWire, merged, WireReader, WireWriter, writeNode } from "../castore/wire.ts";

const VARINT = 0;
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder(); // not fatal: bad bytes become U+FFFD, as in protobuf-es

function writeNarInfo(w: WireWriter, n: NARInfo): void {
  if (n.narSize !== 0n) w.tag(1, VARINT).varint64(n.narSize);
  if (n.narSha256.length) w.bytes(2, n.narSha256);
  for (const s of n.signatures) {
    const sw = new WireWriter();
    if (s.name.length) sw.bytes(1, utf8.encode(s.name));
    if (s.data.length) sw.bytes(2, s.data);
    w.bytes(3, sw.finish());
  }
  for (const name of n.referenceNames) w.bytes(4, utf8.encode(name));
  if (n.deriver) {
    const dw = new WireWriter();
    if (n.deriver.name.length) dw.bytes(1, utf8.encode(n.deriver.name));
    if (n.deriver.digest.length) dw.bytes(2, n.deriver.digest);
    w.bytes(5, dw.finish());
  }
  if (n.ca) {
    const cw = new WireWriter();
    // An enum is an int32: negative values (unknown to us, kept as decoded) take ten bytes.
    if (n.ca.type !== 0) cw.tag(1, VARINT).varint64(BigInt.asUintN(64, BigInt(n.ca.type)));
    if (n.ca.digest.length) cw.bytes(2, n.ca.digest);
    w.bytes(6, cw.finish());
  }
}

/** Encodes a PathInfo. */
export function encodePathInfoWire(p: PathInfo): Uint8Array {
  const w = new WireWriter();
  if (p.node) {
    const nw = new WireWriter();
    writeNode(nw, p.node);
    w.bytes(1, nw.finish());
  }
  for (const r of p.references) w.bytes(2, r);
  if (p.narinfo) {
    const nw = new WireWriter();
    writeNarInfo(nw, p.narinfo);
    w.bytes(3, nw.finish());
  }
  return w.finish();
}

function readSignature(bytes: Uint8Array): NARInfo_Signature {
  const r = new WireReader(bytes, "tvix.store.v1.NARInfo.Signature");
  const s: NARInfo_Signature = {
    $typeName: "tvix.store.v1.NARInfo.Signature",
    name: "",
    data: new Uint8Array(0),
  };
  while (r.more()) {
    const [f, wt] = r.tag();
    if (f === 1) s.name = fromUtf8.decode(r.messageField(f, wt));
    else if (f === 2) s.data = r.bytesField(f, wt);
    else r.skip(f, wt);
  }
  return s;
}

function readStorePath(bytes: Uint8Array): StorePath {
  const r = new WireReader(bytes, "tvix.store.v1.StorePath");
  const s: StorePath = {
    $typeName: "tvix.store.v1.StorePath",
    name: "",
    digest: new Uint8Array(0),
  };
  while (r.more()) {
    const [f, wt] = r.tag();
    if (f === 1) s.name = fromUtf8.decode(r.messageField(f, wt));
    else if (f === 2) s.digest = r.bytesField(f, wt);
    else r.skip(f, wt);
  }
  return s;
}

function readCA(bytes: Uint8Array): NARInfo_CA {
  const r = new WireReader(bytes, "tvix.store.v1.NARInfo.CA");
  const c: NARInfo_CA = {
    $typeName: "tvix.store.v1.NARInfo.CA",
    type: 0,
    digest: new Uint8Array(0),
  };
  while (r.more()) {
    const [f, wt] = r.tag();
    if (f === 1) {
      r.expect(f, wt, VARINT);
      c.type = Number(BigInt.asIntN(32, r.varint64()));
    } else if (f === 2) c.digest = r.bytesField(f, wt);
    else r.skip(f, wt);
  }
  return c;
}

function readNarInfo(bytes: Uint8Array): NARInfo {
  const r = new WireReader(bytes, "tvix.store.v1.NARInfo");
  const n: NARInfo = {
    $typeName: "tvix.store.v1.NARInfo",
    narSize: 0n,
    narSha256: new Uint8Array(0),
    signatures: [],
    referenceNames: [],
  };
  let deriver: Uint8Array | null = null;
  let ca: Uint8Array | null = null;
  while (r.more()) {
    const [f, wt] = r.tag();
    if (f === 1) {
      r.expect(f, wt, VARINT);
      n.narSize = r.varint64();
    } else if (f === 2) n.narSha256 = r.bytesField(f, wt);
    else if (f === 3) n.signatures.push(readSignature(r.messageField(f, wt)));
    else if (f === 4) n.referenceNames.push(fromUtf8.decode(r.messageField(f, wt)));
    else if (f === 5) deriver = merged(deriver, r.messageField(f, wt));
    else if (f === 6) ca = merged(ca, r.messageField(f, wt));
    else r.skip(f, wt);
  }
  if (deriver) n.deriver = readStorePath(deriver);
  if (ca) n.ca = readCA(ca);
  return n;
}

/** Decodes a PathInfo; throws `WireError` on malformed bytes. */
export function decodePathInfoWire(bytes: Uint8Array): PathInfo {
  const r = new WireReader(bytes, "tvix.store.v1.PathInfo");
  const p: PathInfo = { $typeName: "tvix.store.v1.PathInfo", references: [] };
  // Embedded messages seen more than once are merged, as protobuf decoders do.
  let node: Uint8Array | null = null;
  let narinfo: Uint8Array | null = null;
  while (r.more()) {
    const [f, wt] = r.tag();
    if (f === 1) node = merged(node, r.messageField(f, wt));
    else if (f === 2) p.references.push(r.bytesField(f, wt));
    else if (f === 3) narinfo = merged(narinfo, r.messageField(f, wt));
    else r.skip(f, wt);
  }
  if (node) p.node = decodeNodeWire(node);
  if (narinfo) p.narinfo = readNarInfo(narinfo);
  return p;
}
