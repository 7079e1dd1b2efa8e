#!/usr/bin/env bash
# Builds the CLI as minified JavaScript into a directory (default dist/cli): the entry mod.js plus
# chunks it imports, split so that what only some commands use (gRPC client and server, protobuf
# runtime, FUSE) loads when such a command runs. `deno run -A dist/cli/mod.js` is the CLI; it starts
# ≈13 ms sooner than `deno run -A mod.ts`, which has Deno load 80 TypeScript modules and their
# source maps. `deno task compile` packages this build.
#   scripts/build.sh [OUT_DIR]     (DENO names the deno executable; default: deno on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist/cli}"
rm -rf "$out"
"${DENO:-deno}" bundle --quiet --code-splitting --minify --platform deno --outdir "$out" mod.ts
test -f "$out/mod.js"
