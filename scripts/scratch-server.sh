# Sourced by scripts/schemathesis.sh and scripts/typescript-client.sh: `server` as it runs in
# production (ENVIRONMENT=production, an API key, JSON logs) on a free loopback port, over a
# scratch database that the server migrates itself at start-up.
#
# scratch_server_start NAME  creates database ab_NAME_<pid>, starts the server, waits for the
#                            address it logs (the port opens only after the migrations ran),
#                            then polls /health/ready; sets `base` (http://127.0.0.1:PORT),
#                            `api_key` and `server_log`. An EXIT trap stops it and drops the
#                            database whatever happens.
# scratch_server_stop        SIGTERM; the server must exit 0.
#
# Needs: PostgreSQL at ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres), psql,
# curl, a built target/debug/server (built when missing).

scratch_server_start() {
  local name=$1
  scratch_admin=${ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
  scratch_db="ab_${name}_$$"
  server_log="target/$name-server.log"
  api_key="$name-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  [ -x ./target/debug/server ] || cargo build --locked --bin server
  psql -q "$scratch_admin" -c "CREATE DATABASE $scratch_db"
  trap scratch_server_cleanup EXIT
  ENVIRONMENT=production HOST=127.0.0.1 PORT=0 API_KEYS="$api_key" \
    DATABASE_URL="${scratch_admin%/*}/$scratch_db" ./target/debug/server > "$server_log" 2>&1 &
  server_pid=$!
  base=
  for _ in $(seq 1 600); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      cat "$server_log" >&2
      echo "server exited before it was ready" >&2
      return 1
    fi
    if [ -z "$base" ]; then
      base=$(grep -o 'Listening on http://[0-9.:]*' "$server_log" | head -n 1 | cut -d' ' -f3 || true)
    fi
    if [ -n "$base" ] && curl -fs "$base/health/ready" > /dev/null; then
      return 0
    fi
    sleep 0.1
  done
  cat "$server_log" >&2
  echo "server not ready within 60 s" >&2
  return 1
}

scratch_server_stop() {
  kill -TERM "$server_pid"
  wait "$server_pid"
  server_pid=
}

scratch_server_cleanup() {
  if [ -n "${server_pid:-}" ]; then
    kill "$server_pid" 2> /dev/null || true
  fi
  psql -q "$scratch_admin" -c "DROP DATABASE IF EXISTS $scratch_db WITH (FORCE)" || true
}
