#!/usr/bin/python3
"""grpcio client reading a blob chunk by chunk from a nixcas daemon.

usage: PYGEN=stubdir pychunks.py TARGET BLOB_HEX [BAD_CHUNK_HEX]
Stat(send_chunks) lists the chunks; each is read by its own digest and checked with b3sum; the
concatenation must hash to the blob. With BAD_CHUNK_HEX, reading that chunk must fail with
DATA_LOSS naming it, before any message. Prints "ALL OK" at the end.
"""
import base64
import sys

from common import MiB, b3

import grpc
from tvix.castore.protos import rpc_blobstore_pb2 as bpb, rpc_blobstore_pb2_grpc as bgrpc

ch = grpc.insecure_channel(sys.argv[1], options=[("grpc.max_receive_message_length", 8 * MiB)])
blobs = bgrpc.BlobServiceStub(ch)
blob = bytes.fromhex(sys.argv[2])
bad = bytes.fromhex(sys.argv[3]) if len(sys.argv) > 3 else None

st = blobs.Stat(bpb.StatBlobRequest(digest=blob, send_chunks=True))
assert len(st.chunks) >= 2, f"{len(st.chunks)} chunks"
print(f"ok: Stat lists {len(st.chunks)} chunks", flush=True)
whole = []
for i, c in enumerate(st.chunks):
    if c.digest == bad:
        got = 0
        try:
            for _ in blobs.Read(bpb.ReadBlobRequest(digest=c.digest)):
                got += 1
            raise AssertionError(f"chunk {i}: read succeeded")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.DATA_LOSS, f"chunk {i}: {e.code()} {e.details()}"
            name = "b3:" + base64.b64encode(c.digest).decode()
            assert name in e.details(), e.details()
            assert got == 0, f"{got} messages before DATA_LOSS"
            print(f"ok: chunk {i} -> DATA_LOSS: {e.details()}", flush=True)
        continue
    data = b"".join(m.data for m in blobs.Read(bpb.ReadBlobRequest(digest=c.digest)))
    assert len(data) == c.size, f"chunk {i}: {len(data)} bytes, Stat said {c.size}"
    assert b3(data) == c.digest, f"chunk {i}: wrong digest"
    whole.append(data)
if bad is None:
    assert b3(b"".join(whole)) == blob, "chunks do not make up the blob"
    print("ok: chunks read by digest make up the blob", flush=True)
print("ALL OK", flush=True)
