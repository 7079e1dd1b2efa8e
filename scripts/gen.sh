#!/usr/bin/env bash
# Regenerates src/gen/ from protos/ with Debian's protoc and protoc-gen-es (npm, pinned), and
# src/hash/blake3_wasm.ts from scripts/blake3_gen.ts.
# Usage: scripts/gen.sh [OUTDIR [BLAKE3_WASM_OUT]]   (default src/gen, src/hash/blake3_wasm.ts)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-src/gen}"
rm -rf "$out"
mkdir -p "$out"
protoc -Iprotos \
  --plugin=protoc-gen-es=scripts/protoc-gen-es \
  --es_out="$out" --es_opt=target=ts,import_extension=ts \
  $(cd protos && find . -name '*.proto' | sort | sed 's|^\./|protos/|' | sed 's|^protos/||')
deno run --allow-read --allow-write scripts/gen_blake3_wasm.ts "${2:-src/hash/blake3_wasm.ts}"
