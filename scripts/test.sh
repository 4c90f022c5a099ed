#!/usr/bin/env bash
# Runs the whole test suite: every crate, the API suite on SQLite and on PostgreSQL.
# Starts (or installs) the services the suite needs and fails loudly when one cannot be had.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cortex-target}"
export CORTEX_TEST_DATABASE_URL="${CORTEX_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export CORTEX_TEST_REDIS_URL="${CORTEX_TEST_REDIS_URL:-redis://127.0.0.1:6379}"

say() { printf '\n== %s\n' "$*"; }
die() { printf '\nFATAL: %s\n' "$*" >&2; exit 1; }

apt_install() {
  command -v apt-get >/dev/null || return 1
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

postgres_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
ensure_postgres() {
  postgres_up && return 0
  say "PostgreSQL is not answering on 127.0.0.1:5432: starting it"
  command -v pg_ctlcluster >/dev/null || apt_install postgresql || die "cannot install PostgreSQL"
  local version
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
  [ -n "$version" ] || die "no PostgreSQL cluster under /etc/postgresql"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do postgres_up && break; sleep 1; done
  postgres_up || die "PostgreSQL could not be started on 127.0.0.1:5432"
  # Trust auth and a database named test, as the suite expects.
  psql -h 127.0.0.1 -U postgres -tc "SELECT 1 FROM pg_database WHERE datname = 'test'" 2>/dev/null | grep -q 1 \
    || runuser -u postgres -- createdb test || die "cannot create database test"
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

ensure_postgres
ensure_redis
psql "$CORTEX_TEST_DATABASE_URL" -tc "SELECT 1" >/dev/null || die "cannot connect to $CORTEX_TEST_DATABASE_URL"

say "format check"
cargo fmt --all -- --check || die "cargo fmt --check failed: run cargo fmt"

say "tests (SQLite, PostgreSQL)"
cargo test --workspace --all-targets
