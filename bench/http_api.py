"""Section 3: the jobs API under a load generator on loopback.

The registry is filled with job records straight through ``insert_many`` (a
mix of queues, names, states and batch children over a week), then
``uvicorn --workers 2`` serves ``meingym_tasks.web:create_app`` on PostgreSQL
and the private Redis. A small client on ``http.client`` (stdlib, keep-alive,
far lighter than the server it measures) sends:

* **latency**: one request at a time on one connection, after a warm-up:
  ``GET /api/jobs`` (first page), a filtered page (``state=failed`` of the
  users queue), a deep keyset page (the cursor of the record 90 % down the
  list) and ``GET /api/jobs/{id}`` of random records; p50 and p99 per run;
* **POST /api/jobs**: several client threads post ``process-user-data`` for
  a fixed time, each on a keep-alive connection renewed every
  ``RECONNECT_EVERY`` requests (so both workers get a share, as behind a
  proxy); the rate counts the 202 answers, and every accepted job must have
  its record afterwards.

Skipped with "not yet" when ``meingym_tasks.web`` cannot be imported or lacks
one of those endpoints.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

from bench.config import REPO
from bench.services import BenchEnv, bind_database, clear_postgres, free_port, stop_process, wait_until
from bench.stats import percentile, summarize
from meingym_tasks.db.database import database
from meingym_tasks.domain.models import utcnow
from meingym_tasks.queue import queues
from meingym_tasks.registry.models import JobRecord
from meingym_tasks.registry.queries import encode_cursor
from meingym_tasks.settings import Settings

logger = logging.getLogger("bench.api")

TOKEN = "bench-admin-token-" + "x" * 24
ENDPOINTS = (("GET", "/api/jobs"), ("POST", "/api/jobs"), ("GET", "/api/jobs/{job_id}"), ("GET", "/healthz"))
#: Records per INSERT: 20 columns, far below PostgreSQL's 65,535 parameters.
INSERT_CHUNK = 2_000
WARMUP = 10
#: POST clients open a new connection after this many requests. uvicorn's workers accept from
#: one shared socket and the kernel does not spread keep-alive connections evenly: 8 lasting
#: connections measured 280 to 700 requests/s depending on how many landed on each worker.
RECONNECT_EVERY = 50

_FIELDS = (
    "job_id", "queue", "name", "parent_id", "arguments", "state", "attempts", "max_attempts", "enqueued_at",
    "started_at", "finished_at", "consumer", "result", "error", "cancel_requested", "recoveries", "updated_at",
)  # fmt: skip


def web_missing(app_env: dict[str, str]) -> str | None:
    """Why the API cannot be measured yet (None: it can)."""
    try:
        from meingym_tasks.web import WebSettings, create_app
    except Exception as exc:  # being built: any import error means "not yet"
        return f"meingym_tasks.web does not import: {type(exc).__name__}: {exc}"
    try:
        app = create_app(Settings.from_env(app_env), WebSettings.from_env(app_env))
    except Exception as exc:
        return f"create_app() fails: {type(exc).__name__}: {exc}"
    finally:
        queues.reset()
    try:  # the OpenAPI document lists every operation, however the routers are nested
        paths = app.openapi().get("paths", {})
    except Exception as exc:
        return f"the OpenAPI document fails: {type(exc).__name__}: {exc}"
    missing = [f"{m} {p}" for m, p in ENDPOINTS if m.lower() not in paths.get(p, {})]
    return f"endpoints missing: {', '.join(missing)}" if missing else None


def run(env: BenchEnv) -> dict[str, Any]:
    config = env.config
    data_dir = env.scratch("api")
    app_env = env.app_env(data_dir, env.redis_url, str(env.postgres_url), MEINGYM_ADMIN_TOKEN=TOKEN)
    missing = web_missing(app_env)
    if missing is not None:
        logger.warning("api: not yet (%s)", missing)
        return {"status": "not yet", "reason": missing}
    env.flush_redis()
    db = bind_database(Settings.from_env(app_env))
    clear_postgres(db, "job_record", "job_attempt", "job_consumer", "job_dead_letter")
    started = time.perf_counter()
    ids = insert_records(config.api_records)
    db.execute_sql("VACUUM ANALYZE job_record")
    insert_seconds = time.perf_counter() - started
    paths = {
        "first page": "/api/jobs",
        "filtered page": "/api/jobs?state=failed&queue=users-processing",
        "deep keyset page": "/api/jobs?cursor=" + deep_cursor(0.9),
    }
    database.close()

    port = free_port()
    server = start_server(app_env, port, data_dir)
    try:
        wait_until(lambda: healthy(port, server), 60, 0.2, "uvicorn to answer /healthz")
        latency: dict[str, list[dict[str, float]]] = {name: [] for name in [*paths, "job by id"]}
        posts: list[dict[str, Any]] = []
        rng = random.Random(7)
        for rep in range(config.runs):
            for name, path in paths.items():
                latency[name].append(measure_latency(port, [path] * config.api_requests))
            by_id = [f"/api/jobs/{rng.choice(ids)}" for _ in range(config.api_requests)]
            latency["job by id"].append(measure_latency(port, by_id))
            posts.append(measure_posts(port, config.api_post_clients, config.api_post_seconds))
            logger.info(
                "api run %d: p99 ms %s, POST %.0f/s",
                rep + 1, {k: round(v[-1]["p99_ms"], 1) for k, v in latency.items()}, posts[-1]["per_s"],
            )  # fmt: skip
    finally:
        stop_process(server)
    stock = measure_stock_uvicorn(app_env, data_dir, config.api_requests, paths["first page"])
    accepted = sum(p["accepted"] for p in posts)
    recorded = JobRecord.select().where(JobRecord.queue == "users-processing", JobRecord.state == "queued").count()
    database.close()
    return {
        "status": "measured",
        "records": config.api_records,
        "insert_seconds": insert_seconds,
        "uvicorn_workers": 2,
        "latency": {
            name: {
                "p50_ms": summarize([r["p50_ms"] for r in runs]),
                "p99_ms": summarize([r["p99_ms"] for r in runs]),
                "errors": sum(r["errors"] for r in runs),
                "requests": sum(r["requests"] for r in runs),
            }
            for name, runs in latency.items()
        },
        "post": {
            "per_s": summarize([p["per_s"] for p in posts]),
            "clients": config.api_post_clients,
            "seconds": config.api_post_seconds,
            "accepted": accepted,
            "rejected": sum(p["rejected"] for p in posts),
            "records_queued": recorded,
        },
        "stock_uvicorn": stock,
        "checks": {
            "ok": recorded == accepted + QUEUED_SEEDED.get(config.api_records, 0)
            and all(r["errors"] == 0 for runs in latency.values() for r in runs)
            and sum(p["rejected"] for p in posts) == 0,
            "records_queued": recorded,
            "accepted": accepted,
        },
    }


def measure_stock_uvicorn(app_env: dict[str, str], data_dir: Any, requests: int, path: str) -> dict[str, Any]:
    """Plain ``uvicorn --workers 2`` (keep-alive answers wait for delayed ACKs): one run, for the record."""
    port = free_port()
    server = start_server(app_env, port, data_dir, nodelay=False)
    try:
        wait_until(lambda: healthy(port, server), 60, 0.2, "uvicorn to answer /healthz")
        return {
            "healthz": measure_latency(port, ["/healthz"] * requests),
            "first page": measure_latency(port, [path] * requests),
        }
    finally:
        stop_process(server)


#: Queued users-queue records among the inserted ones, per record count (filled by insert_records).
QUEUED_SEEDED: dict[int, int] = {}


def insert_records(count: int) -> list[str]:
    """``count`` plausible job records, newest at the top; returns their ids."""
    rng = random.Random(42)
    now = utcnow()
    span = timedelta(days=7).total_seconds()
    ids: list[str] = []
    queued_users = 0
    rows: list[tuple[Any, ...]] = []
    statements: dict[int, str] = {}
    for number in range(count):
        job_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        ids.append(job_id)
        enqueued = now - timedelta(seconds=span * (1 - number / count))
        draw = rng.random()
        if draw < 0.6:
            queue, name, parent = "users-processing", "process-user-data", None
        elif draw < 0.75:
            queue, name, parent = "users-processing", "send-welcome-email", None
        elif draw < 0.76:
            queue, name, parent = "actions-processing", "update-all-actions", None
        else:
            queue, name, parent = "actions-processing", "update-all-actions.batch", ids[max(0, number - 5)]
        roll = rng.random()
        state = "complete" if roll < 0.9 else "failed" if roll < 0.95 else "queued" if roll < 0.98 else "retrying"
        if state == "queued" and queue == "users-processing":
            queued_users += 1
        started = enqueued + timedelta(seconds=rng.random())
        finished = started + timedelta(seconds=rng.random()) if state in ("complete", "failed") else None
        rows.append(
            (
                job_id, queue, name, parent, json.dumps({"args": [number % 1000 + 1], "kwargs": {}}), state,
                1, 3, enqueued, started if state != "queued" else None, finished,
                None if state == "queued" else "bench-host:1",
                json.dumps({"n": number}) if state == "complete" else None,
                "RuntimeError: bench" if state == "failed" else None, False, 0, finished or enqueued,
            )
        )  # fmt: skip
        if len(rows) == INSERT_CHUNK or number == count - 1:
            write_rows(rows, statements)
            rows = []
    QUEUED_SEEDED[count] = queued_users
    return ids


def write_rows(rows: list[tuple[Any, ...]], statements: dict[int, str]) -> None:
    """One ``insert_many`` of rows that already hold database values (JSON as text).

    Peewee renders the statement once per chunk size; the values go to the
    driver as they are (peewee's own conversion would encode the JSON twice).
    """
    sql = statements.get(len(rows))
    if sql is None:
        fields = [getattr(JobRecord, name) for name in _FIELDS]
        sql = JobRecord.insert_many(rows, fields=fields).as_rowcount().sql()[0]
        statements[len(rows)] = sql
    with database.atomic():
        database.execute_sql(sql, [value for row in rows for value in row])


def deep_cursor(fraction: float) -> str:
    """The keyset cursor of the top-level record ``fraction`` of the way down the newest-first list."""
    top = JobRecord.select().where(JobRecord.parent_id.is_null())
    offset = int(top.count() * fraction)
    ordered = top.order_by(JobRecord.enqueued_at.desc(), JobRecord.job_id.desc())
    (record,) = list(ordered.offset(offset).limit(1))  # not .get(): it resets the offset
    return encode_cursor(record)


def start_server(app_env: dict[str, str], port: int, data_dir: Any, nodelay: bool = True) -> subprocess.Popen[bytes]:
    """``uvicorn --workers 2`` serving the app; ``nodelay``: through :mod:`bench.uvicorn_nodelay`."""
    launcher = "bench.uvicorn_nodelay" if nodelay else "uvicorn"
    command = [sys.executable, "-m", launcher, "--factory", "meingym_tasks.web:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "2", "--log-level", "warning"]
    command += ["--no-access-log"]
    with open(data_dir / "uvicorn.log", "ab") as log:
        return subprocess.Popen(command, cwd=REPO, env={**os.environ, **app_env}, stdout=log, stderr=subprocess.STDOUT)


def healthy(port: int, server: subprocess.Popen[bytes]) -> bool:
    if server.poll() is not None:
        raise RuntimeError(f"uvicorn exited with {server.returncode}")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/healthz")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def _headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def measure_latency(port: int, paths: list[str]) -> dict[str, float]:
    """Sequential GETs on one keep-alive connection; p50/p99 in milliseconds."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = _headers()
    errors = 0
    timings: list[float] = []
    try:
        for number, path in enumerate(paths[:WARMUP] + paths):
            started = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - started
            if number < min(WARMUP, len(paths)):
                continue
            timings.append(elapsed * 1000)
            if response.status != 200 or not body.startswith(b"{"):
                errors += 1
    finally:
        conn.close()
    return {
        "p50_ms": percentile(timings, 0.5),
        "p99_ms": percentile(timings, 0.99),
        "requests": len(timings),
        "errors": errors,
    }


def measure_posts(port: int, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` threads posting jobs for ``seconds``; accepted (202) requests per second."""
    accepted = [0] * clients
    rejected = [0] * clients
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = _headers()
        start.wait()
        number = 0
        try:
            while time.perf_counter() < deadline[0]:
                number += 1
                if number % RECONNECT_EVERY == 0:  # see RECONNECT_EVERY
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                body = json.dumps({"action": "process-user-data", "user_id": index * 1_000_000 + number})
                conn.request("POST", "/api/jobs", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status == 202:
                    accepted[index] += 1
                else:
                    rejected[index] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline[0] = began + seconds
    start.wait()
    for thread in threads:
        thread.join(seconds + 60)
    elapsed = time.perf_counter() - began
    return {"per_s": sum(accepted) / elapsed, "accepted": sum(accepted), "rejected": sum(rejected)}


__all__ = ["run", "web_missing"]
