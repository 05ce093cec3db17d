"""What tests share that is not a fixture: service probes, throwaway databases, waiting, consumers.

Fixtures live in ``conftest.py`` and build on these; test modules import them
from here (``from tests.helpers import run_due``), never from ``conftest``.
``setup.cfg`` puts the repository root on pytest's ``pythonpath`` for that.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from meingym_tasks.queue import queues

REDIS_URL = os.environ.get("MEINGYM_TEST_REDIS_URL", "redis://127.0.0.1:6379")
POSTGRES_ADMIN_URL = os.environ.get("MEINGYM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_SERVICES = os.environ.get("MEINGYM_TEST_REQUIRE_SERVICES") == "1"
#: The brokers every queue test runs on; ``MEINGYM_TEST_BROKERS=sqlite,redis`` narrows them (as peewee's
#: ``PEEWEE_TEST_BACKEND`` chooses its backend).
BROKERS = [
    name.strip() for name in os.environ.get("MEINGYM_TEST_BROKERS", "sqlite,redis,postgres").split(",") if name.strip()
]
if not BROKERS or not set(BROKERS) <= {"sqlite", "redis", "postgres"}:
    raise ValueError(f"MEINGYM_TEST_BROKERS: expected some of sqlite, redis, postgres (comma-separated), not {BROKERS}")

# --------------------------------------------------------------------------- services


def _redis_problem() -> str | None:
    import redis

    try:
        redis.Redis.from_url(f"{REDIS_URL}/0", socket_connect_timeout=1).ping()
    except Exception as exc:  # any failure means "not usable here"
        return f"Redis at {REDIS_URL} is not reachable: {exc}"
    return None


def _postgres_problem() -> str | None:
    try:
        import psycopg

        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=2).close()
    except Exception as exc:
        return f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable: {exc}"
    return None


_problems: dict[str, str | None] = {}


def require(service: str) -> None:
    """Skip (or, with MEINGYM_TEST_REQUIRE_SERVICES=1, fail) when a service is down; probed once."""
    if service not in _problems:
        _problems[service] = {"redis": _redis_problem, "postgres": _postgres_problem}[service]()
    problem = _problems[service]
    if problem:
        if REQUIRE_SERVICES:
            pytest.fail(problem + " (MEINGYM_TEST_REQUIRE_SERVICES=1)")
        pytest.skip(problem)


@contextlib.contextmanager
def throwaway_postgres_database(prefix: str = "meingym_test") -> Iterator[str]:
    """A new, empty PostgreSQL database (its URL), dropped afterwards with whatever is still connected."""
    require("postgres")
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def empty_postgres_tables(url: str) -> None:
    """Empty every table of a PostgreSQL database (a broker's: it makes its tables on first use)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set lock_timeout = '10s'")  # a leftover open transaction fails the test, not hangs it
        tables = [name for (name,) in conn.execute("select tablename from pg_tables where schemaname = 'public'")]
        if tables:
            conn.execute("truncate " + ", ".join(f'"{t}"' for t in tables) + " restart identity")


#: Held in the Redis database a test session uses, so that two sessions on one Redis never share one.
CLAIM_KEY = "meingym-tasks:test-session"


def only_test_keys(client: Any) -> bool:
    """True when the database holds nothing but huey keys (left by an earlier test run) and our claim."""
    for number, key in enumerate(client.scan_iter(count=200)):
        if not key.startswith((b"huey.", CLAIM_KEY.encode())):
            return False
        if number > 1000:
            return False
    return True


# --------------------------------------------------------------------------- waiting and running


def wait_until(condition: Callable[[], Any], timeout: float, what: str | Callable[[], str]) -> Any:
    """Poll ``condition`` until it returns something true (returned), or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")


def run_due(queue: queues.MeinGymHuey) -> int:
    """Do what a consumer does once, at the current (possibly frozen) time.

    Moves due scheduled jobs onto the queue and executes everything queued,
    through huey's own ``read_schedule``/``dequeue``/``execute``. Returns the
    number of jobs executed.
    """
    executed = 0
    for task in queue.read_schedule():
        queue.enqueue(task)
    while queue.pending_count():  # Redis's dequeue blocks for a second on an empty queue
        task = queue.dequeue()
        if task is not None:
            queue.execute(task)
            executed += 1
    return executed


@contextlib.contextmanager
def running_consumers(env: dict[str, str], log_dir: Path, workers: int = 2) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Both queues' consumers as real ``huey_consumer`` processes, stopped with SIGINT afterwards."""
    huey_consumer = Path(sys.executable).parent / "huey_consumer"
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for name in ("actions", "users"):
        log = open(log_dir / f"consumer-{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        procs.append(
            subprocess.Popen(
                [str(huey_consumer), f"meingym_tasks.consumers.{name}", "-w", str(workers), "-k", "thread"],
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        log.close()
    try:
        yield procs
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --------------------------------------------------------------------------- SMTP and ports


class Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released): a closed port, or one for a server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def executions(logs: str, job: str) -> dict[str, int]:
    """How often each job id of ``job`` was executed, from huey's "Executing <task>: <id>" log lines.

    One job's only: the periodic housekeeping (every ten minutes) runs on the same queues.
    """
    runs: dict[str, int] = {}
    for line in logs.splitlines():
        if f"Executing meingym_tasks.tasks.{job}: " in line:
            job_id = line.rsplit(": ", 1)[1].split()[0]
            runs[job_id] = runs.get(job_id, 0) + 1
    return runs
