#!/usr/bin/env bash
# Side by side: Cortex's /v1/chat (full pipeline) and the LiteLLM proxy, both in front of the same
# instant OpenAI-compatible upstream (cortex-fakellm), in one run on this machine; then the same
# Cortex run on PostgreSQL, and the cache-hit path.
#
# Cortex's chat: memory on (the customer has five facts), a knowledge source (an uploaded
# document, searched), the cache on and missing (every question is unique), a new conversation
# each request. LiteLLM: `litellm --config` with one model routed to the same upstream (its
# defaults otherwise). For each: req/s, p50, p99 and the server's CPU per request (user + system
# time of its processes over the run, divided by the requests answered).
#
# Usage: scripts/bench-speed.sh [seconds-per-run] [backends: "sqlite postgres"] [litellm: yes|no]
# CORTEX_BENCH_CONCS="1 8 64" sets the concurrencies; CORTEX_BENCH_PERF=DIR records a profile of
# each Cortex run there (with CORTEX_BENCH_BIN pointing at a `--profile profiling` build).
# LiteLLM is installed from PyPI into ~/.cache/litellm-venv when missing. PostgreSQL comes from
# scripts/pgvector.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
SECS="${1:-10}"; BACKENDS="${2:-sqlite postgres}"; WITH_LITELLM="${3:-yes}"
CONCS="${CORTEX_BENCH_CONCS:-1 8 64}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cortex-target}"
# The deployed build: `--profile production` (release with fat LTO; see Cargo.toml).
[ -n "${CORTEX_BENCH_NO_BUILD:-}" ] || cargo build --profile production -q -p cortex -p cortex-fakellm --bins --examples
BIN="${CORTEX_BENCH_BIN:-$CARGO_TARGET_DIR/production}"   # another build to compare: CORTEX_BENCH_BIN=dir
LOAD="$BIN/examples/loadgen"
dir=$(mktemp -d)
cleanup() {
  kill "${srv_pid:-}" "${fake_pid:-}" 2>/dev/null || true
  [ -n "${llm_pid:-}" ] && kill -- -"$llm_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

# CPU ticks (user + system) of a process and its threads; of a whole process group with -g.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
group_ticks() { local t=0 p; for p in $(pgrep -g "$1"); do t=$((t + $(ticks "$p" 2>/dev/null || echo 0))); done; echo "$t"; }
HZ=$(getconf CLK_TCK)
get() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1==k {print $2}'; }
# run NAME CONC TICKS-FN PID URL BODY [HEADER]: one loadgen run and its table row.
run() {
  local name="$1" conc="$2" fn="$3" pid="$4" url="$5" body="$6" header="${7:-x-bench: 1}"
  local before after r n
  before=$("$fn" "$pid")
  # CORTEX_BENCH_PERF=DIR: a `perf record` (DWARF call graphs) of each Cortex run (a --profile profiling build).
  local perf_pid=
  if [ -n "${CORTEX_BENCH_PERF:-}" ] && [ "$fn" = ticks ]; then
    mkdir -p "$CORTEX_BENCH_PERF"
    perf record -q -F 499 --call-graph dwarf,16384 -p "$pid" -o "$CORTEX_BENCH_PERF/$name-$conc.data" -- sleep "$SECS" 2>/dev/null &
    perf_pid=$!
  fi
  r=$("$LOAD" --url "$url" --header "$header" --body "$body" --concurrency "$conc" --seconds "$SECS")
  after=$("$fn" "$pid")
  [ -z "$perf_pid" ] || wait "$perf_pid" || true
  n=$(get "$r" requests)
  local cpu; cpu=$(awk -v t=$((after - before)) -v hz="$HZ" -v n="$n" 'BEGIN { printf "%.3f", n ? t * 1000 / hz / n : 0 }')
  echo "| $name | $conc | $(get "$r" rps) | $(get "$r" p50_ms) | $(get "$r" p99_ms) | $cpu | $(get "$r" errors) |"
  eval "RPS_${name//[^a-zA-Z0-9]/_}_$conc=$(get "$r" rps)"
}

# The upstream, shared by both.
"$BIN/cortex-fakellm" --bind 127.0.0.1:0 --latency-ms 0 >"$dir/fake.log" 2>&1 &
fake_pid=$!
for _ in $(seq 1 50); do grep -q listening "$dir/fake.log" 2>/dev/null && break; sleep 0.1; done
FAKE=$(head -1 "$dir/fake.log" | awk '{print $3}')

# cortex_start BACKEND: a release server on BACKEND in front of $FAKE, its agent and customer.
cortex_start() {
  local backend="$1"
  port=$((20000 + RANDOM % 10000))
  bench_backend_env "$backend" "bench_speed_$$"
  env "${BENCH_ENV[@]}" OPENAI_API_KEY=bench OPENAI_BASE_URL="$FAKE" CORTEX_DATA_DIR="$dir/data-$backend" \
    CORTEX_BOOTSTRAP_PASSWORD=bench-password-123 CORTEX_LIMITS__COMPANY_REQUESTS=1000000000 \
    CORTEX_LIMITS__CONVERSATION_MESSAGES=1000000000 CORTEX_MEMORY__EXTRACT_FACTS=false \
    CORTEX_LOG__LEVEL=warn "$BIN/cortex" serve --bind "127.0.0.1:$port" >"$dir/server-$backend.log" 2>&1 &
  srv_pid=$!
  bench_connect "$port"
  printf '# Returns and refunds\n\nReturns are free within 30 days of delivery.\n\nRefunds take 5 business days after the item arrives.\n\n# Shipping\n\nOrders ship within 2 days. Express delivery costs 15 USD.\n' >"$dir/policy.md"
  local source
  source=$(curl -sf -X POST "$API/v1/knowledge/sources" -H "x-api-key: $key" -H 'content-type: application/json' \
    -d '{"name":"Handbook","kind":"file"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["id"])')
  curl -sf -X POST "$API/v1/knowledge/upload" -H "x-api-key: $key" -F source_id="$source" -F file=@"$dir/policy.md" >/dev/null
  agent=$(curl -sf -X POST "$API/v1/agents" -H "x-api-key: $key" -H 'content-type: application/json' -d '{
    "name": "Bench", "system_prompt": "You are {{ agent.name }}, a support agent. Customer {{ customer.id }} on {{ channel }}.",
    "workflow_faqs": [{"question": "What are your business hours?", "answer": "Sunday to Thursday, 9 AM to 6 PM."}],
    "knowledge_source_ids": ["'"$source"'"],
    "settings": {"cache_enabled": true, "memory_enabled": true}}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["id"])')
  for fact in "Prefers Arabic" "Lives in Riyadh" "Ordered a kettle last week" "Has a premium plan" "Pays by card"; do
    curl -sf -X POST "$API/v1/memory/bench/save" -H "x-api-key: $key" -H 'content-type: application/json' \
      -d "{\"company_id\":\"$company\",\"fact\":\"$fact\",\"confidence\":0.9}" >/dev/null
  done
  chat_body=$(printf '{"company_id":"%s","agent_id":"%s","conversation_id":"00000000-0000-4000-8000-{n12}","customer_id":"bench","message":"Question %s-{n}: how long do refunds take?"}' \
    "$company" "$agent" "$backend")
}

echo "| server | concurrency | req/s | p50 ms | p99 ms | server CPU ms / request | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for backend in $BACKENDS; do
  cortex_start "$backend"
  "$LOAD" --url "$API/v1/chat" --header "x-api-key: $key" --body "$chat_body" --concurrency 8 --seconds 2 >/dev/null
  for conc in $CONCS; do
    run "cortex-$backend" "$conc" ticks "$srv_pid" "$API/v1/chat" "$chat_body" "x-api-key: $key"
  done
  # The cache-hit path: one question asked again and again (stored by its first answer; a
  # customer without facts, since an answer that used memory is never cached).
  one=$(printf '{"company_id":"%s","agent_id":"%s","conversation_id":"00000000-0000-4000-9000-000000000001","customer_id":"guest","message":"When do refunds arrive?"}' "$company" "$agent")
  curl -sf -X POST "$API/v1/chat" -H "x-api-key: $key" -H 'content-type: application/json' -d "$one" >/dev/null
  sleep 1
  for conc in $CONCS; do
    run "cortex-$backend-cache-hit" "$conc" ticks "$srv_pid" "$API/v1/chat" "$one" "x-api-key: $key"
  done
  kill "$srv_pid"; wait "$srv_pid" 2>/dev/null || true; srv_pid=
done

if [ "$WITH_LITELLM" = yes ]; then
  VENV="$HOME/.cache/litellm-venv"
  [ -x "$VENV/bin/litellm" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q 'litellm[proxy]'; }
  printf 'model_list:\n  - model_name: gpt-4o-mini\n    litellm_params:\n      model: openai/gpt-4o-mini\n      api_base: %s\n      api_key: bench\n' "$FAKE" >"$dir/litellm.yaml"
  lport=$((30000 + RANDOM % 10000))
  # A master key, as LiteLLM requires (and as Cortex's key is checked, so both authenticate).
  llm_key="sk-bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  setsid env LITELLM_TELEMETRY=False LITELLM_MASTER_KEY="$llm_key" "$VENV/bin/litellm" --config "$dir/litellm.yaml" --host 127.0.0.1 --port "$lport" >"$dir/litellm.log" 2>&1 &
  llm_pid=$!
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$lport/health/liveliness" >/dev/null 2>&1 && break; sleep 0.2; done
  llm_body='{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are Bench, a support agent."},{"role":"user","content":"Question {n}: how long do refunds take?"}]}'
  "$LOAD" --url "http://127.0.0.1:$lport/chat/completions" --header "authorization: Bearer $llm_key" --body "$llm_body" --concurrency 8 --seconds 2 >/dev/null
  for conc in $CONCS; do
    run litellm "$conc" group_ticks "$llm_pid" "http://127.0.0.1:$lport/chat/completions" "$llm_body" "authorization: Bearer $llm_key"
  done
  echo
  for conc in $CONCS; do
    c=$(eval echo "\${RPS_cortex_sqlite_$conc:-}"); l=$(eval echo "\${RPS_litellm_$conc:-}")
    [ -n "$c" ] && [ -n "$l" ] && awk -v c="$c" -v l="$l" -v n="$conc" 'BEGIN { printf "concurrency %s: Cortex (SQLite) / LiteLLM = %.1f×\n", n, c / l }'
  done
fi
