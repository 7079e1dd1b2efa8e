#!/usr/bin/python3
"""Blob throughput of a grpcio client: PYGEN=stubdir pybench.py TARGET MIB
Prints one JSON line: {"put": MiB/s, "read": MiB/s}."""
import json
import os
import sys
import time

from common import MiB

import grpc
from tvix.castore.protos import rpc_blobstore_pb2 as bpb, rpc_blobstore_pb2_grpc as bgrpc

ch = grpc.insecure_channel(sys.argv[1], options=[("grpc.max_receive_message_length", 8 * MiB)])
stub = bgrpc.BlobServiceStub(ch)
n = int(sys.argv[2])
data = os.urandom(n * MiB)
stub.Put(iter([bpb.BlobChunk(data=b"warmup")]))
t = time.perf_counter()
d = stub.Put(bpb.BlobChunk(data=data[o:o + MiB]) for o in range(0, len(data), MiB)).digest
tp = time.perf_counter() - t
t = time.perf_counter()
got = sum(len(c.data) for c in stub.Read(bpb.ReadBlobRequest(digest=d)))
tr = time.perf_counter() - t
assert got == len(data)
print(json.dumps({"put": n / tp, "read": n / tr}), flush=True)
