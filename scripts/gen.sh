#!/usr/bin/env bash
# Regenerates src/gen/ from protos/ with Debian's protoc and protoc-gen-es (npm, pinned).
# Usage: scripts/gen.sh [OUTDIR]   (default src/gen)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-src/gen}"
rm -rf "$out"
mkdir -p "$out"
protoc -Iprotos \
  --plugin=protoc-gen-es=scripts/protoc-gen-es \
  --es_out="$out" --es_opt=target=ts,import_extension=ts \
  $(cd protos && find . -name '*.proto' | sort | sed 's|^\./|protos/|' | sed 's|^protos/||')
