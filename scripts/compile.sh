#!/usr/bin/env bash
# Builds standalone nixcas executables with `deno compile` for each target into dist/, from the
# minified CLI build (scripts/build.sh), which starts sooner than the TypeScript sources.
# deno compile downloads its runtime (denort) from Deno's own download host; where that host is
# unreachable this fails, and `deno task bundle` (dist/nixcas.js) is the one-file alternative.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=("${@:-x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-apple-darwin aarch64-apple-darwin}")
bash scripts/build.sh dist/cli
for t in ${targets[@]}; do
  echo "compiling for $t"
  deno compile -A --target "$t" --output "dist/nixcas-$t" dist/cli/mod.js
done
