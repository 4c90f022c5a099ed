#!/usr/bin/env bash
# Benchmark: agent runs on one node (SQLite, or PostgreSQL with DATABASE_URL set) with the fake
# OpenAI-compatible model in a separate process: /v1/agent/start latency (c=1, c=32), start →
# first event at a viewer, N viewers over M runs (memory per viewer, CPU, events lost), resume.
# Usage: scripts/bench-runs.sh [runs] [viewers-per-run]
#   CORTEX_BENCH_FAKE_LATENCY_MS=60000 STARTS_ONLY=true scripts/bench-runs.sh: starts alone, the
#   runs waiting on a slow model instead of writing their events beside the starts.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
RUNS="${1:-100}"; VIEWERS="${2:-100}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cortex-target}"
NO_BUILD="${CORTEX_BENCH_NO_BUILD:-}"; DEBUG="${CORTEX_BENCH_DEBUG:-}"; FAKE_LATENCY="${CORTEX_BENCH_FAKE_LATENCY_MS:-0}"; STARTS_ONLY="${STARTS_ONLY:-false}"; unset CORTEX_BENCH_NO_BUILD CORTEX_BENCH_DEBUG CORTEX_BENCH_FAKE_LATENCY_MS
[ -n "$NO_BUILD" ] || cargo build --release -q -p cortex -p cortex-fakellm --bins --examples
BIN="$CARGO_TARGET_DIR/release"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
dir=$(mktemp -d)
cleanup() { [ -n "$DEBUG" ] && tail -n 20 "$dir/server.log" "$dir/fake.log"; kill "${fake_pid:-}" "${srv_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

"$BIN/cortex-fakellm" --bind 127.0.0.1:0 --latency-ms "$FAKE_LATENCY" >"$dir/fake.log" 2>&1 &
fake_pid=$!
for _ in $(seq 1 50); do grep -q listening "$dir/fake.log" 2>/dev/null && break; sleep 0.1; done
FAKE=$(head -1 "$dir/fake.log" | awk '{print $3}')
port=$((20000 + RANDOM % 10000))
OPENAI_API_KEY=bench OPENAI_BASE_URL="$FAKE" CORTEX_DATA_DIR="$dir/data" CORTEX_BOOTSTRAP_PASSWORD=bench-password-123 \
  CORTEX_LIMITS__COMPANY_REQUESTS=0 CORTEX_LIMITS__MAX_CLIENT_IPS=0 CORTEX_MEMORY__EXTRACT_FACTS=false \
  CORTEX_PLANS__ENTERPRISE__CONCURRENT_RUNS=100000 CORTEX_LOG__LEVEL=warn \
  "$BIN/cortex" serve --bind "127.0.0.1:$port" >"$dir/server.log" 2>&1 &
srv_pid=$!
bench_connect "$port"
"$BIN/examples/runs_bench" --api "$API" --key "$key" --fake "$FAKE" --server-pid "$srv_pid" \
  --runs "$RUNS" --viewers-per-run "$VIEWERS" --starts-only "${STARTS_ONLY:-false}"
