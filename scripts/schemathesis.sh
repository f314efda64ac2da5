#!/usr/bin/env bash
# Property-based API test: schemathesis against /openapi.json of a running `server`.
# Starts the server (ENVIRONMENT=test) on a throwaway database, waits until it is ready, runs
# schemathesis, stops the server with SIGTERM (it must exit 0) and drops the database.
#
# Checks: all, except two whose findings are deliberate here:
# - positive_data_acceptance: rules the schema cannot express are enforced (an artifact update
#   needs If-Match or a version: 428/412; no NUL character inside free-form JSON: 422);
# - negative_data_rejection: poem-openapi reads a JSON number or boolean into a string field.
# Needs: PostgreSQL at ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres), curl,
# schemathesis (pip install schemathesis==4.32.5), a built target/debug/server.
set -euo pipefail
cd "$(dirname "$0")/.."

admin=${ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db="ab_schemathesis_$$"
base=${admin%/*}
port=${SCHEMATHESIS_PORT:-18181}
server=./target/debug/server
[ -x "$server" ] || cargo build --locked

psql -q "$admin" -c "CREATE DATABASE $db"
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
  psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
}
trap cleanup EXIT

ENVIRONMENT=test PORT=$port DATABASE_URL="$base/$db" "$server" > target/schemathesis-server.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/health/ready" > /dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat target/schemathesis-server.log; exit 1; }
  sleep 0.1
done

schemathesis run "http://127.0.0.1:$port/openapi.json" \
  --checks all \
  --exclude-checks positive_data_acceptance,negative_data_rejection \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-50}" \
  --generation-deterministic

kill -TERM "$pid"
wait "$pid"
pid=
echo "schemathesis: no server errors, no schema violations; server stopped cleanly"
