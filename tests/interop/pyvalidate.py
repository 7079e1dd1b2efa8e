#!/usr/bin/python3
"""grpcio client sending what a nixcas daemon must refuse: undecodable protobuf on every RPC,
invalid symlinks and names, broken and too long Directory Put streams, changed store paths and
PathInfos whose data is missing. The daemon must limit a Put to 10 directories.

usage: PYGEN=stubdir pyvalidate.py TARGET       (TARGET: 127.0.0.1:port or unix:///abs/sock)
Prints one line per check and "ALL OK" at the end; exits non-zero at the first failure.
"""
import sys

from common import b3, cpb, dir_digest, dir_size

import grpc
from tvix.castore.protos import rpc_directory_pb2_grpc as dgrpc
from tvix.castore.protos import rpc_blobstore_pb2 as bpb, rpc_blobstore_pb2_grpc as bgrpc
from tvix.store.protos import pathinfo_pb2 as ppb, rpc_pathinfo_pb2 as rpb, rpc_pathinfo_pb2_grpc as pgrpc

ch = grpc.insecure_channel(sys.argv[1])
blobs = bgrpc.BlobServiceStub(ch)
dirs = dgrpc.DirectoryServiceStub(ch)
infos = pgrpc.PathInfoServiceStub(ch)
C = grpc.StatusCode


def rejects(what, code, fn, *details):
    try:
        r = fn()
        if hasattr(r, "__iter__") and not isinstance(r, (bytes, str)):
            list(r)
    except grpc.RpcError as e:
        assert e.code() == code, f"{what}: want {code}, got {e.code()} {e.details()!r}"
        for d in details:
            assert d in e.details(), f"{what}: {d!r} not in {e.details()!r}"
        print(f"ok: {what} -> {code.name}: {e.details()}", flush=True)
        return e
    raise AssertionError(f"{what}: want {code}, but the call succeeded")


# --- undecodable messages: a length-delimited field 1 that promises 5 bytes and has 2
GARBAGE = b"\x0a\x05ab"
raw = lambda kind, path: getattr(ch, kind)(path)  # no serializer: the bytes go out as they are
for kind, path, typ in [
    ("unary_unary", "/tvix.castore.v1.BlobService/Stat", "tvix.castore.v1.StatBlobRequest"),
    ("unary_stream", "/tvix.castore.v1.BlobService/Read", "tvix.castore.v1.ReadBlobRequest"),
    ("stream_unary", "/tvix.castore.v1.BlobService/Put", "tvix.castore.v1.BlobChunk"),
    ("unary_stream", "/tvix.castore.v1.DirectoryService/Get", "tvix.castore.v1.GetDirectoryRequest"),
    ("stream_unary", "/tvix.castore.v1.DirectoryService/Put", "tvix.castore.v1.Directory"),
    ("unary_unary", "/tvix.store.v1.PathInfoService/Get", "tvix.store.v1.GetPathInfoRequest"),
    ("unary_unary", "/tvix.store.v1.PathInfoService/Put", "tvix.store.v1.PathInfo"),
    ("unary_unary", "/tvix.store.v1.PathInfoService/CalculateNAR", "tvix.castore.v1.Node"),
    ("unary_stream", "/tvix.store.v1.PathInfoService/List", "tvix.store.v1.ListPathInfoRequest"),
]:
    call = raw(kind, path)
    arg = iter([GARBAGE]) if kind.startswith("stream") else GARBAGE
    rejects(f"undecodable {path}", C.INVALID_ARGUMENT, lambda: call(arg), f"undecodable {typ} message")
# A good message first, then garbage: the stream is refused at the garbage.
good = cpb.Directory().SerializeToString()
rejects("Directory Put: a good message, then garbage", C.INVALID_ARGUMENT,
        lambda: raw("stream_unary", "/tvix.castore.v1.DirectoryService/Put")(iter([good, GARBAGE])),
        "undecodable tvix.castore.v1.Directory message")

# --- names and symlink targets
link = lambda name, target: cpb.Directory(symlinks=[cpb.SymlinkNode(name=name, target=target)])
for target, why in [(b"", "it is empty"), (b"a\0b", "NUL byte"), (b"a" * 4096, "4096 bytes (at most 4095)")]:
    rejects(f"Directory Put of a symlink target {why}", C.INVALID_ARGUMENT,
            lambda: dirs.Put(iter([link(b"l", target)])), 'symlink "l" has an invalid target', why)
dirs.Put(iter([link(b"l", b"a" * 4095)]))
print("ok: a symlink target of 4095 bytes is fine", flush=True)
rejects("Directory Put of a 256-byte name", C.INVALID_ARGUMENT,
        lambda: dirs.Put(iter([link(b"n" * 256, b"x")])), "invalid name")
dirs.Put(iter([link(b"n" * 255, b"x")]))
print("ok: a name of 255 bytes is fine", flush=True)

# --- closures
empty = cpb.Directory()
keep = cpb.Directory(files=[cpb.FileNode(name=b".keep", digest=b3(b""), size=0)])
parent = cpb.Directory(directories=[cpb.DirectoryNode(name=b"e", digest=dir_digest(empty), size=0)])
rejects("Directory Put with a directory nothing refers to", C.INVALID_ARGUMENT,
        lambda: dirs.Put(iter([keep, empty, parent])), "b3:", "not referred to")
sent = [0]


def endless():
    for i in range(1_000_000):
        sent[0] = i + 1
        yield empty


rejects("Directory Put of more than 10 directories", C.INVALID_ARGUMENT, lambda: dirs.Put(endless()),
        "more than 10 directories")
assert sent[0] < 1_000_000, sent[0]
print(f"ok: the endless stream was cut after {sent[0]} messages", flush=True)
chain = [empty]
for i in range(9):
    chain.append(cpb.Directory(directories=[
        cpb.DirectoryNode(name=b"d", digest=dir_digest(chain[-1]), size=dir_size(chain[-1]))]))
assert dirs.Put(iter(chain)).root_digest == dir_digest(chain[-1])
print("ok: a closure of exactly 10 directories is fine", flush=True)

# --- PathInfo
NAME = b"00000000000000000000000000000000-foo"  # digest: 20 zero bytes
SHA = bytes(32)
sym = lambda target, size=120, sha=SHA, sigs=(): ppb.PathInfo(
    node=cpb.Node(symlink=cpb.SymlinkNode(name=NAME, target=target)),
    narinfo=ppb.NARInfo(nar_size=size, nar_sha256=sha,
                        signatures=[ppb.NARInfo.Signature(name=n, data=d) for n, d in sigs]))
rejects("PathInfo Put of a symlink root with an empty target", C.INVALID_ARGUMENT,
        lambda: infos.Put(sym(b"")), "invalid target")
infos.Put(sym(b"/nix/store/x", sigs=[("a-1", b"\1" * 64)]))
for what, changed in [("the root node", sym(b"/nix/store/y")), ("the NAR size", sym(b"/nix/store/x", 121)),
                      ("the NAR hash", sym(b"/nix/store/x", sha=b"\1" * 32))]:
    rejects(f"PathInfo Put changing {what}", C.FAILED_PRECONDITION, lambda: infos.Put(changed),
            "/nix/store/" + NAME.decode(), what)
merged = infos.Put(sym(b"/nix/store/x", sigs=[("b-1", b"\2" * 64), ("a-1", b"\1" * 64)]))
got = infos.Get(rpb.GetPathInfoRequest(by_output_hash=b"\0" * 20))
for r in (merged, got):
    assert [s.name for s in r.narinfo.signatures] == ["a-1", "b-1"], r.narinfo.signatures
    assert r.node.symlink.target == b"/nix/store/x"
print("ok: the same content again merges signatures", flush=True)
dname = b"1c8jvhk4wx1qmkznhvw3k6h7hk3ngd5y-dir"
dinfo = ppb.PathInfo(node=cpb.Node(directory=cpb.DirectoryNode(name=dname, digest=dir_digest(keep), size=1)),
                     narinfo=ppb.NARInfo(nar_size=1, nar_sha256=SHA))
rejects("PathInfo Put of a directory root not in the store", C.FAILED_PRECONDITION,
        lambda: infos.Put(dinfo), "/nix/store/" + dname.decode(), "b3:")
fname = b"11111111111111111111111111111111-file"
finfo = ppb.PathInfo(node=cpb.Node(file=cpb.FileNode(name=fname, digest=b3(b"never"), size=5)),
                     narinfo=ppb.NARInfo(nar_size=1, nar_sha256=SHA))
rejects("PathInfo Put of a file root whose blob is not in the store", C.FAILED_PRECONDITION,
        lambda: infos.Put(finfo), "/nix/store/" + fname.decode())
blobs.Put(iter([bpb.BlobChunk(data=b"")]))
dirs.Put(iter([keep]))
infos.Put(dinfo)
print("ok: once its data is there, the same PathInfo Put succeeds", flush=True)
print("ALL OK", flush=True)
