#!/usr/bin/env bash
# Benchmark: /v1/chat pipeline overhead and /v1/chat/stream time to first delta, on SQLite, with
# the fake OpenAI-compatible model answering instantly in a separate process.
# Usage: scripts/bench-chat.sh [seconds-per-run]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
SECS="${1:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cortex-target}"
NO_BUILD="${CORTEX_BENCH_NO_BUILD:-}"; DEBUG="${CORTEX_BENCH_DEBUG:-}"; unset CORTEX_BENCH_NO_BUILD CORTEX_BENCH_DEBUG
[ -n "$NO_BUILD" ] || cargo build --release -q -p cortex -p cortex-fakellm --bins --examples
BIN="$CARGO_TARGET_DIR/release"
dir=$(mktemp -d)
cleanup() { [ -n "$DEBUG" ] && cat "$dir/server.log" "$dir/fake.log" | tail -n 8; kill "${fake_pid:-}" "${srv_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

"$BIN/cortex-fakellm" --bind 127.0.0.1:0 --latency-ms 0 >"$dir/fake.log" 2>&1 &
fake_pid=$!
for _ in $(seq 1 50); do grep -q listening "$dir/fake.log" 2>/dev/null && break; sleep 0.1; done
FAKE=$(head -1 "$dir/fake.log" | awk '{print $3}')
port=$((20000 + RANDOM % 10000))
OPENAI_API_KEY=bench OPENAI_BASE_URL="$FAKE" CORTEX_DATA_DIR="$dir/data" CORTEX_BOOTSTRAP_PASSWORD=bench-password-123 \
  CORTEX_LIMITS__COMPANY_REQUESTS=1000000000 CORTEX_LIMITS__CONVERSATION_MESSAGES=1000000000 CORTEX_MEMORY__EXTRACT_FACTS=false \
  CORTEX_LOG__LEVEL=warn "$BIN/cortex" serve --bind "127.0.0.1:$port" >"$dir/server.log" 2>&1 &
srv_pid=$!
bench_connect "$port"
agent=$(curl -sf -X POST "$API/v1/agents" -H "x-api-key: $key" -H 'content-type: application/json' -d '{
  "name": "Bench", "system_prompt": "You are {{ agent.name }}, a support agent. Customer {{ customer.id }} on {{ channel }}.",
  "workflow_faqs": [{"question": "What are your business hours?", "answer": "Sunday to Thursday, 9 AM to 6 PM."}],
  "knowledge_documents": [{"title": "Returns", "content": "Returns are free within 30 days.\n\nRefunds take 5 business days."}],
  "settings": {"cache_enabled": false}}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["id"])')
body=$(printf '{"company_id":"%s","agent_id":"%s","conversation_id":"%s","customer_id":"bench","message":"How long do refunds take after I return an item?"}' \
  "$company" "$agent" "$(python3 -c 'import uuid;print(uuid.uuid4())')")
fake_body='{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are Bench."},{"role":"user","content":"How long do refunds take after I return an item?"}]}'
LOAD="$BIN/examples/loadgen"

# Warm-up.
"$LOAD" --url "$API/v1/chat" --header "x-api-key: $key" --body "$body" --concurrency 8 --seconds 2 >/dev/null
echo "| run | conc | req/s | p50 ms | p99 ms | fake model alone p50/p99 ms | TTFD p50/p99 ms | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for conc in 1 32 128; do
  f=$("$LOAD" --url "$FAKE/chat/completions" --body "$fake_body" --concurrency "$conc" --seconds "$SECS")
  r=$("$LOAD" --url "$API/v1/chat" --header "x-api-key: $key" --body "$body" --concurrency "$conc" --seconds "$SECS")
  s=$("$LOAD" --url "$API/v1/chat/stream" --header "x-api-key: $key" --body "$body" --concurrency "$conc" --seconds "$SECS" --stream)
  get() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1==k {print $2}'; }
  echo "| /v1/chat | $conc | $(get "$r" rps) | $(get "$r" p50_ms) | $(get "$r" p99_ms) | $(get "$f" p50_ms) / $(get "$f" p99_ms) | | $(get "$r" errors) |"
  echo "| /v1/chat/stream | $conc | $(get "$s" rps) | $(get "$s" p50_ms) | $(get "$s" p99_ms) | | $(get "$s" ttfd_p50_ms) / $(get "$s" ttfd_p99_ms) | $(get "$s" errors) |"
done
