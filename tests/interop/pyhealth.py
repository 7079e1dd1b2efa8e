#!/usr/bin/python3
"""grpcio client for a nixcas daemon's health service (and, over TLS, a round trip).

usage: PYGEN=stubdir pyhealth.py TARGET [--ca CA.pem]
TARGET: host:port or unix:///abs/sock. With --ca the channel is TLS, trusting CA.pem.
Prints one line per check and "ALL OK" at the end; exits non-zero at the first failure.
"""
import sys

from common import b3

import grpc
from hlth import health_pb2 as hpb, health_pb2_grpc as hgrpc
from refl import reflection_pb2 as refpb, reflection_pb2_grpc as refgrpc
from tvix.castore.protos import rpc_blobstore_pb2 as bpb, rpc_blobstore_pb2_grpc as bgrpc

target = sys.argv[1]
if "--ca" in sys.argv:
    ca = open(sys.argv[sys.argv.index("--ca") + 1], "rb").read()
    ch = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=ca))
else:
    ch = grpc.insecure_channel(target)
S = hpb.HealthCheckResponse

health = hgrpc.HealthStub(ch)
for name in ["", "tvix.castore.v1.BlobService", "tvix.castore.v1.DirectoryService",
             "tvix.store.v1.PathInfoService"]:
    r = health.Check(hpb.HealthCheckRequest(service=name), timeout=10)
    assert r.status == S.SERVING, f"{name!r}: {r.status}"
    print(f"ok: Check {name!r} SERVING", flush=True)
try:
    health.Check(hpb.HealthCheckRequest(service="no.such.Service"), timeout=10)
    raise AssertionError("Check of an unknown service succeeded")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.NOT_FOUND, e.code()
    print("ok: Check of an unknown service -> NOT_FOUND", flush=True)
watch = health.Watch(hpb.HealthCheckRequest(service=""), timeout=10)
first = next(watch)
assert first.status == S.SERVING, first.status
watch.cancel()
print("ok: Watch '' starts with SERVING", flush=True)
unknown = health.Watch(hpb.HealthCheckRequest(service="no.such.Service"), timeout=10)
assert next(unknown).status == S.SERVICE_UNKNOWN
unknown.cancel()
print("ok: Watch of an unknown service: SERVICE_UNKNOWN, stream kept open", flush=True)

refl = refgrpc.ServerReflectionStub(ch)
rs = list(refl.ServerReflectionInfo(iter([refpb.ServerReflectionRequest(list_services="")]),
                                    timeout=10))
names = {s.name for s in rs[0].list_services_response.service}
assert "grpc.health.v1.Health" in names, names
print("ok: reflection lists grpc.health.v1.Health", flush=True)

blobs = bgrpc.BlobServiceStub(ch)
data = b"through grpcio " * 1000
d = blobs.Put(iter([bpb.BlobChunk(data=data)]), timeout=10).digest
assert d == b3(data)
got = b"".join(c.data for c in blobs.Read(bpb.ReadBlobRequest(digest=d), timeout=10))
assert got == data
print("ok: Put and Read back", flush=True)
print("ALL OK", flush=True)
