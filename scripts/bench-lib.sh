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
