#!/usr/bin/python3
"""grpcio client calling every RPC and every rejection of a nixcas daemon.

usage: PYGEN=stubdir pyclient.py TARGET       (TARGET: 127.0.0.1:port or unix:///abs/sock)
Prints one line per check and "ALL OK" at the end; exits non-zero at the first failure.
"""
import os
import sys

from common import MiB, b3, cpb, dir_digest, dir_size, nar_of

import grpc
from tvix.castore.protos import rpc_blobstore_pb2 as bpb, rpc_blobstore_pb2_grpc as bgrpc
from tvix.castore.protos import rpc_directory_pb2 as dpb, rpc_directory_pb2_grpc as dgrpc
from tvix.store.protos import pathinfo_pb2 as ppb, rpc_pathinfo_pb2 as rpb, rpc_pathinfo_pb2_grpc as pgrpc
from refl import reflection_pb2 as refpb, reflection_pb2_grpc as refgrpc
from google.protobuf import descriptor_pb2

ch = grpc.insecure_channel(sys.argv[1], options=[("grpc.max_receive_message_length", 8 * MiB)])
blobs = bgrpc.BlobServiceStub(ch)
dirs = dgrpc.DirectoryServiceStub(ch)
infos = pgrpc.PathInfoServiceStub(ch)
C = grpc.StatusCode


def ok(what):
    print("ok:", what, flush=True)


def rejects(what, code, fn):
    try:
        r = fn()
        if hasattr(r, "__iter__") and not isinstance(r, (bytes, str)):
            list(r)
    except grpc.RpcError as e:
        assert e.code() == code, f"{what}: want {code}, got {e.code()} {e.details()!r}"
        print(f"ok: {what} -> {code.name}: {e.details()}", flush=True)
        return
    raise AssertionError(f"{what}: want {code}, but the call succeeded")


def put_blob(data, chunk=MiB):
    return blobs.Put(bpb.BlobChunk(data=data[o:o + chunk]) for o in range(0, max(len(data), 1), chunk)).digest


def read_blob(digest):
    parts = []
    for c in blobs.Read(bpb.ReadBlobRequest(digest=digest)):
        assert len(c.data) <= MiB, f"chunk of {len(c.data)} bytes"
        parts.append(c.data)
    return b"".join(parts)


# --- BlobService
rejects("Stat of an absent blob", C.NOT_FOUND, lambda: blobs.Stat(bpb.StatBlobRequest(digest=b"\0" * 32)))
rejects("Stat with a 2-byte digest", C.INVALID_ARGUMENT, lambda: blobs.Stat(bpb.StatBlobRequest(digest=b"\1\2")))
rejects("Read of an absent blob", C.NOT_FOUND, lambda: blobs.Read(bpb.ReadBlobRequest(digest=b"\0" * 32)))
rejects("Read with a 1-byte digest", C.INVALID_ARGUMENT, lambda: blobs.Read(bpb.ReadBlobRequest(digest=b"x")))
small = b"Hello World!"
d = put_blob(small)
assert d == b3(small), d.hex()
blobs.Stat(bpb.StatBlobRequest(digest=d))
assert read_blob(d) == small
ok("Put/Stat/Read of a small blob (BLAKE3 digest)")
d0 = put_blob(b"")
assert d0 == b3(b"") and read_blob(d0) == b""
ok("empty blob")
big = os.urandom(40 * MiB + 12345)
d_big = put_blob(big, chunk=3 * MiB // 2)  # chunks larger than the server's read chunks
assert d_big == b3(big)
assert read_blob(d_big) == big
ok("40 MiB blob put in 1.5 MiB chunks, read back in chunks <= 1 MiB")

# --- DirectoryService
file_node = cpb.FileNode(name=b".keep", digest=d0, size=0)
leaf = cpb.Directory(files=[file_node])
mid = cpb.Directory(directories=[cpb.DirectoryNode(name=b"keep", digest=dir_digest(leaf), size=dir_size(leaf))],
                    symlinks=[cpb.SymlinkNode(name=b"aa", target=b"/nix/store/somewhereelse")])
root = cpb.Directory(directories=[
    cpb.DirectoryNode(name=b"a", digest=dir_digest(mid), size=dir_size(mid)),
    cpb.DirectoryNode(name=b"b", digest=dir_digest(leaf), size=dir_size(leaf)),
])
r = dirs.Put(iter([leaf, mid, root]))
assert r.root_digest == dir_digest(root)
ok("Directory Put of a closure, leaves first")
got = list(dirs.Get(dpb.GetDirectoryRequest(digest=dir_digest(mid))))
assert got == [mid]
got = list(dirs.Get(dpb.GetDirectoryRequest(digest=dir_digest(root), recursive=True)))
assert got == [root, mid, leaf], [dir_digest(x).hex() for x in got]
ok("Directory Get, single and recursive (root first, breadth-first, each once)")
rejects("Directory Get of an absent digest", C.NOT_FOUND, lambda: dirs.Get(dpb.GetDirectoryRequest(digest=b"\0" * 32)))
rejects("Directory Get recursive of an absent digest", C.NOT_FOUND,
        lambda: dirs.Get(dpb.GetDirectoryRequest(digest=b"\0" * 32, recursive=True)))
rejects("Directory Get without by_what", C.INVALID_ARGUMENT, lambda: dirs.Get(dpb.GetDirectoryRequest()))
rejects("Directory Get with a 3-byte digest", C.INVALID_ARGUMENT, lambda: dirs.Get(dpb.GetDirectoryRequest(digest=b"abc")))
rejects("Directory Put of an empty stream", C.INVALID_ARGUMENT, lambda: dirs.Put(iter([])))
rejects("Directory Put with a child not sent before", C.INVALID_ARGUMENT, lambda: dirs.Put(iter([mid])))
wrong = cpb.Directory(directories=[cpb.DirectoryNode(name=b"keep", digest=dir_digest(leaf), size=7)])
rejects("Directory Put with a wrong child size", C.INVALID_ARGUMENT, lambda: dirs.Put(iter([leaf, wrong])))
rejects("Directory Put with an invalid name", C.INVALID_ARGUMENT,
        lambda: dirs.Put(iter([cpb.Directory(symlinks=[cpb.SymlinkNode(name=b"..", target=b"x")])])))
rejects("Directory Put with unsorted names", C.INVALID_ARGUMENT,
        lambda: dirs.Put(iter([cpb.Directory(symlinks=[cpb.SymlinkNode(name=b"b", target=b"x"),
                                                       cpb.SymlinkNode(name=b"a", target=b"x")])])))
rejects("Directory Put with a 1-byte file digest", C.INVALID_ARGUMENT,
        lambda: dirs.Put(iter([cpb.Directory(files=[cpb.FileNode(name=b"f", digest=b"x", size=1)])])))

# --- PathInfoService
name = b"00000000000000000000000000000000-foo"
info = ppb.PathInfo(node=cpb.Node(symlink=cpb.SymlinkNode(name=name, target=b"doesntmatter")))
assert infos.Put(info) == info
assert infos.Get(rpb.GetPathInfoRequest(by_output_hash=b"\0" * 20)) == info
ok("PathInfo Put returns what was stored, Get finds it")
fname = b"11111111111111111111111111111111-hello"
finfo = ppb.PathInfo(node=cpb.Node(file=cpb.FileNode(name=fname, digest=d, size=len(small))),
                     narinfo=ppb.NARInfo(nar_size=1, nar_sha256=b"\0" * 32))
infos.Put(finfo)
listed = list(infos.List(rpb.ListPathInfoRequest()))
assert sorted(x.SerializeToString() for x in listed) == sorted(x.SerializeToString() for x in [info, finfo])
ok("PathInfo List")
rejects("PathInfo Get of an absent path", C.NOT_FOUND, lambda: infos.Get(rpb.GetPathInfoRequest(by_output_hash=b"\7" * 20)))
rejects("PathInfo Get without by_what", C.INVALID_ARGUMENT, lambda: infos.Get(rpb.GetPathInfoRequest()))
rejects("PathInfo Get with a 32-byte digest", C.INVALID_ARGUMENT, lambda: infos.Get(rpb.GetPathInfoRequest(by_output_hash=b"\0" * 32)))
rejects("PathInfo Put without a node", C.INVALID_ARGUMENT, lambda: infos.Put(ppb.PathInfo()))
rejects("PathInfo Put with a non-store-path name", C.INVALID_ARGUMENT,
        lambda: infos.Put(ppb.PathInfo(node=cpb.Node(symlink=cpb.SymlinkNode(name=b"foo", target=b"x")))))
rejects("PathInfo Put with a 3-byte reference", C.INVALID_ARGUMENT,
        lambda: infos.Put(ppb.PathInfo(node=info.node, references=[b"abc"])))
rejects("PathInfo Put with a 1-byte node digest", C.INVALID_ARGUMENT,
        lambda: infos.Put(ppb.PathInfo(node=cpb.Node(file=cpb.FileNode(name=fname, digest=b"x", size=1)))))

blob_map = {d: small, d0: b"", d_big: big}
dir_map = {dir_digest(x): x for x in (leaf, mid, root)}
for node in [cpb.Node(file=cpb.FileNode(name=b"f", digest=d, size=len(small), executable=True)),
             cpb.Node(symlink=cpb.SymlinkNode(name=b"s", target=b"/nix/store/x")),
             cpb.Node(directory=cpb.DirectoryNode(name=b"d", digest=dir_digest(root), size=dir_size(root)))]:
    resp = infos.CalculateNAR(node)
    want = nar_of(node, blob_map.__getitem__, dir_map.__getitem__)
    assert (resp.nar_size, resp.nar_sha256) == want, (resp, want)
ok("CalculateNAR of a file, a symlink and a directory tree equals python's NAR")
rejects("CalculateNAR without a node", C.INVALID_ARGUMENT, lambda: infos.CalculateNAR(cpb.Node()))
rejects("CalculateNAR of a missing blob", C.NOT_FOUND,
        lambda: infos.CalculateNAR(cpb.Node(file=cpb.FileNode(name=b"f", digest=b"\5" * 32, size=1))))

# --- unknown method, reflection
rejects("an unknown method", C.UNIMPLEMENTED,
        lambda: ch.unary_unary("/tvix.castore.v1.BlobService/Nope")(b""))
refl = refgrpc.ServerReflectionStub(ch)
rs = list(refl.ServerReflectionInfo(iter([
    refpb.ServerReflectionRequest(list_services=""),
    refpb.ServerReflectionRequest(file_containing_symbol="tvix.store.v1.PathInfoService"),
    refpb.ServerReflectionRequest(file_containing_symbol="tvix.castore.v1.BlobService.Read"),
    refpb.ServerReflectionRequest(file_by_filename="tvix/castore/protos/castore.proto"),
    refpb.ServerReflectionRequest(file_containing_symbol="no.such.Symbol"),
])))
names = {s.name for s in rs[0].list_services_response.service}
assert {"tvix.castore.v1.BlobService", "tvix.castore.v1.DirectoryService",
        "tvix.store.v1.PathInfoService", "grpc.reflection.v1.ServerReflection"} <= names, names
files = [descriptor_pb2.FileDescriptorProto.FromString(b) for b in rs[1].file_descriptor_response.file_descriptor_proto]
assert files[0].name == "tvix/store/protos/rpc_pathinfo.proto", files[0].name
assert {"tvix/castore/protos/castore.proto", "tvix/store/protos/pathinfo.proto"} <= {f.name for f in files}
assert [m.name for m in files[0].service[0].method] == ["Get", "Put", "CalculateNAR", "List"]
f2 = descriptor_pb2.FileDescriptorProto.FromString(rs[2].file_descriptor_response.file_descriptor_proto[0])
assert f2.service[0].name == "BlobService"
f3 = descriptor_pb2.FileDescriptorProto.FromString(rs[3].file_descriptor_response.file_descriptor_proto[0])
assert [m.name for m in f3.message_type][:1] == ["Directory"]
assert rs[4].error_response.error_code == 5
ok("server reflection: list services, file by symbol/method/filename, unknown symbol")
print("ALL OK", flush=True)
