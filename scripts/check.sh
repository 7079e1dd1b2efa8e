#!/usr/bin/env bash
# deno task check: formatting, lint, types, and generated code up to date with protos/.
set -euo pipefail
cd "$(dirname "$0")/.."
deno fmt --check
deno lint
deno check mod.ts src/ tests/ bench/
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bash scripts/gen.sh "$tmp/gen" "$tmp/blake3_wasm.ts" >/dev/null
deno fmt -q "$tmp/blake3_wasm.ts"
if ! diff -r "$tmp/gen" src/gen >/dev/null || ! diff -q "$tmp/blake3_wasm.ts" src/hash/blake3_wasm.ts >/dev/null; then
  echo "generated code is stale: run 'deno task gen' and commit the result" >&2
  diff -r "$tmp/gen" src/gen | head -20 >&2
  exit 1
fi
echo "check: ok"
