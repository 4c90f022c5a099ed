#!/usr/bin/env bash
# Benchmark: an authenticated GET /v1/me with a ctx_ key, concurrency 1 and 64, SQLite and PostgreSQL.
# Usage: scripts/bench-auth.sh [seconds-per-run]   (needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cortex-target}"
NO_BUILD="${CORTEX_BENCH_NO_BUILD:-}"; DEBUG="${CORTEX_BENCH_DEBUG:-}"; unset CORTEX_BENCH_NO_BUILD CORTEX_BENCH_DEBUG
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
[ -n "$NO_BUILD" ] || cargo build --release -q -p cortex
BIN="$CARGO_TARGET_DIR/release/cortex"
PG_BASE="${CORTEX_BENCH_DATABASE_URL:-$(scripts/pgvector.sh)}"

run_backend() {
  local backend="$1" dir port url pid token key
  dir=$(mktemp -d); port=$((20000 + RANDOM % 10000))
  if [ "$backend" = postgres ]; then
    local schema="cortex_bench_$$"
    psql "$PG_BASE" -qc "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema" >/dev/null 2>&1
    url="$PG_BASE?options=-c%20search_path%3D$schema,public"
  else
    url="sqlite://$dir/cortex.db?mode=rwc"
  fi
  DATABASE_URL="$url" CORTEX_DATA_DIR="$dir" CORTEX_BOOTSTRAP_PASSWORD=bench-password-123 \
    CORTEX_AUTH__JWT_SECRET=bench-signing-secret-0123456789abcdef CORTEX_LIMITS__COMPANY_REQUESTS=1000000000 \
    CORTEX_LOG__LEVEL=warn "$BIN" serve --bind "127.0.0.1:$port" >"$dir/out.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
  token=$(curl -sf -X POST "http://127.0.0.1:$port/portal/api/login" -H 'content-type: application/json' \
    -d '{"email":"admin@cortex.local","password":"bench-password-123"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["token"])')
  key=$(curl -sf -X POST "http://127.0.0.1:$port/portal/api/keys" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d '{"name":"bench"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["key"])')
  # Warm-up, then the measured runs.
  wrk -t1 -c8 -d2s -H "X-API-Key: $key" "http://127.0.0.1:$port/v1/me" >/dev/null
  for conc in 1 64; do
    local threads=1; [ "$conc" -gt 1 ] && threads=2
    local out; out=$(wrk -t"$threads" -c"$conc" -d"${DURATION}s" --latency -H "X-API-Key: $key" "http://127.0.0.1:$port/v1/me")
    local rps p50 p99 non2xx
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}'); non2xx=${non2xx:-0}
    printf '| %-8s | %3s | %10s | %8s | %8s | %s |\n' "$backend" "$conc" "$rps" "$p50" "$p99" "$non2xx"
  done
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  if [ "$backend" = postgres ]; then psql "$PG_BASE" -qc "DROP SCHEMA IF EXISTS cortex_bench_$$ CASCADE" >/dev/null 2>&1; fi
  rm -rf "$dir"
}

echo "| backend  | conc | req/s | p50 | p99 | non-2xx |"
echo "|----------|-----:|------:|----:|----:|--------:|"
run_backend sqlite
run_backend postgres
