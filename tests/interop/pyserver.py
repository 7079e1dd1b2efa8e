#!/usr/bin/python3
"""A small grpcio server with the three tvix services in memory, for our remote backends to
talk to (and the python baseline of the benchmark).

usage: PYGEN=stubdir pyserver.py TARGET [--corrupt] [--tls CERT KEY]
TARGET is 127.0.0.1:0 (prints the port) or unix:///abs/sock. Prints "listening ADDR".
--corrupt flips one byte of every blob read, to prove clients check BLAKE3.
"""
import sys
from collections import deque
from concurrent import futures

from common import MiB, b3, dir_digest, dir_size, nar_of

import grpc
from tvix.castore.protos import rpc_blobstore_pb2 as bpb, rpc_blobstore_pb2_grpc as bgrpc
from tvix.castore.protos import rpc_directory_pb2 as dpb, rpc_directory_pb2_grpc as dgrpc
from tvix.store.protos import rpc_pathinfo_pb2 as rpb, rpc_pathinfo_pb2_grpc as pgrpc

CORRUPT = "--corrupt" in sys.argv
blobs, dirs, infos = {}, {}, {}


def check_len(ctx, d, n):
    if len(d) != n:
        ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid digest length {len(d)}")


class Blobs(bgrpc.BlobServiceServicer):
    def Stat(self, req, ctx):
        check_len(ctx, req.digest, 32)
        if req.digest not in blobs:
            ctx.abort(grpc.StatusCode.NOT_FOUND, "blob not found")
        return bpb.StatBlobResponse()  # no chunk list, as servers before chunking

    def Read(self, req, ctx):
        check_len(ctx, req.digest, 32)
        data = blobs.get(req.digest)
        if data is None:
            ctx.abort(grpc.StatusCode.NOT_FOUND, "blob not found")
        if CORRUPT and data:
            data = bytes([data[0] ^ 1]) + data[1:]
        for o in range(0, len(data), MiB):
            yield bpb.BlobChunk(data=data[o:o + MiB])

    def Put(self, it, ctx):
        data = b"".join(c.data for c in it)
        d = b3(data)
        blobs[d] = data
        return bpb.PutBlobResponse(digest=d)


class Dirs(dgrpc.DirectoryServiceServicer):
    def Get(self, req, ctx):
        if req.WhichOneof("by_what") is None:
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "by_what needs to be specified")
        check_len(ctx, req.digest, 32)
        if req.digest not in dirs:
            ctx.abort(grpc.StatusCode.NOT_FOUND, "directory not found")
        if not req.recursive:
            yield dirs[req.digest]
            return
        queue, seen = deque([req.digest]), {req.digest}
        while queue:
            d = dirs[queue.popleft()]
            for c in d.directories:
                if c.digest not in seen:
                    seen.add(c.digest)
                    queue.append(c.digest)
            yield d

    def Put(self, it, ctx):
        sizes, last = {}, None
        for d in it:
            for c in d.directories:
                if sizes.get(c.digest) != c.size:
                    ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "child not sent before or wrong size")
            last = dir_digest(d)
            sizes[last] = dir_size(d)
            dirs[last] = d
        if last is None:
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "no directories received")
        return dpb.PutDirectoryResponse(root_digest=last)


NIX32 = "0123456789abcdfghijklmnpqrsvwxyz"


def nix32_decode(s):
    out = bytearray(20)
    for k, ch in enumerate(s):
        v, n = NIX32.index(ch), 31 - k
        b = n * 5
        i, j = b >> 3, b & 7
        out[i] |= (v << j) & 0xFF
        if i + 1 < 20:
            out[i + 1] |= v >> (8 - j)
    return bytes(out)


class Infos(pgrpc.PathInfoServiceServicer):
    def Get(self, req, ctx):
        if req.WhichOneof("by_what") is None:
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "by_what needs to be specified")
        check_len(ctx, req.by_output_hash, 20)
        if req.by_output_hash not in infos:
            ctx.abort(grpc.StatusCode.NOT_FOUND, "PathInfo not found")
        return infos[req.by_output_hash]

    def Put(self, info, ctx):
        kind = info.node.WhichOneof("node")
        if kind is None:
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "no node")
        name = getattr(info.node, kind).name.decode()
        if len(name) < 34 or name[32] != "-":
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid store path name {name!r}")
        infos[nix32_decode(name[:32])] = info
        return info

    def CalculateNAR(self, node, ctx):
        if node.WhichOneof("node") is None:
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "no root node sent")
        try:
            size, sha = nar_of(node, blobs.__getitem__, dirs.__getitem__)
        except KeyError:
            ctx.abort(grpc.StatusCode.NOT_FOUND, "referenced data not found")
        return rpb.CalculateNARResponse(nar_size=size, nar_sha256=sha)

    def List(self, req, ctx):
        yield from list(infos.values())


srv = grpc.server(futures.ThreadPoolExecutor(8), options=[("grpc.max_receive_message_length", 64 * MiB)])
bgrpc.add_BlobServiceServicer_to_server(Blobs(), srv)
dgrpc.add_DirectoryServiceServicer_to_server(Dirs(), srv)
pgrpc.add_PathInfoServiceServicer_to_server(Infos(), srv)
target = sys.argv[1]
if "--tls" in sys.argv:
    # --tls CERT KEY: serve over TLS (for grpc+https:// clients).
    i = sys.argv.index("--tls")
    with open(sys.argv[i + 1], "rb") as f:
        cert = f.read()
    with open(sys.argv[i + 2], "rb") as f:
        key = f.read()
    port = srv.add_secure_port(target, grpc.ssl_server_credentials([(key, cert)]))
else:
    port = srv.add_insecure_port(target)
srv.start()
print("listening", target if target.startswith("unix:") else f"127.0.0.1:{port}", flush=True)
srv.wait_for_termination()
