#!/usr/bin/env bash
# Regenerates src/gen/ from protos/ with Debian's protoc and protoc-gen-es (npm, pinned), and
# src/hash/blake3_wasm.ts from scripts/blake3_gen.ts.
# Usage: scripts/gen.sh [OUTDIR [BLAKE3_WASM_OUT]]   (default src/gen, src/hash/blake3_wasm.ts)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-src/gen}"
rm -rf "$out"
mkdir -p "$out"
# Full npm: specifiers (as in deno.json) in the generated imports, not bare ones: those resolve
# only through our import map, so not for a program importing nixcas or running it from a URL.
pb=$(sed -n 's|^ *"@bufbuild/protobuf": "\(npm:@bufbuild/protobuf@[0-9.]*\)",*$|\1|p' deno.json)
[[ -n "$pb" ]] || { echo "gen.sh: no @bufbuild/protobuf version in deno.json" >&2; exit 1; }
protoc -Iprotos \
  --plugin=protoc-gen-es=scripts/protoc-gen-es \
  --es_out="$out" --es_opt=target=ts,import_extension=ts \
  --es_opt="rewrite_imports=@bufbuild/protobuf:$pb" \
  --es_opt="rewrite_imports=@bufbuild/protobuf/codegenv2:$pb/codegenv2" \
  --es_opt="rewrite_imports=@bufbuild/protobuf/wkt:$pb/wkt" \
  $(cd protos && find . -name '*.proto' | sort | sed 's|^\./|protos/|' | sed 's|^protos/||')
deno run --allow-read --allow-write scripts/gen_blake3_wasm.ts "${2:-src/hash/blake3_wasm.ts}"
