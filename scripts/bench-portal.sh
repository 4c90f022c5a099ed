#!/usr/bin/env bash
# Benchmark: the developer portal in Debian's Chromium — time to interactive of the first page and
# of the playground on a cold cache, and the bytes of the first load. Starts the release server on
# an empty data directory, as a newcomer would.
# Usage: scripts/bench-portal.sh [loads]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cortex-target}"
cargo build --release -q -p cortex --bin cortex --example portal_bench
data=$(mktemp -d)
port=$((20000 + RANDOM % 10000))
CORTEX_DATA_DIR="$data/data" CORTEX_BOOTSTRAP_PASSWORD=bench-password-123 CORTEX_LOG__LEVEL=warn \
  "$CARGO_TARGET_DIR/release/cortex" serve --bind "127.0.0.1:$port" >"$data/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$data"' EXIT
bench_connect $port
"$CARGO_TARGET_DIR/release/examples/portal_bench" --base "$API" --password bench-password-123 --loads "${1:-20}"
