#!/usr/bin/env python3
"""Benchmarks of agent-backend against its peers, side by side in one run on this machine.

    python3 bench/run.py [--runs 7] [--http-seconds 5] [--connections 8] [--check]

Measures (each a median with min/max over --runs runs; peers alternate within a round so drift
hits all alike), prints a table and writes docs/benchmarks.md with the machine, versions, date:

1. no-op start-up check on an up-to-date database, whole process:
   `server --migrate-only` vs `sqlx migrate run` (sqlx-cli 0.9) vs `psql -c 'select max(version)…'`
2. 500 tiny migrations (one INSERT each) onto an empty database: the engine vs the commit floor
   (500 × pgbench's single-client latency of `BEGIN; INSERT; INSERT bookkeeping row; COMMIT`,
   measured in the same round) vs sqlx-cli vs a psql session (BEGIN; migration; bookkeeping; COMMIT)
3. 200 DDL migrations (CREATE TABLE + CREATE INDEX each): the same four, the floor's transaction
   being the same DDL shape under a new name each time
4. process start -> `/health/ready` 200 on a migrated database
5. `GET /api/v1/conversations/{id}` with wrk vs `pgbench -S`, same connection count (--connections),
   and 5b the same at 64 connections
6. stripped binary size and idle RSS
7. `server migrate drift` (schema from the catalogs, compared with the embedded snapshot) beside
   the no-op check, on this project's schema and with 200 extra tables
8. the cost of metrics: `GET /api/v1/conversations/{id}` with wrk against two servers on one
   database, `metrics.enabled` true and false, alternating within each round

9. `server migrate lint DIR` on a generated 200-file set of realistic PostgreSQL migrations
   (functions with `$$` bodies, triggers, views, comments, type changes, concurrent indexes …);
   with `--lint-baseline PATH`, also a `server` built before (e.g. with the sqlparser lint)
10. event streams, two `server` processes on one database: 10a a message POSTed through B until
   its event arrives on a stream held on A (p50, p99) beside the floor, a bare LISTEN/NOTIFY round
   trip between two libpq sessions (psycopg 3, installed from PyPI when missing); 10b 1,000
   streams open on A over 100 conversations: A's RSS and CPU idle and while B writes 100
   messages/s (every event counted at every stream); 10c wrk GET on A with those 1,000 idle
   streams open and without, alternating

and, only when asked for (`--only soak`, by hand: it restarts the local PostgreSQL cluster):

soak. mixed reads and writes with wrk at 64 connections for --soak-seconds (default 180) against
   `server` in production mode, with `pg_ctlcluster … restart` half-way through; reports the
   answers by status, wrk's socket errors, p50/p99 latency and RSS before and after, and fails
   on any 500. Loopback only. Writes its own section of docs/benchmarks.md.

The engine runs generated sets through `examples/bench_migrate.rs`, which calls the same
`app::pre_serve_with` as `server --migrate-only`; the server binary never reads migrations from
disk. Needs PostgreSQL at BENCH_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres,
a user that may CREATE DATABASE), psql and pgbench; installs sqlx-cli 0.9 and wrk when missing.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "target/release/server"
DRIVER = ROOT / "target/release/examples/bench_migrate"
ADMIN = os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
BASE = ADMIN.rsplit("/", 1)[0]
API_KEY = "bench-key-0123456789abcdef"
# Sections of docs/benchmarks.md written by other runs, which a full run leaves as they are.
KEPT_SECTIONS = ("Where the time goes", "9. Migration lint (partial run)", "Soak")

SQLX_TABLE = """CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
);
"""


def log(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def sh(*args: str, env: dict | None = None, capture: bool = False) -> str:
    out = subprocess.run(
        args,
        env=env,
        check=True,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return out.stdout if capture else ""


def psql(db_url: str, sql: str) -> str:
    return sh("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db_url, "-c", sql, capture=True).strip()


def url(db: str) -> str:
    return f"{BASE}/{db}"


def recreate(db: str) -> str:
    psql(ADMIN, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    psql(ADMIN, f"CREATE DATABASE {db}")
    return url(db)


def drop(db: str) -> None:
    psql(ADMIN, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def server_env(db_url: str, **extra: str) -> dict:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "ENVIRONMENT": "production",
        "CONFIG_DIR": str(ROOT / "config"),
        "DATABASE_URL": db_url,
        "API_KEYS": API_KEY,
    }
    env.update(extra)
    return env


def timed(args: list[str], env: dict | None = None, ok: tuple[int, ...] = (0,)) -> float:
    """Wall time of a whole process, in ms; a failure (an exit code not in `ok`) stops the benchmark."""
    start = time.perf_counter()
    proc = subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return elapsed


class Stat:
    def __init__(self, values: list[float]):
        self.values = values
        self.median = statistics.median(values)
        self.min = min(values)
        self.max = max(values)

    def fmt(self, unit: str, digits: int = 1) -> str:
        return f"{self.median:.{digits}f} {unit} ({self.min:.{digits}f}–{self.max:.{digits}f})"


# --- set-up ---------------------------------------------------------------------------------


def ensure_tools(sqlx_cli: bool = True) -> None:
    for tool in ("psql", "pgbench"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: install PostgreSQL's client (apt-get install postgresql-client)")
    if sqlx_cli and not re.search(r" 0\.9\.", subprocess.run(["sqlx", "--version"], capture_output=True, text=True).stdout
                     if shutil.which("sqlx") else ""):
        log("installing sqlx-cli 0.9 (postgres + rustls only)")
        sh("cargo", "install", "sqlx-cli", "--version", "^0.9", "--no-default-features",
           "--features", "postgres,rustls", "--locked")
    if not shutil.which("wrk"):
        if os.geteuid() == 0 and shutil.which("apt-get"):
            log("installing wrk (Debian package)")
            sh("apt-get", "install", "-y", "-qq", "wrk", env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        else:
            raise SystemExit("wrk not found: apt-get install wrk")
    log("building server and the benchmark driver (release)")
    subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "server", "--example", "bench_migrate"],
                   cwd=ROOT, check=True, env={**os.environ, "SQLX_OFFLINE": "true"})


def write_set(dir: Path, n: int, body) -> None:
    dir.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        (dir / f"{i:05d}_step_{i}.sql").write_text(body(i))


def lint_body(i: int) -> str:
    """One realistic migration of a generated lint set: a new table with its function, trigger,
    index, view and comments (dollar quoting everywhere), then changes to the previous file's table;
    every 10th file is a `-- no-transaction` concurrent index."""
    if i % 10 == 0:
        return f"-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t{i - 2}_note_idx ON t{i - 2} (note);\n"
    body = f"""-- lock_timeout: 5s
CREATE TABLE t{i} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL,
    name varchar(64) NOT NULL,
    status text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'done')),
    payload jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX t{i}_account_idx ON t{i} (account_id, created_at DESC);
CREATE FUNCTION t{i}_touch() RETURNS trigger LANGUAGE plpgsql VOLATILE COST 100 AS $fn$
BEGIN
    NEW.updated_at := now();  -- not a statement end
    RETURN NEW;
END;
$fn$;
CREATE TRIGGER t{i}_touch BEFORE UPDATE ON t{i} FOR EACH ROW EXECUTE FUNCTION t{i}_touch();
CREATE VIEW t{i}_open AS SELECT id, account_id FROM t{i} WHERE status = 'new';
COMMENT ON TABLE t{i} IS $c$generated table {i}; see 'bench'$c$;
"""
    if i > 1 and (i - 1) % 10 != 0:
        body += f"""ALTER TABLE t{i - 1} ALTER COLUMN name TYPE text;
ALTER TABLE t{i - 1} ADD COLUMN note text;
ALTER TABLE t{i - 1} ADD COLUMN seen_at timestamptz NOT NULL DEFAULT to_timestamp(0);
ALTER TABLE t{i - 1} ADD CONSTRAINT t{i - 1}_account_fk FOREIGN KEY (account_id) REFERENCES t{i} (id) NOT VALID;
"""
    return body


def bench_lint(runs: int, dir: Path, baseline: str | None) -> dict:
    """`server migrate lint DIR`, whole process, no database; exit 0 or 10 (a deny) both count."""
    env = server_env("postgres://postgres@127.0.0.1:1/none")
    res = {"server migrate lint": []}
    if baseline:
        res["baseline"] = []
    for _ in range(runs):
        res["server migrate lint"].append(timed([str(SERVER), "migrate", "lint", str(dir)], env, ok=(0, 10)))
        if baseline:
            res["baseline"].append(timed([baseline, "migrate", "lint", str(dir)], env, ok=(0, 10)))
    return {k: Stat(v) for k, v in res.items()}


def floor_script(dir: Path) -> Path:
    """One psql session (a peer, not a floor: psql sends each statement on its own round trip):
    per migration BEGIN; its SQL; the bookkeeping row; COMMIT."""
    parts = [SQLX_TABLE]
    for path in sorted(dir.glob("*.sql")):
        raw = path.read_bytes()
        version, desc = path.stem.split("_", 1)
        checksum = hashlib.sha384(raw).hexdigest()
        parts.append(
            f"BEGIN;\n{raw.decode()}\nINSERT INTO _sqlx_migrations (version, description, success, checksum, "
            f"execution_time) VALUES ({int(version)}, '{desc.replace('_', ' ')}', TRUE, '\\x{checksum}', 0);\nCOMMIT;\n"
        )
    script = dir.parent / f"{dir.name}-session.sql"
    script.write_text("".join(parts))
    return script


# --- benchmarks -----------------------------------------------------------------------------


def bench_noop(runs: int) -> dict:
    db_url = recreate("bench_noop")
    sh(str(SERVER), "--migrate-only", env=server_env(db_url))
    cmds = {
        "server --migrate-only": ([str(SERVER), "--migrate-only"], server_env(db_url)),
        "sqlx migrate run": (["sqlx", "migrate", "run", "--source", str(ROOT / "migrations"),
                              "--database-url", db_url], None),
        "psql select max(version)": (["psql", "-X", "-A", "-t", "-q", "-d", db_url, "-c",
                                      "select max(version) from _sqlx_migrations"], None),
    }
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(runs):
        for name, (args, env) in cmds.items():
            times[name].append(timed(args, env))
    drop("bench_noop")
    return {k: Stat(v) for k, v in times.items()}


def bench_drift(runs: int) -> dict:
    """`server migrate drift` (status + one catalog query + the diff) beside the no-op start-up
    check (one query), on this project's schema and with 200 generated tables (each with a primary
    key and an index) added by hand, which drift then reports (exit 11, expected)."""
    db_url = recreate("bench_drift")
    sh(str(SERVER), "--migrate-only", env=server_env(db_url))
    env = server_env(db_url)

    def drift_ms(expect: int) -> float:
        start = time.perf_counter()
        proc = subprocess.run([str(SERVER), "migrate", "drift"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        elapsed = (time.perf_counter() - start) * 1000
        if proc.returncode != expect:
            raise SystemExit(f"migrate drift exited {proc.returncode}, expected {expect}: {proc.stderr[-2000:]}")
        return elapsed

    times: dict[str, list[float]] = {"noop": [], "drift": [], "drift200": []}
    for _ in range(runs):
        times["noop"].append(timed([str(SERVER), "--migrate-only"], env))
        times["drift"].append(drift_ms(0))
    psql(db_url, "".join(f"CREATE TABLE g{i} (id bigint PRIMARY KEY, v text NOT NULL); "
                         f"CREATE INDEX g{i}_v ON g{i} (v); " for i in range(200)))
    for _ in range(runs):
        times["drift200"].append(drift_ms(11))
    drop("bench_drift")
    return {k: Stat(v) for k, v in times.items()}


# The physical floor of applying N transactional migrations is N commits. pgbench measures one
# commit's latency on a single connection, with the same URL (so the same TLS and settings) as
# the engine, doing what one migration does: its SQL and its bookkeeping row in one transaction.
# The version (and, for DDL, the table's name) must be new on every run of the script, which
# pgbench repeats for -T seconds: a random 63-bit `\set` variable makes a clash as likely as
# never (one would abort the run loudly, not skew it).
BOOKKEEPING_ROW = ("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) "
                   "VALUES (:v, 'step', TRUE, '\\x" + "ab" * 48 + "', 0)")

# Row 2: `-M prepared` with the transaction pipelined (\startpipeline), so a commit costs one
# round trip as it does in the engine (which sends migration + row as one simple query).
TINY_FLOOR = f"""\\set v random(1, 9000000000000000000)
\\set n :v % 1000
\\startpipeline
BEGIN;
INSERT INTO bench_items (n) VALUES (:n);
{BOOKKEEPING_ROW};
COMMIT;
\\endpipeline
"""

# Row 3: DDL takes no bind parameters, so a prepared statement cannot carry a new table name and
# the script runs in `-M simple`, with pgbench substituting `:v` into the text. The statements are
# one compound query (`\;`): one round trip, as the engine's batch. New names rather than
# DROP + CREATE inside the transaction: dropping would add work the migrations do not do and keep
# the catalogs small, where the engine's 200 tables grow them.
DDL_FLOOR = f"""\\set v random(1, 9000000000000000000)
BEGIN \\; CREATE TABLE f_:v (id bigint PRIMARY KEY, v text NOT NULL) \\; CREATE INDEX i_:v ON f_:v (v) \\; {BOOKKEEPING_ROW} \\; COMMIT;
"""


def pgbench_latency(db_url: str, script: str, protocol: str, seconds: int) -> float:
    """Single-client transaction latency in ms: `pgbench -n -c1 -M <protocol> -T <seconds>`."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
        path = f.name
    try:
        out = sh("pgbench", "-n", "-c1", "-M", protocol, f"-T{seconds}", "-f", path, "-d", db_url, capture=True)
    finally:
        os.unlink(path)
    m = re.search(r"latency average = ([\d.]+) ms", out)
    if m is None or "failed transactions: 0 " not in out:
        raise SystemExit(f"pgbench floor run failed:\n{out}")
    return float(m.group(1))


def bench_set(runs: int, dir: Path, prepare_sql: str | None, expect_sql: str, expect: str,
              floor_sql: str, floor_protocol: str, floor_seconds: int, sqlx_cli: bool = True) -> dict:
    """The engine, sqlx-cli and a psql session applying the set (whole processes, wall clock), and
    in the same rounds pgbench's single-client latency of one migration-shaped transaction times
    the set's size: the commit floor."""
    session = floor_script(dir)
    n = len(list(dir.glob("*.sql")))
    db = f"bench_{dir.name}"
    db_url = url(db)
    cmds = {
        "engine (server's pre-serve stage)": ([str(DRIVER), str(dir)], server_env(db_url)),
        "sqlx migrate run": (["sqlx", "migrate", "run", "--source", str(dir), "--database-url", db_url], None),
        "psql session": (["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db_url, "-f", str(session)], None),
    }
    if not sqlx_cli:
        del cmds["sqlx migrate run"]
    times: dict[str, list[float]] = {k: [] for k in cmds}
    floor: list[float] = []
    latency: list[float] = []
    for _ in range(runs):
        for name, (args, env) in cmds.items():
            recreate(db)
            if prepare_sql:
                psql(db_url, prepare_sql)
            times[name].append(timed(args, env))
            got = psql(db_url, expect_sql)
            if got != expect:
                raise SystemExit(f"{name}: {expect_sql} gave {got!r}, expected {expect!r}")
        recreate(db)
        psql(db_url, (prepare_sql + ";\n" if prepare_sql else "") + SQLX_TABLE)
        ms = pgbench_latency(db_url, floor_sql, floor_protocol, floor_seconds)
        latency.append(ms)
        floor.append(ms * n)
    drop(db)
    res = {k: Stat(v) for k, v in times.items()}
    res["commit floor"] = Stat(floor)
    res["commit latency"] = Stat(latency)
    return res


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(port: int, path: str, headers: dict | None = None, method: str = "GET", body: str | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def start_server(db_url: str, **extra: str):
    port = free_port()
    env = server_env(db_url, PORT=str(port), HOST="127.0.0.1", **extra)
    start = time.perf_counter()
    # BENCH_SERVER_LOG=path keeps the server's log (JSON lines) for a look afterwards.
    log_path = os.environ.get("BENCH_SERVER_LOG")
    stderr = open(log_path, "a") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen([str(SERVER)], env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = start + 30
    while True:
        try:
            status, _ = http_status(port, "/health/ready")
            if status == 200:
                return proc, port, (time.perf_counter() - start) * 1000
        except OSError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"server exited {proc.returncode} before it was ready")
        if time.perf_counter() > deadline:
            proc.kill()
            raise SystemExit("server not ready within 30 s")
        time.sleep(0.001)


def stop_server(proc) -> None:
    proc.send_signal(signal.SIGTERM)
    if proc.wait(timeout=30) != 0:
        raise SystemExit(f"server exited {proc.returncode} on SIGTERM")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit("no VmRSS")


def bench_start_and_rss(runs: int) -> tuple[Stat, Stat]:
    db_url = recreate("bench_start")
    sh(str(SERVER), "--migrate-only", env=server_env(db_url))
    ready, rss = [], []
    for _ in range(runs):
        proc, port, ms = start_server(db_url)
        ready.append(ms)
        # Idle: a moment after readiness with no requests in flight.
        time.sleep(0.5)
        rss.append(rss_kib(proc.pid) / 1024)
        stop_server(proc)
    drop("bench_start")
    return Stat(ready), Stat(rss)


def connection_slots() -> int:
    """Sessions PostgreSQL still accepts from an ordinary role: max_connections less the reserved
    slots and the sessions open now."""
    return int(psql(ADMIN, "SELECT current_setting('max_connections')::int "
                           "- current_setting('superuser_reserved_connections')::int "
                           "- (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"))


def create_conversations(port: int, n: int) -> list[str]:
    auth = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    out = []
    for i in range(n):
        status, body = http_status(port, "/api/v1/conversations", auth, "POST", json.dumps({"title": f"bench {i}"}))
        if status != 201:
            raise SystemExit(f"creating a conversation gave {status}: {body!r}")
        out.append(json.loads(body)["id"])
    return out


def bench_http(runs: int, seconds: int, connections: int) -> dict:
    """wrk against `server` (pool sized to wrk's connections) and `pgbench -S` with as many
    clients, alternating. The server runs only during its wrk run, so its pool and pgbench never
    hold their sessions at once (64 + 64 would not fit in a default max_connections of 100)."""
    threads = str(min(connections, os.cpu_count() or 1))
    slots = connection_slots()
    if slots < connections + 2:
        raise SystemExit(f"{connections} connections wanted, PostgreSQL has {slots} free: raise max_connections")
    db_url = recreate("bench_http")
    sh(str(SERVER), "--migrate-only", env=server_env(db_url))
    pg_url = recreate("bench_pgbench")
    sh("pgbench", "-i", "-q", "-s", "1", "-d", pg_url)
    pool = str(connections)
    cid = None
    pgb_args = ["pgbench", "-S", "-n", f"-c{connections}", f"-j{threads}", f"-T{seconds}", "-d", pg_url]
    wrk, pgb = [], []
    try:
        for _ in range(runs):
            out = sh(*pgb_args, capture=True)
            pgb.append(float(re.search(r"tps = ([\d.]+) \(without initial", out).group(1)))
            proc, port, _ = start_server(db_url, APP_DATABASE__MAX_CONNECTIONS=pool)
            try:
                if cid is None:
                    cid = create_conversations(port, 1)[0]
                out = sh("wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-H",
                         f"Authorization: Bearer {API_KEY}", f"http://127.0.0.1:{port}/api/v1/conversations/{cid}",
                         capture=True)
            finally:
                stop_server(proc)
            if "Non-2xx" in out or "Socket errors" in out:
                raise SystemExit(f"wrk saw errors:\n{out}")
            wrk.append(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)))
    finally:
        drop("bench_http")
        drop("bench_pgbench")
    return {"wrk GET /api/v1/conversations/{id}": Stat(wrk), "pgbench -S": Stat(pgb)}


def bench_metrics(runs: int, seconds: int, connections: int) -> dict:
    """wrk against a server recording metrics and one with `metrics.enabled = false`, same
    database, alternating which goes first in each round."""
    threads = str(min(connections, os.cpu_count() or 1))
    db_url = recreate("bench_metrics")
    sh(str(SERVER), "--migrate-only", env=server_env(db_url))
    pool = str(connections)
    on, on_port, _ = start_server(db_url, APP_DATABASE__MAX_CONNECTIONS=pool)
    off, off_port, _ = start_server(db_url, APP_DATABASE__MAX_CONNECTIONS=pool, APP_METRICS__ENABLED="false")
    cid = create_conversations(on_port, 1)[0]

    def wrk(port: int) -> float:
        out = sh("wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-H", f"Authorization: Bearer {API_KEY}",
                 f"http://127.0.0.1:{port}/api/v1/conversations/{cid}", capture=True)
        if "Non-2xx" in out or "Socket errors" in out:
            raise SystemExit(f"wrk saw errors:\n{out}")
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    with_metrics, without = [], []
    try:
        for i in range(runs):
            if i % 2 == 0:
                with_metrics.append(wrk(on_port))
                without.append(wrk(off_port))
            else:
                without.append(wrk(off_port))
                with_metrics.append(wrk(on_port))
        # The counters saw the traffic (a scrape from loopback, as Prometheus would).
        status, text = http_status(on_port, "/metrics")
        if status != 200 or b'route="/api/v1/conversations/{id}"' not in text:
            raise SystemExit(f"/metrics gave {status} without the route's counter")
        status, _ = http_status(off_port, "/metrics")
        if status != 404:
            raise SystemExit(f"/metrics with metrics off gave {status}, not 404")
    finally:
        stop_server(on)
        stop_server(off)
        drop("bench_metrics")
    return {"metrics on": Stat(with_metrics), "metrics off": Stat(without)}


# --- soak ---------------------------------------------------------------------------------

SOAK_LUA = r"""
-- Mixed traffic over a fixed set of conversations; counts answers by status per thread.
local conversations = {%(conversations)s}
local artifacts = {%(artifacts)s}
local auth = "Bearer %(key)s"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  counts = {}
  math.randomseed(os.time() + math.random(1, 100000))
end

local function pick(list) return list[math.random(#list)] end

function request()
  local h = { ["Authorization"] = auth, ["Content-Type"] = "application/json" }
  local r = math.random(100)
  local c = pick(conversations)
  if r <= 45 then
    return wrk.format("GET", "/api/v1/conversations/" .. c, h)
  elseif r <= 60 then
    return wrk.format("GET", "/api/v1/conversations/" .. c .. "/messages?limit=20", h)
  elseif r <= 65 then
    return wrk.format("GET", "/api/v1/conversations?limit=20", h)
  elseif r <= 85 then
    return wrk.format("POST", "/api/v1/conversations/" .. c .. "/messages", h,
      '{"role":"user","content":"soak message"}')
  elseif r <= 90 then
    return wrk.format("POST", "/api/v1/conversations", h, '{"title":"soak"}')
  else
    h["If-Match"] = "*"
    return wrk.format("PATCH", "/api/v1/artifacts/" .. pick(artifacts), h,
      '{"spec":{"soak":true}}')
  end
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("counts")) do
      total[status] = (total[status] or 0) + n
    end
  end
  for status, n in pairs(total) do
    io.write(string.format("SOAK status %%d %%d\n", status, n))
  end
  local e = summary.errors
  io.write(string.format("SOAK errors connect=%%d read=%%d write=%%d timeout=%%d\n",
    e.connect, e.read, e.write, e.timeout))
  io.write(string.format("SOAK latency_us p50=%%d p99=%%d max=%%d\n",
    latency:percentile(50), latency:percentile(99), latency.max))
  io.write(string.format("SOAK total requests=%%d seconds=%%.1f\n",
    summary.requests, summary.duration / 1e6))
end
"""


# --- 10. event streams ---------------------------------------------------------------------

EVENTS_PSYCOPG = "psycopg[binary]>=3.2,<3.3"


def psycopg_module():
    """psycopg 3 (libpq, as psql): the floor's two sessions. Installed from PyPI when missing."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        log(f"installing {EVENTS_PSYCOPG} (PyPI) for the LISTEN/NOTIFY floor")
        sh(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", EVENTS_PSYCOPG)
    import psycopg
    return psycopg


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def notify_floor(db_url: str, n: int) -> list[float]:
    """`SELECT pg_notify(…)` in one session (autocommit: it commits) until the other, LISTENing,
    has it: the bare round trip through PostgreSQL's notification queue, in ms."""
    psycopg = psycopg_module()
    with psycopg.connect(db_url, autocommit=True) as listener, psycopg.connect(db_url, autocommit=True) as notifier:
        listener.execute("LISTEN bench_floor")
        got = listener.notifies()
        out = []
        for i in range(n):
            start = time.perf_counter()
            notifier.execute("SELECT pg_notify('bench_floor', %s)", (str(i),))
            note = next(got)
            out.append((time.perf_counter() - start) * 1000)
            if note.payload != str(i):
                raise SystemExit(f"floor: notification {note.payload!r}, wanted {i}")
        got.close()
        return out


class Streams:
    """`count` SSE streams held open on `port` over `conversations`, drained by one thread that
    counts the events received and stamps when each `id: N` of the first stream arrived."""

    def __init__(self, port: int, conversations: list[str], count: int, newest: dict[str, int] | None = None):
        import selectors
        import threading
        self.selector = selectors.DefaultSelector()
        self.socks = []
        self.events = 0
        self.arrived: dict[int, float] = {}
        self.tails: dict[int, bytes] = {}
        self.stop = False
        for i in range(count):
            conv = conversations[i % len(conversations)]
            sock = socket.create_connection(("127.0.0.1", port))
            # Resumed at the newest event: only what is written from now on is counted.
            resume = f"Last-Event-ID: {newest[conv]}\r\n" if newest and newest.get(conv) else ""
            sock.sendall(f"GET /api/v1/conversations/{conv}/events HTTP/1.1\r\nHost: bench\r\n"
                         f"Authorization: Bearer {API_KEY}\r\n{resume}\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    raise SystemExit(f"stream {i} closed before its head")
                head += chunk
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"stream {i}: {head[:200]!r}")
            sock.setblocking(False)
            self.socks.append(sock)
            self.tails[sock.fileno()] = head.split(b"\r\n\r\n", 1)[1]
            self.selector.register(sock, selectors.EVENT_READ, i)
        self.thread = threading.Thread(target=self.drain, daemon=True)
        self.thread.start()

    def drain(self) -> None:
        while not self.stop:
            for key, _ in self.selector.select(timeout=0.1):
                sock = key.fileobj
                try:
                    chunk = sock.recv(65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    self.selector.unregister(sock)
                    continue
                now = time.perf_counter()
                data = self.tails[sock.fileno()] + chunk
                frames = data.split(b"\n\n")
                self.tails[sock.fileno()] = frames.pop()
                for frame in frames:
                    if b"\nevent: message.created" in b"\n" + frame:
                        self.events += 1
                        if key.data == 0:
                            self.arrived[int(frame.split(b"id: ", 1)[1].split(b"\n", 1)[0])] = now

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        for sock in self.socks:
            sock.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post_message(port: int, conv: str, content: str, conn=None):
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("POST", f"/api/v1/conversations/{conv}/messages",
                 body=json.dumps({"role": "assistant", "content": content}),
                 headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 201:
        raise SystemExit(f"posting a message gave {resp.status}: {body!r}")
    return conn


def raise_fd_limit(want: int) -> None:
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def bench_events(runs: int, seconds: int, connections: int, samples: int = 200, streams: int = 1000) -> dict:
    """10a: POST through B → the event on a stream held on A (two instances, one database), beside
    the bare LISTEN/NOTIFY round trip, alternating in each round. 10b: `streams` streams open on A
    over 100 conversations: A's RSS and CPU idle and while B writes 100 messages/s. 10c: wrk GET on
    A with the streams open and without, alternating."""
    raise_fd_limit(4 * streams)
    threads = str(min(connections, os.cpu_count() or 1))
    db_url = recreate("bench_events")
    sh(str(SERVER), "--migrate-only", env=server_env(db_url))
    extra = {"APP_EVENTS__MAX_STREAMS": str(streams + 100), "APP_SERVER__MAX_CONNECTIONS": str(streams + 200)}
    a, a_port, _ = start_server(db_url, **extra)
    b, b_port, _ = start_server(db_url, **extra)
    res = {k: [] for k in ("post p50", "post p99", "p50", "p99", "floor p50", "floor p99", "rss idle", "rss base", "KiB per stream", "cpu idle",
                           "cpu 100/s", "rss 100/s", "get with", "get without")}
    try:
        convs = create_conversations(b_port, 100)

        def wrk(port: int, duration: int) -> float:
            out = sh("wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "-H",
                     f"Authorization: Bearer {API_KEY}", f"http://127.0.0.1:{port}/api/v1/conversations/{convs[0]}",
                     capture=True)
            if "Non-2xx" in out or "Socket errors" in out:
                raise SystemExit(f"wrk saw errors:\n{out}")
            return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

        for r in range(runs):
            # 10a: one stream on A, messages through B one at a time.
            floor = notify_floor(db_url, samples) if r % 2 == 0 else None
            one = Streams(a_port, [convs[0]], 1)
            conn = None
            sent: dict[int, float] = {}
            answered: list[float] = []
            base = int(psql(db_url, "SELECT coalesce(max(seq), 0) FROM conversation_events "
                                    f"WHERE conversation_id = '{convs[0]}'"))
            for i in range(1, samples + 1):
                sent[base + i] = time.perf_counter()
                conn = post_message(b_port, convs[0], f"m{i}", conn)
                answered.append((time.perf_counter() - sent[base + i]) * 1000)
                deadline = time.perf_counter() + 5
                while base + i not in one.arrived:
                    if time.perf_counter() > deadline:
                        raise SystemExit(f"event {base + i} never arrived on A")
                    time.sleep(0.0002)
            one.close()
            if floor is None:
                floor = notify_floor(db_url, samples)
            lat = [(one.arrived[k] - t) * 1000 for k, t in sent.items()]
            res["post p50"].append(percentile(answered, 0.5))
            res["post p99"].append(percentile(answered, 0.99))
            res["p50"].append(percentile(lat, 0.5))
            res["p99"].append(percentile(lat, 0.99))
            res["floor p50"].append(percentile(floor, 0.5))
            res["floor p99"].append(percentile(floor, 0.99))

            # 10b and 10c on a fresh instance C per round, so that its RSS starts from the same
            # place: a short wrk run to warm it, its RSS, then the GET without streams and with
            # them open, alternating which goes first.
            c, c_port, _ = start_server(db_url, APP_DATABASE__MAX_CONNECTIONS=str(connections), **extra)
            try:
                wrk(c_port, 1)
                res["rss base"].append(rss_kib(c.pid) / 1024)
                if r % 2 == 0:
                    res["get without"].append(wrk(c_port, seconds))
                newest = dict(line.split("|") for line in psql(
                    db_url, "SELECT conversation_id, last_seq FROM conversation_event_seqs").splitlines() if line)
                many = Streams(c_port, convs, streams, {k: int(v) for k, v in newest.items()})
                time.sleep(1)
                c0, t0 = cpu_seconds(c.pid), time.perf_counter()
                time.sleep(seconds)
                res["cpu idle"].append((cpu_seconds(c.pid) - c0) / (time.perf_counter() - t0) * 100)
                res["rss idle"].append(rss_kib(c.pid) / 1024)
                res["KiB per stream"].append((res["rss idle"][-1] - res["rss base"][-1]) * 1024 / streams)
                res["get with"].append(wrk(c_port, seconds))
                before = many.events
                c0, t0 = cpu_seconds(c.pid), time.perf_counter()
                conn, n = None, 0
                while (elapsed := time.perf_counter() - t0) < seconds:
                    if n < elapsed * 100:
                        conn = post_message(b_port, convs[n % len(convs)], f"load {n}", conn)
                        n += 1
                    else:
                        time.sleep(0.001)
                res["cpu 100/s"].append((cpu_seconds(c.pid) - c0) / (time.perf_counter() - t0) * 100)
                res["rss 100/s"].append(rss_kib(c.pid) / 1024)
                want = n * streams // len(convs)
                deadline = time.perf_counter() + 10
                while many.events - before < want and time.perf_counter() < deadline:
                    time.sleep(0.01)
                if many.events - before != want:
                    raise SystemExit(f"10b: {many.events - before} events received of {want}")
                many.close()
                if r % 2 == 1:
                    res["get without"].append(wrk(c_port, seconds))
            finally:
                stop_server(c)
    finally:
        stop_server(a)
        stop_server(b)
        drop("bench_events")
    return {k: Stat(v) for k, v in res.items()}


def restart_postgres() -> float:
    """Restarts every local cluster (fast mode: sessions are terminated); wall time in s."""
    start = time.perf_counter()
    for version in sorted(os.listdir("/etc/postgresql")):
        sh("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart")
    return time.perf_counter() - start


def bench_soak(seconds: int, connections: int, restart: bool) -> dict:
    host = re.match(r"postgres(?:ql)?://[^@/]*@?([^:/?]+)", ADMIN)
    if restart and (host is None or host.group(1) not in ("127.0.0.1", "localhost", "::1")):
        raise SystemExit("the soak restarts PostgreSQL: only against a local cluster (BENCH_ADMIN_URL)")
    db_url = recreate("bench_soak")
    sh(str(SERVER), "--migrate-only", env=server_env(db_url))
    proc, port, _ = start_server(db_url)
    auth = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    conversations, artifacts = [], []
    for i in range(50):
        status, body = http_status(port, "/api/v1/conversations", auth, "POST", json.dumps({"title": f"soak {i}"}))
        cid = json.loads(body)["id"]
        conversations.append(cid)
        status, body = http_status(port, f"/api/v1/conversations/{cid}/artifacts", auth, "POST",
                                   json.dumps({"kind": "chart", "title": "soak", "spec": {"n": i}}))
        artifacts.append(json.loads(body)["id"])
    rss_before = rss_kib(proc.pid) / 1024
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(SOAK_LUA % {
            "conversations": ",".join(f'"{c}"' for c in conversations),
            "artifacts": ",".join(f'"{a}"' for a in artifacts),
            "key": API_KEY,
        })
        script = f.name
    threads = str(min(4, os.cpu_count() or 1))
    wrk = subprocess.Popen(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", script,
         f"http://127.0.0.1:{port}/"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    restart_s = None
    try:
        if restart:
            time.sleep(seconds / 2)
            log(f"soak: restarting PostgreSQL at {seconds // 2}s")
            restart_s = restart_postgres()
        out, err = wrk.communicate(timeout=seconds + 60)
        if wrk.returncode != 0:
            raise SystemExit(f"wrk exited {wrk.returncode}: {err}")
        rss_after = rss_kib(proc.pid) / 1024
        # The same process serves again without a restart of its own.
        ready, _ = http_status(port, "/health/ready")
    finally:
        os.unlink(script)
        stop_server(proc)
        drop("bench_soak")
    statuses = {int(m.group(1)): int(m.group(2)) for m in re.finditer(r"SOAK status (\d+) (\d+)", out)}
    errors = dict(re.findall(r"(\w+)=(\d+)", re.search(r"SOAK errors (.*)", out).group(1)))
    lat = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", re.search(r"SOAK latency_us (.*)", out).group(1))}
    total = re.search(r"SOAK total requests=(\d+) seconds=([\d.]+)", out)
    return {
        "statuses": dict(sorted(statuses.items())),
        "errors": {k: int(v) for k, v in errors.items()},
        "p50_ms": lat["p50"] / 1000, "p99_ms": lat["p99"] / 1000, "max_ms": lat["max"] / 1000,
        "requests": int(total.group(1)), "seconds": float(total.group(2)),
        "rss_before": rss_before, "rss_after": rss_after, "restart_s": restart_s, "ready_after": ready,
    }


def soak_section(res: dict, args, started: datetime) -> str:
    statuses = ", ".join(f"{code}: {n}" for code, n in res["statuses"].items())
    errors = ", ".join(f"{k} {v}" for k, v in res["errors"].items())
    restart = (f"`pg_ctlcluster … main restart` half-way (took {res['restart_s']:.1f} s)"
               if res["restart_s"] is not None else "no PostgreSQL restart (--soak-no-restart)")
    return "\n".join([
        "## Soak",
        "",
        f"`python3 bench/run.py --only soak --soak-seconds {args.soak_seconds}` on {started:%Y-%m-%d %H:%M} UTC, "
        "same machine as above: `server` (release, production mode: JSON logs, API key, default pool of "
        f"10) under wrk at {args.soak_connections} connections for {res['seconds']:.0f} s of mixed traffic over 50 "
        "conversations (45 % GET conversation, 15 % GET messages page, 5 % GET conversations page, 20 % POST "
        "message, 5 % POST conversation, 10 % PATCH artifact with `If-Match: *`), with " + restart + ".",
        "",
        "| figure | value |",
        "|---|---|",
        f"| requests | {res['requests']} ({res['requests'] / res['seconds']:.0f}/s) |",
        f"| answers by status | {statuses} |",
        f"| 500s | {res['statuses'].get(500, 0)} |",
        f"| wrk socket errors | {errors} |",
        f"| latency p50 / p99 / max | {res['p50_ms']:.1f} ms / {res['p99_ms']:.1f} ms / {res['max_ms']:.0f} ms |",
        f"| RSS before / after | {res['rss_before']:.1f} MB / {res['rss_after']:.1f} MB |",
        f"| `/health/ready` after, same process | {res['ready_after']} |",
        "",
        "The 503s (problem+json, `Retry-After: 1`) are the requests that met the restart: sessions "
        "terminated under them (57P01) or no connection while PostgreSQL was down. The server then served "
        "again without a restart of its own.",
        "",
    ])


def write_section(path: Path, title: str, text: str) -> None:
    """Replaces (or appends) the `## title` section of path, leaving the rest as it is."""
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(doc):
        doc = pattern.sub(lambda _: text, doc)
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    path.write_text(doc)


# --- report ---------------------------------------------------------------------------------


def version(args: list[str]) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        return "not found"


def machine() -> list[str]:
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    mem = next(l.split()[1] for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
    return [
        f"CPU: {cpu}, {os.cpu_count()} cores; memory {int(mem) // 1024 // 1024} GiB; {platform.system()} {platform.release()}",
        f"server: {version([str(SERVER), '--version'])}",
        f"rustc: {version(['rustc', '--version'])}",
        f"PostgreSQL server: {psql(ADMIN, 'show server_version')} (ssl={psql(ADMIN, 'show ssl')}, "
        f"fsync={psql(ADMIN, 'show fsync')}, synchronous_commit={psql(ADMIN, 'show synchronous_commit')})",
        f"sqlx-cli: {version(['sqlx', '--version'])}",
        f"psql: {version(['psql', '--version'])}; pgbench: {version(['pgbench', '--version'])}",
        f"wrk: {version(['wrk', '-v'])}",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7, help="runs per figure (at least 5)")
    ap.add_argument("--http-seconds", type=int, default=5, help="duration of each wrk / pgbench run")
    ap.add_argument("--connections", type=int, default=8, help="connections for wrk and pgbench")
    ap.add_argument("--floor-seconds", type=int, default=3,
                    help="duration of each pgbench commit-floor run (rows 2 and 3)")
    ap.add_argument("--no-sqlx-cli", action="store_true",
                    help="leave sqlx-cli out of rows 1-3 (a partial run on a machine without it; "
                         "the full run needs it)")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--out", default=str(ROOT / "docs/benchmarks.md"))
    ap.add_argument("--lint-baseline", default=None,
                    help="a server binary built before (e.g. the sqlparser lint) to time beside benchmark 9")
    ap.add_argument("--only", default="1,2,3,4,5,6,7,8,9,10",
                    help="comma-separated benchmark numbers, or `soak` (a partial run does not write --out; "
                         "the soak writes its own section)")
    ap.add_argument("--soak-seconds", type=int, default=180, help="duration of the soak")
    ap.add_argument("--soak-connections", type=int, default=64, help="wrk connections in the soak")
    ap.add_argument("--soak-no-restart", action="store_true", help="soak without restarting PostgreSQL")
    args = ap.parse_args()
    if args.runs < 5:
        ap.error("--runs must be at least 5")

    if args.no_sqlx_cli and ({1} & {int(n) for n in args.only.split(",") if n.isdigit()}):
        ap.error("--no-sqlx-cli: row 1 compares with sqlx-cli; leave it out of --only")
    ensure_tools(not args.no_sqlx_cli)
    started = datetime.now(timezone.utc)
    if args.only == "soak":
        if not 10 <= args.soak_seconds <= 1800:
            ap.error("--soak-seconds must be between 10 and 1800")
        log(f"soak: {args.soak_connections} connections, {args.soak_seconds}s")
        res = bench_soak(args.soak_seconds, args.soak_connections, not args.soak_no_restart)
        section = soak_section(res, args, started)
        print(section)
        write_section(Path(args.out), "Soak", section)
        log(f"wrote the Soak section of {args.out}")
        fives = res["statuses"].get(500, 0)
        if fives:
            log(f"{fives} answers were 500")
            return 1
        return 0

    only = {int(n) for n in args.only.split(",")}
    rows = []  # (benchmark, ours, peers text, ratio text, target text, ok)

    if 1 in only:
        log("1. no-op start-up check")
        noop = bench_noop(args.runs)
        ours, sqlx, floor = noop["server --migrate-only"], noop["sqlx migrate run"], noop["psql select max(version)"]
        r = ours.median / floor.median
        rows.append(("1. no-op check, up-to-date schema", f"server --migrate-only {ours.fmt('ms')}",
                     f"sqlx-cli {sqlx.fmt('ms')}; psql {floor.fmt('ms')}",
                     f"{r:.2f}× psql; {ours.median / sqlx.median:.2f}× sqlx-cli", "≤ 1.5× psql", r <= 1.5))

    with tempfile.TemporaryDirectory(prefix="bench-sets-") as tmp:
        tiny = Path(tmp) / "tiny500"
        write_set(tiny, 500, lambda i: f"INSERT INTO bench_items (n) VALUES ({i});\n")
        ddl = Path(tmp) / "ddl200"
        write_set(ddl, 200, lambda i: f"CREATE TABLE t{i} (id bigint PRIMARY KEY, v text NOT NULL);\n"
                                      f"CREATE INDEX t{i}_v ON t{i} (v);\n")
        if 9 in only:
            log("9. server migrate lint, 200 generated files")
            lintset = Path(tmp) / "lint200"
            write_set(lintset, 200, lint_body)
            res = bench_lint(args.runs, lintset, args.lint_baseline)
            ours = res["server migrate lint"]
            base = res.get("baseline")
            rows.append(("9. `server migrate lint`, 200 files", ours.fmt("ms"),
                         f"before (sqlparser) {base.fmt('ms')}" if base else "",
                         f"{ours.median / base.median:.2f}× before" if base else "",
                         "< 1000 ms", ours.median < 1000))
        for number, label, dir, prep, check, want, floor_sql, protocol in (
            (2, "2. 500 tiny migrations", tiny, "CREATE TABLE bench_items (n int)",
             "SELECT (SELECT count(*) FROM bench_items) || '/' || (SELECT count(*) FROM _sqlx_migrations WHERE success)",
             "500/500", TINY_FLOOR, "prepared"),
            (3, "3. 200 DDL migrations", ddl, None,
             "SELECT (SELECT count(*) FROM pg_indexes WHERE indexname LIKE 't%_v') || '/' || "
             "(SELECT count(*) FROM _sqlx_migrations WHERE success)", "200/200", DDL_FLOOR, "simple"),
        ):
            if number not in only:
                continue
            log(label)
            res = bench_set(args.runs, dir, prep, check, want, floor_sql, protocol, args.floor_seconds,
                            not args.no_sqlx_cli)
            ours, sqlx, session = (res["engine (server's pre-serve stage)"], res.get("sqlx migrate run"),
                                   res["psql session"])
            floor, lat = res["commit floor"], res["commit latency"]
            n = 500 if number == 2 else 200
            r = ours.median / floor.median
            rows.append((label, f"engine {ours.fmt('ms', 0)}",
                         f"commit floor {n} × {lat.fmt('ms', 3)} = {floor.median:.0f} ms (pgbench -c1 -M {protocol}); "
                         + (f"sqlx-cli {sqlx.fmt('ms', 0)}; " if sqlx else "sqlx-cli not run; ")
                         + f"psql session {session.fmt('ms', 0)}",
                         f"{r:.2f}× floor; {ours.median / session.median:.2f}× psql"
                         + (f"; {ours.median / sqlx.median:.2f}× sqlx-cli" if sqlx else ""),
                         "≤ 1.2× floor, < sqlx-cli", r <= 1.2 and (sqlx is None or ours.median < sqlx.median)))

    if only & {4, 6}:
        log("4. start -> ready, 6. idle RSS")
        ready, rss = bench_start_and_rss(args.runs)
        rows.append(("4. process start → /health/ready 200", ready.fmt("ms"), "", "", "≤ 100 ms",
                     ready.median <= 100))

    if 5 in only:
        # 5b: the same GET at 64 connections, beside `pgbench -S -c64`.
        for label, connections in (("5", args.connections), ("5b", 64)):
            log(f"{label}. wrk vs pgbench -S, {connections} connections, {args.http_seconds}s each")
            res = bench_http(args.runs, args.http_seconds, connections)
            ours, pgb = res.values()
            r = ours.median / pgb.median
            rows.append((f"{label}. GET /api/v1/conversations/{{id}}, {connections} connections",
                         f"wrk {ours.fmt('req/s', 0)}", f"pgbench -S {pgb.fmt('TPS', 0)}", f"{r:.2f}× pgbench -S",
                         "≥ 0.8× pgbench -S", r >= 0.8))

    if 7 in only:
        log("7. migrate drift beside the no-op check")
        res = bench_drift(args.runs)
        noop, drift, drift200 = res["noop"], res["drift"], res["drift200"]
        r, r200 = drift.median / noop.median, drift200.median / noop.median
        rows.append(("7. `migrate drift`, this project's schema", f"drift {drift.fmt('ms')}",
                     f"no-op `--migrate-only` {noop.fmt('ms')}", f"{r:.2f}× no-op check",
                     "≤ 3× no-op check", r <= 3))
        rows.append(("7. `migrate drift`, + 200 tables (600 objects reported)", f"drift {drift200.fmt('ms')}",
                     f"no-op `--migrate-only` {noop.fmt('ms')}", f"{r200:.2f}× no-op check",
                     "≤ 5× no-op check", r200 <= 5))

    if 8 in only:
        log(f"8. metrics on vs off, {args.connections} connections, {args.http_seconds}s each")
        res = bench_metrics(args.runs, args.http_seconds, args.connections)
        on, off = res["metrics on"], res["metrics off"]
        r = on.median / off.median
        rows.append((f"8. GET /api/v1/conversations/{{id}}, metrics on vs off, {args.connections} connections",
                     f"on {on.fmt('req/s', 0)}", f"off {off.fmt('req/s', 0)}", f"{r:.3f}× off",
                     "≥ 0.97× off", r >= 0.97))

    if 10 in only:
        log(f"10. event streams: POST → event across instances, 1,000 streams, GET beside them")
        ev = bench_events(args.runs, args.http_seconds, args.connections)
        r50, r99 = ev["p50"].median / ev["floor p50"].median, ev["p99"].median / ev["floor p99"].median
        post50, post99 = ev["post p50"].median, ev["post p99"].median
        f50, f99 = ev["floor p50"].median, ev["floor p99"].median
        rows.append(("10a. POST on B → event on a stream on A, p50", ev["p50"].fmt("ms", 2),
                     f"the POST's own answer {ev['post p50'].fmt('ms', 2)}; "
                     f"LISTEN/NOTIFY round trip {ev['floor p50'].fmt('ms', 2)}",
                     f"POST + {(ev['p50'].median - post50) / f50:.1f}× floor",
                     "≤ POST + 3× floor", ev["p50"].median <= post50 + 3 * f50))
        rows.append(("10a. the same, p99", ev["p99"].fmt("ms", 2),
                     f"the POST's own answer {ev['post p99'].fmt('ms', 2)}; "
                     f"LISTEN/NOTIFY round trip {ev['floor p99'].fmt('ms', 2)}",
                     f"POST + {(ev['p99'].median - post99) / f99:.1f}× floor",
                     "≤ POST + 3× floor", ev["p99"].median <= post99 + 3 * f99))
        per = ev["KiB per stream"].median
        rows.append(("10b. 1,000 open streams, idle: RSS, CPU", f"{ev['rss idle'].fmt('MB')}; {ev['cpu idle'].fmt('% CPU', 2)}",
                     f"the same instance before, warmed, no streams {ev['rss base'].fmt('MB')}", f"{per:.1f} KiB/stream",
                     "≤ 64 KiB/stream, ≤ 1% CPU", per <= 64 and ev["cpu idle"].median <= 1))
        rows.append(("10b. 1,000 open streams, 100 events/s (10 streams each): RSS, CPU",
                     f"{ev['rss 100/s'].fmt('MB')}; {ev['cpu 100/s'].fmt('% CPU', 1)}", "", "",
                     "≤ 50% of a core", ev["cpu 100/s"].median <= 50))
        rg = ev["get with"].median / ev["get without"].median
        rows.append((f"10c. GET /api/v1/conversations/{{id}}, {args.connections} connections, with 1,000 idle streams",
                     f"wrk {ev['get with'].fmt('req/s', 0)}", f"without streams {ev['get without'].fmt('req/s', 0)}",
                     f"{rg:.3f}× without", "≥ 0.95× without", rg >= 0.95))

    if only & {4, 6}:
        size = SERVER.stat().st_size / 1024 / 1024
        rows.append(("6. binary size (stripped)", f"{size:.1f} MB", "", "", "≤ 25 MB", size <= 25))
        rows.append(("6. idle RSS after ready", rss.fmt("MB"), "", "", "≤ 30 MB", rss.median <= 30))

    header = "| benchmark | agent-backend: median (min–max) | peers: median (min–max) | ratio | target | met |"
    lines = [header, "|---|---|---|---|---|---|"]
    for name, o, p, ratio, target, ok in rows:
        lines.append(f"| {name} | {o} | {p} | {ratio} | {target} | {'yes' if ok else '**no**'} |")
    table = "\n".join(lines)
    print(table)

    doc = [
        "# Benchmarks",
        "",
        f"Generated by `python3 bench/run.py --runs {args.runs} --http-seconds {args.http_seconds} "
        f"--connections {args.connections}` on {started:%Y-%m-%d %H:%M} UTC. Each figure is the median "
        f"(min–max) of {args.runs} runs; peers run alternately in the same rounds, so the ratios are what count.",
        "",
        "## Machine and versions",
        "",
        *[f"- {m}" for m in machine()],
        "",
        "## Results",
        "",
        table,
        "",
        "## What is measured",
        "",
        "- Whole processes, wall clock, from spawn to exit (1–3) or to the first 200 from `/health/ready` (4). "
        "All connect to 127.0.0.1 with the same URL and libpq/sqlx defaults (`sslmode=prefer`).",
        "- 2 and 3: every run starts from a new empty database. The engine is `examples/bench_migrate`, "
        "which runs `app::pre_serve_with`, the code of `server --migrate-only`, over the generated "
        "directory: connect, status, advisory lock, apply (each migration with its bookkeeping row), verify. "
        "The commit floor is N × the latency of one migration-shaped transaction measured in the same round by "
        f"`pgbench -n -c1 -T{args.floor_seconds}` on a fresh database with the same URL: row 2 "
        "`BEGIN; INSERT INTO bench_items …; INSERT INTO _sqlx_migrations …; COMMIT;` in `-M prepared`, pipelined "
        "(one round trip, as the engine's one-query batch); row 3 `CREATE TABLE` + `CREATE INDEX` + the row as one "
        "compound simple query (DDL takes no parameters; a random `\\set` suffix makes each name new). It leaves "
        "out the process, the connection and the checks, which the engine pays. The psql session, a peer, sends "
        "`BEGIN; <migration>; INSERT INTO _sqlx_migrations …; COMMIT;` per migration, a round trip per statement, "
        "without lock or checks. Each run's result is checked (rows, indexes, bookkeeping).",
        "- 5 and 5b: `server` in production mode (JSON access log, API key auth, the default "
        "`database.idle_check_after`, so pooled connections in steady use are not pinged before each request) "
        "with a pool of as many connections as wrk opens (8, then 64); `pgbench -S` (scale 1) with the same "
        "number of clients. The "
        "server runs only during its wrk runs, so its pool and pgbench never hold sessions at once. Both on this "
        "machine's cores, with PostgreSQL.",
        "- 6: `target/release/server` (release profile strips symbols); VmRSS 0.5 s after readiness.",
        "- 7: whole processes on a migrated database: `server migrate drift` (connect, read the bookkeeping "
        "rows, one catalog query, diff) beside `server --migrate-only` with nothing to do (connect, one query).",
        "- 8: two `server` processes in production mode on one database, one with `APP_METRICS__ENABLED=false`; "
        "wrk alternates between them within each round (which goes first alternates too); afterwards a scrape "
        "checks the counters saw the traffic and the other answers 404.",
        "- 10: two `server` processes in production mode on one database (A with a pool of --connections). "
        "10a: one stream on A; a message POSTed through B (keep-alive connection) at a time, timed from the "
        "POST's start to the moment A's stream delivered that event's frame; the floor is `SELECT pg_notify(…)` "
        "in an autocommit session until a LISTENing session has it (psycopg 3 over libpq, like psql), "
        "200 samples each per round; p50/p99 per round, median over rounds. 10b: 1,000 streams "
        "(raw sockets drained by one thread) over 100 conversations, so each event goes to 10 streams, on a "
        "third instance C started fresh each round and warmed by a 1 s wrk run; RSS (VmRSS) and CPU "
        "(utime+stime over --http-seconds) of C before the streams, with them idle, and while B writes 100 "
        "messages/s; every event must arrive at every stream. 10c: wrk on C's `GET /api/v1/conversations/{id}` "
        "with the 1,000 idle streams open and with none, alternating which goes first.",
        "- 9: `server migrate lint DIR` as a process (configuration, reading, validating and linting the "
        "200 files, the report) on a generated set: each file a table with its plpgsql function, trigger, "
        "index, view and dollar-quoted comment, plus type, column and constraint changes to the previous "
        "file's table; every 10th a `-- no-transaction` concurrent index. `--lint-baseline` times an older "
        "binary in the same rounds.",
        "",
    ]
    if only == set(range(1, 11)):
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        # Sections from other runs (the profile, the lint's comparison with the binary before
        # it, the soak, which restarts PostgreSQL): kept as they are.
        old = out.read_text() if out.exists() else ""
        kept = [m.group(0) for title in KEPT_SECTIONS
                if (m := re.search(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", old, re.S | re.M))]
        # One blank line between sections, however many the old file had.
        out.write_text("\n".join(doc) + "".join("\n" + k.rstrip("\n") + "\n" for k in kept))
        log(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    missed = [r[0] for r in rows if not r[5]]
    if missed:
        log("targets missed: " + "; ".join(missed))
    return 1 if (missed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
