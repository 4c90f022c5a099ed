#!/usr/bin/env bash
# Benchmark: the answer cache (stage 05).
#  1. cache_bench: lookup (exact hit, similar hit, miss) and store latency as one agent's entries
#     grow 1,000 → 100,000, on SQLite and on PostgreSQL (pgvector, scripts/pgvector.sh).
#  2. /v1/chat cache hits with 100,000 entries cached for the agent (release server, SQLite).
#  3. /v1/chat with the cache on, unique questions for MINUTES minutes (each answer is stored):
#     throughput and p99 per minute, to show they stay flat as entries accumulate.
# Usage: scripts/bench-cache.sh [minutes] [seconds-per-hit-run]   (CORTEX_BENCH_SKIP_HITS=1 skips part 2)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
MINUTES="${1:-10}"; SECS="${2:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cortex-target}"
[ -n "${CORTEX_BENCH_NO_BUILD:-}" ] || cargo build --release -q -p cortex -p cortex-fakellm --bins --examples
BIN="${CORTEX_BENCH_BIN:-$CARGO_TARGET_DIR/release}"   # another build: CORTEX_BENCH_BIN=dir
dir=$(mktemp -d)
cleanup() { kill "${fake_pid:-}" "${srv_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

# CORTEX_BENCH_SQLITE_SIZES / CORTEX_BENCH_PG_SIZES: entries per run ("" skips that backend).
SQLITE_SIZES="${CORTEX_BENCH_SQLITE_SIZES-1000,10000,100000}"
PG_SIZES="${CORTEX_BENCH_PG_SIZES-1000,10000,100000}"
if [ -n "$SQLITE_SIZES" ]; then
  echo "## 1. AnswerCache, SQLite"
  "$BIN/examples/cache_bench" --sizes "$SQLITE_SIZES" --probes 300
fi
if [ -n "$PG_SIZES" ]; then
  PG="$(scripts/pgvector.sh)"
  psql "$PG" -qc "DROP DATABASE IF EXISTS cachebench" -c "CREATE DATABASE cachebench" >/dev/null
  echo "## 1. AnswerCache, PostgreSQL"
  DATABASE_URL="${PG%/*}/cachebench" "$BIN/examples/cache_bench" --sizes "$PG_SIZES" --probes 300
fi

"$BIN/cortex-fakellm" --bind 127.0.0.1:0 --latency-ms 0 >"$dir/fake.log" 2>&1 &
fake_pid=$!
for _ in $(seq 1 50); do grep -q listening "$dir/fake.log" 2>/dev/null && break; sleep 0.1; done
FAKE=$(head -1 "$dir/fake.log" | awk '{print $3}')
# start_server DATA_DIR [ENV=VALUE…]: a release server on SQLite in DATA_DIR, then an API key.
start_server() {
  local data="$1"; shift
  port=$((20000 + RANDOM % 10000))
  env OPENAI_API_KEY=bench OPENAI_BASE_URL="$FAKE" CORTEX_DATA_DIR="$data" CORTEX_BOOTSTRAP_PASSWORD=bench-password-123 \
    CORTEX_LIMITS__COMPANY_REQUESTS=1000000000 CORTEX_LIMITS__CONVERSATION_MESSAGES=1000000000 CORTEX_MEMORY__EXTRACT_FACTS=false \
    CORTEX_LOG__LEVEL=warn "$@" "$BIN/cortex" serve --bind "127.0.0.1:$port" >"$dir/server.log" 2>&1 &
  srv_pid=$!
  bench_connect "$port"
}
new_agent() {
  curl -sf -X POST "$API/v1/agents" -H "x-api-key: $key" -H 'content-type: application/json' \
    -d "{\"name\": \"$1\", \"system_prompt\": \"You are a support agent.\", \"settings\": {\"memory_enabled\": false}}" \
    | python3 -c 'import sys,json;print(json.load(sys.stdin)["id"])'
}
# Part 2 holds 100,000 entries for one agent: above the default bound of 10,000.
start_server "$dir/data" CORTEX_CACHE__MAX_ENTRIES_PER_AGENT=200000
LOAD="$BIN/examples/loadgen"
get() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1==k {print $2}'; }

if [ -z "${CORTEX_BENCH_SKIP_HITS:-}" ]; then
echo "## 2. /v1/chat cache hits, 100,000 entries cached for the agent"
hits=$(new_agent hits)
for b in $(seq 0 99); do
  python3 - "$company" "$hits" "$b" >"$dir/warm.json" <<'PY'
import json, sys
company, agent, b = sys.argv[1], sys.argv[2], int(sys.argv[3])
pairs = [{"question": f"What is the warranty of product {b * 1000 + i} in the catalogue?",
          "answer": f"Product {b * 1000 + i} has a two-year warranty."} for i in range(1000)]
print(json.dumps({"company_id": company, "agent_id": agent, "pairs": pairs}))
PY
  curl -sf -X POST "$API/v1/cache/warm" -H "x-api-key: $key" -H 'content-type: application/json' -d @"$dir/warm.json" >/dev/null
done
curl -sf "$API/v1/cache/stats" -H "x-api-key: $key"; echo
exact=$(printf '{"company_id":"%s","agent_id":"%s","conversation_id":"%s","customer_id":"bench","message":"What is the warranty of product 54321 in the catalogue?"}' \
  "$company" "$hits" "$(python3 -c 'import uuid;print(uuid.uuid4())')")
similar=$(printf '{"company_id":"%s","agent_id":"%s","conversation_id":"%s","customer_id":"bench","message":"what is the warranty of product 54321 from the catalogue"}' \
  "$company" "$hits" "$(python3 -c 'import uuid;print(uuid.uuid4())')")
curl -sf -X POST "$API/v1/chat" -H "x-api-key: $key" -H 'content-type: application/json' -d "$similar" \
  | python3 -c 'import sys,json;r=json.load(sys.stdin);print("similar hit:", r["cached"], r["reply"], r["step_timings"])'
"$LOAD" --url "$API/v1/chat" --header "x-api-key: $key" --body "$exact" --concurrency 1 --seconds 2 >/dev/null
# Server-side: the node's own histogram of time to the response head, cumulative counts at
# 0.25 / 0.5 / 1 ms (a run's share is the difference of two readings).
buckets() {
  curl -sf "$API/v1/metrics" -H "x-api-key: $key" | awk '
    /^cortex_http_request_duration_ms_bucket\{le="0.25"\}/ {a=$2}
    /^cortex_http_request_duration_ms_bucket\{le="0.5"\}/ {b=$2}
    /^cortex_http_request_duration_ms_bucket\{le="1"\}/ {c=$2}
    /^cortex_http_request_duration_ms_count/ {n=$2}
    END {print a+0, b+0, c+0, n+0}'
}
share() { # before after → "≤0.25 ms % / ≤0.5 ms % / ≤1 ms %"
  echo "$1 $2" | awk '{n=$8-$4; if (n<1) n=1; printf "%.1f / %.1f / %.1f", 100*($5-$1)/n, 100*($6-$2)/n, 100*($7-$3)/n}'
}
echo "| request | conc | req/s | p50 ms | p99 ms | errors | server-side ≤0.25 / ≤0.5 / ≤1 ms (%) |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for conc in 1 8; do
  for kind in exact similar; do
    body=$exact; [ "$kind" = similar ] && body=$similar
    before=$(buckets)
    r=$("$LOAD" --url "$API/v1/chat" --header "x-api-key: $key" --body "$body" --concurrency "$conc" --seconds "$SECS")
    after=$(buckets)
    echo "| $kind hit | $conc | $(get "$r" rps) | $(get "$r" p50_ms) | $(get "$r" p99_ms) | $(get "$r" errors) | $(share "$before" "$after") |"
  done
done

fi
echo "## 3. /v1/chat, cache on, unique questions for $MINUTES min (each answer stored)"
# A fresh server with the default configuration (the bound of 10,000 entries per agent).
kill "$srv_pid"; wait "$srv_pid" 2>/dev/null || true
start_server "$dir/data3"
unique=$(new_agent unique)
# One conversation per request, so no history grows: what could grow is the cache.
body=$(printf '{"company_id":"%s","agent_id":"%s","conversation_id":"00000000-0000-4000-8000-{n12}","customer_id":"bench","message":"Question {n}: how long does delivery to zone {n} take?"}' \
  "$company" "$unique")
"$LOAD" --url "$API/v1/chat" --header "x-api-key: $key" --body "$body" --concurrency 32 --seconds $((MINUTES * 60)) --every 60
curl -sf "$API/v1/cache/stats" -H "x-api-key: $key"; echo
