#!/usr/bin/env bash
# Stage 03's search of a small source: held in memory (`knowledge.resident_chunks`, the
# default 64) against the same source searched through the database's indexes (0), for sources
# of about 2, 16 and 64 chunks, on SQLite and PostgreSQL. `/v1/knowledge/search` at concurrency
# 8, a different question each request (a code of the source and prose words); req/s, p50, p99
# and the server's CPU per search.
#
# Usage: scripts/bench-resident.sh [seconds-per-run] [backends: "sqlite postgres"]
# Uses the production build (CORTEX_BENCH_BIN=dir for another; CORTEX_BENCH_NO_BUILD=1 to skip).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
SECS="${1:-8}"; BACKENDS="${2:-sqlite postgres}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cortex-target}"
[ -n "${CORTEX_BENCH_NO_BUILD:-}" ] || cargo build --profile production -q -p cortex --bins --examples
BIN="${CORTEX_BENCH_BIN:-$CARGO_TARGET_DIR/production}"
dir=$(mktemp -d)
cleanup() { kill "${srv_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
HZ=$(getconf CLK_TCK)
get() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1==k {print $2}'; }

# doc N: a Markdown document of N sections of ~300 tokens each (one chunk each), section i
# holding the code SKU-<i>.
doc() {
  python3 - "$1" <<'PY'
import sys
n = int(sys.argv[1])
words = "parcel warehouse carrier refund delivery invoice customs return policy express order".split()
for i in range(n):
    print(f"# Section {i}\n")
    body = " ".join(words[(i * 7 + j) % len(words)] for j in range(200))
    print(f"Item SKU-{i} ships from shelf {i}. {body}.\n")
PY
}

echo "| backend | resident_chunks | source chunks | req/s | p50 ms | p99 ms | server CPU ms / search |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for backend in $BACKENDS; do
  for resident in 64 0; do
    port=$((20000 + RANDOM % 10000))
    bench_backend_env "$backend" "bench_resident_$$_$resident"
    env "${BENCH_ENV[@]}" CORTEX_DATA_DIR="$dir/data-$backend-$resident" CORTEX_BOOTSTRAP_PASSWORD=bench-password-123 \
      CORTEX_LIMITS__COMPANY_REQUESTS=1000000000 CORTEX_KNOWLEDGE__RESIDENT_CHUNKS="$resident" \
      CORTEX_LOG__LEVEL=warn "$BIN/cortex" serve --bind "127.0.0.1:$port" >"$dir/server.log" 2>&1 &
    srv_pid=$!
    bench_connect "$port"
    for n in 2 16 64; do
      doc "$n" >"$dir/doc-$n.md"
      source=$(curl -sf -X POST "$API/v1/knowledge/sources" -H "x-api-key: $key" -H 'content-type: application/json' \
        -d "{\"name\":\"s$n\",\"kind\":\"file\"}" | python3 -c 'import sys,json;print(json.load(sys.stdin)["id"])')
      chunks=$(curl -sf -X POST "$API/v1/knowledge/upload" -H "x-api-key: $key" -F source_id="$source" -F file=@"$dir/doc-$n.md" \
        | python3 -c 'import sys,json;print(json.load(sys.stdin)["chunks_created"])')
      body=$(printf '{"source_ids":["%s"],"query":"where is SKU-{n} and how long does a refund take","top_k":5}' "$source")
      "$BIN/examples/loadgen" --url "$API/v1/knowledge/search" --header "x-api-key: $key" --body "$body" --concurrency 8 --seconds 1 >/dev/null
      before=$(awk '{print $14 + $15}' "/proc/$srv_pid/stat")
      r=$("$BIN/examples/loadgen" --url "$API/v1/knowledge/search" --header "x-api-key: $key" --body "$body" --concurrency 8 --seconds "$SECS")
      after=$(awk '{print $14 + $15}' "/proc/$srv_pid/stat")
      cpu=$(awk -v t=$((after - before)) -v hz="$HZ" -v n="$(get "$r" requests)" 'BEGIN { printf "%.3f", n ? t * 1000 / hz / n : 0 }')
      echo "| $backend | $resident | $chunks | $(get "$r" rps) | $(get "$r" p50_ms) | $(get "$r" p99_ms) | $cpu |"
    done
    kill "$srv_pid"; wait "$srv_pid" 2>/dev/null || true; srv_pid=
  done
done
