#!/usr/bin/env bash
# Starts PostgreSQL 16 with pgvector on 127.0.0.1:5433 for tests and benchmarks, and prints
# its URL (postgres://postgres@127.0.0.1:5433/test).
#
# The binaries come from the PyPI package pgserver==0.1.4 (PostgreSQL 16 + pgvector 0.6),
# installed with pip if missing. PostgreSQL refuses to run as root, so the server runs as
# the `postgres` user (created if missing) from a copy of the binaries under the state
# directory (the Python site-packages may sit under a home directory postgres cannot read).
# Idempotent: when a server already answers on the port, it only makes sure the database
# `test` and the extension `vector` exist, prints the URL and exits 0.
#
# Environment: CORTEX_PGVECTOR_PORT (5433), CORTEX_PGVECTOR_DIR (/var/tmp/cortex-pgvector),
# PYTHON (python3), CORTEX_PGVECTOR_OPTS (extra `postgres -c` options).
# Stop it with:
#   runuser -u postgres -- "$CORTEX_PGVECTOR_DIR/site/pgserver/pginstall/bin/pg_ctl" -D "$CORTEX_PGVECTOR_DIR/data" stop
set -euo pipefail

PORT="${CORTEX_PGVECTOR_PORT:-5433}"
STATE="${CORTEX_PGVECTOR_DIR:-/var/tmp/cortex-pgvector}"
PYTHON="${PYTHON:-python3}"
PACKAGE="pgserver==0.1.4"
DB="test"
URL="postgres://postgres@127.0.0.1:${PORT}/${DB}"

log() { echo "pgvector.sh: $*" >&2; }

locate_pginstall() {
    "$PYTHON" - <<'PY'
import importlib.util, os, sys
spec = importlib.util.find_spec("pgserver")
if spec is None or spec.origin is None:
    sys.exit(1)
# The package directory: pginstall/ inside it, the bundled libraries in its sibling
# pgserver.libs/ (the binaries find them through RPATH $ORIGIN/../../../pgserver.libs).
pkg = os.path.dirname(spec.origin)
if not os.path.isfile(os.path.join(pkg, "pginstall", "bin", "postgres")):
    sys.exit(1)
print(pkg)
PY
}

SITE="$STATE/site"
BIN="$SITE/pgserver/pginstall/bin"

psql_cmd() {
    "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres "$@"
}

ensure_database() {
    if [ "$(psql_cmd -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != "1" ]; then
        psql_cmd -d postgres -c "CREATE DATABASE $DB"
    fi
    psql_cmd -d "$DB" -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS vector"
    local version
    version="$(psql_cmd -d "$DB" -tAc "SELECT extversion FROM pg_extension WHERE extname = 'vector'")"
    log "PostgreSQL on 127.0.0.1:$PORT, database $DB, pgvector $version"
}

mkdir -p "$STATE"

# 1. Binaries: pip package, copied where the postgres user can execute them.
if [ ! -x "$BIN/postgres" ]; then
    if ! src="$(locate_pginstall 2>/dev/null)"; then
        log "installing $PACKAGE from PyPI"
        "$PYTHON" -m pip install --quiet --disable-pip-version-check "$PACKAGE" >&2
        src="$(locate_pginstall)"
    fi
    rm -rf "$SITE.tmp"
    mkdir -p "$SITE.tmp/pgserver"
    cp -a "$src/pginstall" "$SITE.tmp/pgserver/pginstall"
    if [ -d "$src/../pgserver.libs" ]; then
        cp -a "$src/../pgserver.libs" "$SITE.tmp/pgserver.libs"
    fi
    rm -rf "$SITE"
    mv "$SITE.tmp" "$SITE"
fi
chmod -R a+rX "$SITE"

# 2. Already running? Then only make sure of the database and extension.
if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" 2>/dev/null; then
    ensure_database
    echo "$URL"
    exit 0
fi

# 3. The postgres user and a data directory it owns.
if ! id -u postgres >/dev/null 2>&1; then
    log "creating system user postgres"
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin postgres
fi
chmod 755 "$STATE"
DATA="$STATE/data"
LOG="$STATE/postgres.log"
if [ ! -s "$DATA/PG_VERSION" ]; then
    rm -rf "$DATA"
    mkdir -p "$DATA"
    chown postgres: "$DATA"
    chmod 700 "$DATA"
    log "initialising $DATA"
    runuser -u postgres -- "$BIN/initdb" -D "$DATA" -U postgres --auth=trust \
        --encoding=UTF8 --locale=C >"$STATE/initdb.log" 2>&1 || {
        cat "$STATE/initdb.log" >&2
        exit 1
    }
fi
touch "$LOG"
chown postgres: "$LOG"

# 4. Start and wait.
log "starting PostgreSQL on 127.0.0.1:$PORT (log: $LOG)"
runuser -u postgres -- "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
    -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1 ${CORTEX_PGVECTOR_OPTS:-}" start >&2 || {
    tail -n 30 "$LOG" >&2
    exit 1
}
for _ in $(seq 1 30); do
    "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" && break
    sleep 1
done
ensure_database
echo "$URL"
