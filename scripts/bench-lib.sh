# Sourced by the bench scripts. bench_connect PORT: waits for the server on 127.0.0.1:PORT
# (bootstrapped with the password bench-password-123), logs in as the bootstrap admin and sets
# API, token, key (an API key) and company.
bench_connect() {
  local port="$1"
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  API="http://127.0.0.1:$port"
  token=$(curl -sf -X POST "$API/portal/api/login" -H 'content-type: application/json' \
    -d '{"email":"admin@cortex.local","password":"bench-password-123"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["token"])')
  key=$(curl -sf -X POST "$API/portal/api/keys" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d '{"name":"bench"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["key"])')
  company=$(curl -sf "$API/v1/me" -H "x-api-key: $key" | python3 -c 'import sys,json;print(json.load(sys.stdin)["company_id"])')
}

# bench_serve_with_fake BIN DIR: the fake OpenAI-compatible model (instant answers) and a release
# server using it, both in the background with their logs in DIR, no rate limits, no fact
# extraction; then bench_connect. Sets FAKE, fake_pid, srv_pid, port (and API, token, key, company).
bench_serve_with_fake() {
  local bin="$1" dir="$2"
  "$bin/cortex-fakellm" --bind 127.0.0.1:0 --latency-ms 0 >"$dir/fake.log" 2>&1 &
  fake_pid=$!
  for _ in $(seq 1 50); do grep -q listening "$dir/fake.log" 2>/dev/null && break; sleep 0.1; done
  FAKE=$(head -1 "$dir/fake.log" | awk '{print $3}')
  port=$((20000 + RANDOM % 10000))
  OPENAI_API_KEY=bench OPENAI_BASE_URL="$FAKE" CORTEX_DATA_DIR="$dir/data" CORTEX_BOOTSTRAP_PASSWORD=bench-password-123 \
    CORTEX_LIMITS__COMPANY_REQUESTS=1000000000 CORTEX_LIMITS__CONVERSATION_MESSAGES=1000000000 CORTEX_MEMORY__EXTRACT_FACTS=false \
    CORTEX_LOG__LEVEL=warn "$bin/cortex" serve --bind "127.0.0.1:$port" >"$dir/server.log" 2>&1 &
  srv_pid=$!
  bench_connect "$port"
}

# bench_backend_env BACKEND DB: sets BENCH_ENV (VAR=value words for `env`) for a server on
# BACKEND: nothing for sqlite; for postgres, a fresh database DB on scripts/pgvector.sh's server
# and an encryption key.
bench_backend_env() {
  BENCH_ENV=()
  if [ "$1" = postgres ]; then
    local url; url=$(scripts/pgvector.sh)
    psql "$url" -qc "DROP DATABASE IF EXISTS $2" -c "CREATE DATABASE $2" >/dev/null
    BENCH_ENV=(CORTEX_DATABASE_URL="${url%/*}/$2" CORTEX_SECRETS__ENCRYPTION_KEY="$(head -c 32 /dev/urandom | base64)")
  fi
}
