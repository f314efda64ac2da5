#!/usr/bin/env python3
"""Where the time goes: instruction counts under callgrind, per migration and per request.

    python3 bench/profile.py [--server PATH] [--driver PATH] [--annotate DIR]

callgrind counts the instructions a process executes (all its threads), not seconds, so the
figures repeat for the same binary and inputs whatever else the machine is doing; `perf stat`
has no hardware counters on this VM. Each figure is a difference between two runs that differ in
one thing, so process start, configuration and connecting cancel out:

- per migration: `examples/bench_migrate` applying 500 tiny migrations (one INSERT each) onto an
  empty database, minus the same run with nothing pending, / 500;
- per request: `server` with a pool of 1, one keep-alive client sending
  `GET /api/v1/conversations/{id}` with the API key, 2,300 requests minus 300, / 2,000.

Each is run as shipped (production: JSON logs at info, metrics on, API key) and with one thing
changed (logs at warn, text logs, metrics off, `/health/live`), which prices that thing.
`--annotate DIR` keeps the callgrind files there for `callgrind_annotate --inclusive=yes`
(build with `CARGO_PROFILE_RELEASE_STRIP=false` for function names).

Uses the release binaries (built as bench/run.py builds them when missing), PostgreSQL at
BENCH_ADMIN_URL and valgrind.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (bench/run.py: database helpers, the generated sets, the server's env)

REQUESTS = (300, 2300)


def instructions(out: Path) -> int:
    """The total of a callgrind output file (`summary:` or `totals:` line)."""
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"{out}: no summary line")


def callgrind(out: Path) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--quiet", f"--callgrind-out-file={out}"]


def migrations(driver: Path, keep: Path, variants: dict[str, dict]) -> dict[str, float]:
    """Instructions per migration for each variant (extra environment)."""
    res = {}
    with tempfile.TemporaryDirectory(prefix="profile-") as tmp:
        tiny = Path(tmp) / "tiny500"
        run.write_set(tiny, 500, lambda i: f"INSERT INTO bench_items (n) VALUES ({i});\n")
        db_url = run.url("profile_migrate")
        for name, extra in variants.items():
            counts = []
            for pending in (True, False):
                if pending:
                    run.recreate("profile_migrate")
                    run.psql(db_url, "CREATE TABLE bench_items (n int)")
                out = keep / f"migrate-{slug(name)}-{'apply' if pending else 'noop'}.out"
                subprocess.run(callgrind(out) + [str(driver), str(tiny)],
                               env=run.server_env(db_url, **extra), check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                counts.append(instructions(out))
            got = run.psql(db_url, "SELECT count(*) FROM _sqlx_migrations WHERE success")
            if got != "500":
                raise SystemExit(f"{name}: {got} migrations recorded, expected 500")
            res[name] = (counts[0] - counts[1]) / 500
            run.log(f"per migration, {name}: {res[name] / 1000:.1f} k")
        run.drop("profile_migrate")
    return res


def serve(server: Path, db_url: str, out: Path, path: str, requests: int, extra: dict) -> int:
    """Starts `server` under callgrind, waits until its port accepts, sends `requests` GETs of
    `path` on one keep-alive connection, stops it with SIGTERM; its instruction count."""
    port = run.free_port()
    env = run.server_env(db_url, PORT=str(port), HOST="127.0.0.1", APP_DATABASE__MAX_CONNECTIONS="1",
                         APP_DATABASE__MIN_CONNECTIONS="1", **extra)
    proc = subprocess.Popen(callgrind(out) + [str(server)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    conn = None
    while conn is None:
        if proc.poll() is not None:
            raise SystemExit(f"server exited {proc.returncode} before listening")
        try:
            conn = socket.create_connection(("127.0.0.1", port), timeout=60)
        except OSError:
            time.sleep(0.05)
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {run.API_KEY}"}
    for _ in range(requests):
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise SystemExit(f"GET {path}: {resp.status}")
    conn.close()
    proc.send_signal(signal.SIGTERM)
    if proc.wait(timeout=120) != 0:
        raise SystemExit(f"server exited {proc.returncode} on SIGTERM")
    return instructions(out)


def requests(server: Path, keep: Path, variants: dict[str, tuple[str, dict]]) -> dict[str, float]:
    """Instructions per request for each variant (path, extra environment)."""
    db_url = run.recreate("profile_http")
    run.sh(str(server), "--migrate-only", env=run.server_env(db_url))
    # One conversation to read, written as a client would.
    port = run.free_port()
    proc = subprocess.Popen([str(server)], env=run.server_env(db_url, PORT=str(port), HOST="127.0.0.1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(3000):
            try:
                status, body = run.http_status(
                    port, "/api/v1/conversations",
                    {"Authorization": f"Bearer {run.API_KEY}", "Content-Type": "application/json"},
                    "POST", json.dumps({"title": "profile"}))
                break
            except OSError:
                time.sleep(0.01)
        else:
            raise SystemExit("server did not answer")
        if status != 201:
            raise SystemExit(f"creating a conversation gave {status}: {body!r}")
        cid = json.loads(body)["id"]
    finally:
        run.stop_server(proc)
    res = {}
    for name, (path, extra) in variants.items():
        path = path.replace("{id}", cid)
        counts = [serve(server, db_url, keep / f"http-{slug(name)}-{n}.out", path, n, extra) for n in REQUESTS]
        res[name] = (counts[1] - counts[0]) / (REQUESTS[1] - REQUESTS[0])
        run.log(f"per request, {name}: {res[name] / 1000:.1f} k")
    run.drop("profile_http")
    return res


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", default=str(run.SERVER))
    ap.add_argument("--driver", default=str(run.DRIVER))
    ap.add_argument("--annotate", default=None, help="keep the callgrind files in this directory")
    ap.add_argument("--only", default="migrate,http")
    args = ap.parse_args()
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is needed (Debian package valgrind)")
    server, driver = Path(args.server), Path(args.driver)
    if not server.exists() or not driver.exists():
        run.log("building server and the benchmark driver (release)")
        subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "server", "--example",
                        "bench_migrate"], cwd=run.ROOT, check=True)
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="callgrind-") as tmp:
        keep = Path(args.annotate or tmp)
        keep.mkdir(parents=True, exist_ok=True)
        rows = []
        if "migrate" in only:
            per = migrations(driver, keep, {
                "as shipped": {},
                "APP_LOG__LEVEL=warn": {"APP_LOG__LEVEL": "warn"},
                "APP_LOG__FORMAT=text": {"APP_LOG__FORMAT": "text"},
            })
            rows += [("per migration", k, v) for k, v in per.items()]
        if "http" in only:
            per = requests(server, keep, {
                "as shipped": ("/api/v1/conversations/{id}", {}),
                "APP_METRICS__ENABLED=false": ("/api/v1/conversations/{id}", {"APP_METRICS__ENABLED": "false"}),
                "APP_LOG__LEVEL=warn": ("/api/v1/conversations/{id}", {"APP_LOG__LEVEL": "warn"}),
                "APP_LOG__FORMAT=text": ("/api/v1/conversations/{id}", {"APP_LOG__FORMAT": "text"}),
                "GET /health/live": ("/health/live", {}),
            })
            rows += [("per request", k, v) for k, v in per.items()]
    print("| unit | run | instructions |\n|---|---|---|")
    for unit, name, v in rows:
        print(f"| {unit} | {name} | {v / 1000:.1f} k |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
