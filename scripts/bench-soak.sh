#!/usr/bin/env bash
# Soak: /v1/chat (full pipeline, a new conversation and a unique question per request) at 80 % of
# the node's measured peak for MINUTES minutes, on SQLite, with the fake model answering instantly
# in its own process. Prints the peak, then per minute: req/s, p50, p99, and the server's RSS.
# Usage: scripts/bench-soak.sh [minutes] [concurrency] [cache: false|true]
# With the cache on, every unique answer is stored: memory grows until the per-agent bound
# (cache.max_entries_per_agent) is reached, so that run measures the cache filling, not a plateau.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
MINUTES="${1:-10}"; CONC="${2:-64}"; CACHE="${3:-false}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cortex-target}"
[ -n "${CORTEX_BENCH_NO_BUILD:-}" ] || cargo build --release -q -p cortex -p cortex-fakellm --bins --examples
BIN="${CORTEX_BENCH_BIN:-$CARGO_TARGET_DIR/release}"   # another build: CORTEX_BENCH_BIN=dir
dir=$(mktemp -d)
cleanup() { kill "${rss_pid:-}" "${fake_pid:-}" "${srv_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

bench_serve_with_fake "$BIN" "$dir"
agent=$(curl -sf -X POST "$API/v1/agents" -H "x-api-key: $key" -H 'content-type: application/json' -d '{
  "name": "Soak", "system_prompt": "You are {{ agent.name }}, a support agent.",
  "knowledge_documents": [{"title": "Returns", "content": "Returns are free within 30 days.\n\nRefunds take 5 business days."}],
  "settings": {"cache_enabled": '"$CACHE"'}}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["id"])')
body=$(printf '{"company_id":"%s","agent_id":"%s","conversation_id":"00000000-0000-4000-8000-{n12}","customer_id":"soak","message":"Question {n}: how long do refunds take?"}' "$company" "$agent")
LOAD="$BIN/examples/loadgen"

"$LOAD" --url "$API/v1/chat" --header "x-api-key: $key" --body "$body" --concurrency 8 --seconds 3 >/dev/null
peak=$("$LOAD" --url "$API/v1/chat" --header "x-api-key: $key" --body "$body" --concurrency "$CONC" --seconds 15 | sed -n 's/.* rps=\([0-9]*\).*/\1/p')
rate=$((peak * 8 / 10))
echo "peak (c=$CONC, 15 s, cache $CACHE): $peak req/s; soak at $rate req/s for $MINUTES min"
rss() { awk '/VmRSS/{print $2}' "/proc/$srv_pid/status"; }
echo "RSS at start: $(( $(rss) / 1024 )) MB"
( for m in $(seq 1 "$MINUTES"); do sleep 60; echo "  RSS after minute $m: $(( $(rss) / 1024 )) MB"; done ) &
rss_pid=$!
"$LOAD" --url "$API/v1/chat" --header "x-api-key: $key" --body "$body" --concurrency "$CONC" \
  --seconds $((MINUTES * 60)) --rate "$rate" --every 60
wait "$rss_pid" 2>/dev/null || true
echo "RSS at end: $(( $(rss) / 1024 )) MB"
