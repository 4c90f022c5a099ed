#!/usr/bin/env bash
# A/B benchmark of two (or more) release binaries on the same machine: authenticated GET /v1/me
# with a ctx_ key on SQLite, concurrency 1 and 64, 8 s each after a 2 s warm-up, binaries in the
# order given (repeat them to alternate, e.g. OLD NEW OLD NEW). Build an older commit with
#   git worktree add /tmp/old <commit> && (cd /tmp/old && cargo build --release -p cortex) && cp …/release/cortex /tmp/cortex-old
# Usage: scripts/bench-ab.sh BIN [BIN …]   (needs wrk)
set -euo pipefail
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
for BIN in "$@"; do
  extra=()
  # Binaries that know the rate-limit setting get it raised, so nothing is refused.
  grep -q company_requests "$BIN" && extra=(CORTEX_LIMITS__COMPANY_REQUESTS=1000000000)
  dir=$(mktemp -d); port=$((20000 + RANDOM % 10000))
  env "${extra[@]}" CORTEX_DATA_DIR="$dir" CORTEX_BOOTSTRAP_PASSWORD=bench-password-123 \
    CORTEX_LOG__LEVEL=warn "$BIN" serve --bind "127.0.0.1:$port" >"$dir/out.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
  token=$(curl -sf -X POST "http://127.0.0.1:$port/portal/api/login" -H 'content-type: application/json' \
    -d '{"email":"admin@cortex.local","password":"bench-password-123"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["token"])')
  key=$(curl -sf -X POST "http://127.0.0.1:$port/portal/api/keys" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d '{"name":"ab"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["key"])')
  wrk -t1 -c1 -d2s -H "x-api-key: $key" "http://127.0.0.1:$port/v1/me" >/dev/null
  for c in 1 64; do
    t=1; [ "$c" = 64 ] && t=2
    r=$(wrk -t$t -c$c -d8s --latency -H "x-api-key: $key" "http://127.0.0.1:$port/v1/me")
    echo "$BIN c=$c $(echo "$r" | awk '/Requests\/sec/{print $2}') req/s p50 $(echo "$r" | awk '/ 50%/{print $2}') p99 $(echo "$r" | awk '/ 99%/{print $2}')"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true; rm -rf "$dir"
done
