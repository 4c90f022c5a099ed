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

bench_serve_with_fake "$BIN" "$dir"
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
