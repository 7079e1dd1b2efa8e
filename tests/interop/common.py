"""Shared by the python interop peers: stub import, BLAKE3 via b3sum, NAR hashing."""
import hashlib
import os
import subprocess
import sys

sys.path.insert(0, os.environ["PYGEN"])  # stubs generated at test time

from tvix.castore.protos import castore_pb2 as cpb  # noqa: E402

MiB = 1 << 20


def b3(data: bytes) -> bytes:
    out = subprocess.run(["b3sum", "--no-names"], input=data, stdout=subprocess.PIPE, check=True)
    return bytes.fromhex(out.stdout.decode().strip())


def dir_digest(d) -> bytes:
    return b3(d.SerializeToString(deterministic=True))


def dir_size(d) -> int:
    return len(d.files) + len(d.symlinks) + sum(1 + c.size for c in d.directories)


class Nar:
    """NAR serialisation, hashed as it is written."""

    def __init__(self):
        self.h = hashlib.sha256()
        self.size = 0

    def s(self, b):
        if isinstance(b, str):
            b = b.encode()
        pad = (8 - len(b) % 8) % 8
        for part in (len(b).to_bytes(8, "little"), b, b"\0" * pad):
            self.h.update(part)
            self.size += len(part)


def nar_of(node, get_blob, get_dir):
    """(size, sha256) of the NAR of a castore node."""
    n = Nar()
    n.s("nix-archive-1")

    def walk(kind, v):
        n.s("(")
        n.s("type")
        if kind == "symlink":
            n.s("symlink"); n.s("target"); n.s(v.target)
        elif kind == "file":
            n.s("regular")
            if v.executable:
                n.s("executable"); n.s("")
            n.s("contents"); n.s(get_blob(v.digest))
        else:
            n.s("directory")
            d = get_dir(v.digest)
            entries = [("directory", x) for x in d.directories] + [("file", x) for x in d.files] + \
                [("symlink", x) for x in d.symlinks]
            for k, x in sorted(entries, key=lambda e: e[1].name):
                n.s("entry"); n.s("("); n.s("name"); n.s(x.name); n.s("node")
                walk(k, x)
                n.s(")")
        n.s(")")

    kind = node.WhichOneof("node")
    walk(kind, getattr(node, kind))
    return n.size, n.h.digest()
