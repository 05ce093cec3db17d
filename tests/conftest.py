"""Shared fixtures: real SQLite files, the real Redis and PostgreSQL on loopback.

Services are probed once. Without them the tests that need them skip with a
reason, unless ``MEINGYM_TEST_REQUIRE_SERVICES=1`` (CI), where a missing
service fails the run instead.
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
from decimal import Decimal
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import peewee
import pytest
from aiosmtpd.controller import Controller

from meingym_tasks.db.database import database, init_database
from meingym_tasks.queue import queues
from meingym_tasks.settings import Settings

REDIS_URL = os.environ.get("MEINGYM_TEST_REDIS_URL", "redis://127.0.0.1:6379")
POSTGRES_ADMIN_URL = os.environ.get("MEINGYM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_SERVICES = os.environ.get("MEINGYM_TEST_REQUIRE_SERVICES") == "1"


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
    """Skip (or, with MEINGYM_TEST_REQUIRE_SERVICES=1, fail) when a service is down."""
    if service not in _problems:
        _problems[service] = {"redis": _redis_problem, "postgres": _postgres_problem}[service]()
    problem = _problems[service]
    if problem:
        if REQUIRE_SERVICES:
            pytest.fail(problem + " (MEINGYM_TEST_REQUIRE_SERVICES=1)")
        pytest.skip(problem)


# --------------------------------------------------------------------------- isolation


@pytest.fixture(autouse=True)
def producers_batch_again() -> Iterator[None]:
    """Undo what building a web app does to the whole process (enqueue records written in the
    request's transaction), so that a test's outcome does not depend on which tests ran before."""
    yield
    from meingym_tasks.registry import recorder

    for queue_recorder in recorder._recorders.values():
        queue_recorder.write_enqueues_now = False


# --------------------------------------------------------------------------- settings


@pytest.fixture
def make_env(tmp_path: Path) -> Callable[..., dict[str, str]]:
    """An environment for meingym-tasks rooted in this test's tmp dir (also for subprocesses)."""

    def build(**env: str) -> dict[str, str]:
        return {"MEINGYM_DATA_DIR": str(tmp_path / "data"), "MEINGYM_SECRET_KEY": "test-secret", **env}

    return build


@pytest.fixture
def make_settings(make_env: Callable[..., dict[str, str]]) -> Callable[..., Settings]:
    """Build Settings from an environment dict rooted in this test's tmp dir."""

    def build(**env: str) -> Settings:
        return Settings.from_env(make_env(**env))

    return build


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for this test run, dropped at the end."""
    require("postgres")
    import psycopg

    name = f"meingym_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        if database.obj is not None and not database.is_closed():
            database.close()
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_migrated_postgres: set[str] = set()


def _clean_postgres(db: peewee.Database) -> None:
    tables = [t for t in db.get_tables() if t != "schema_migration"]
    if tables:
        db.execute_sql("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")


# --------------------------------------------------------------------------- databases


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every data test runs on a fresh SQLite file and on the PostgreSQL test database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'meingym.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def db(database_url: str, make_settings: Callable[..., Settings]) -> Iterator[peewee.Database]:
    """The project database, bound, migrated and empty."""
    from meingym_tasks.db.migrate import migrate

    bound = init_database(make_settings(DATABASE_URL=database_url))
    if isinstance(bound, peewee.PostgresqlDatabase):
        if database_url not in _migrated_postgres:
            migrate(bound)
            _migrated_postgres.add(database_url)
        _clean_postgres(bound)
    else:
        migrate(bound)
    try:
        yield bound
    finally:
        if not bound.is_closed():
            bound.close()


@pytest.fixture
def user(db: peewee.Database) -> Any:
    from meingym_tasks.domain.models import User

    return User.create(email="ada@example.com", name="Ada")


@pytest.fixture
def squat(db: peewee.Database) -> Any:
    from meingym_tasks.domain.models import Exercise

    return Exercise.create(name="Back Squat", kind="strength", difficulty=Decimal("1.50"))


# --------------------------------------------------------------------------- brokers


CLAIM_KEY = "meingym-tasks:test-session"


def only_test_keys(client: Any) -> bool:
    """True when the database holds nothing but huey keys (left by an earlier test run) and our claim."""
    for number, key in enumerate(client.scan_iter(count=200)):
        if not key.startswith((b"huey.", CLAIM_KEY.encode())):
            return False
        if number > 1000:
            return False
    return True


@pytest.fixture(scope="session")
def redis_test_url() -> Iterator[str]:
    """An otherwise unused Redis database number for this test session.

    Like rq's test suite, pick a database nobody uses; a claim key (renewed after
    every flush) keeps two test sessions on one Redis from sharing queues.
    """
    require("redis")
    import redis

    claim = f"{os.getpid()}:{uuid.uuid4().hex}"
    for number in range(1, 16):
        client = redis.Redis.from_url(f"{REDIS_URL}/{number}")
        if client.set(CLAIM_KEY, claim, nx=True, ex=6 * 3600) and only_test_keys(client):
            try:
                yield f"{REDIS_URL}/{number}"
            finally:
                client.flushdb()
                client.close()
            return
        if client.get(CLAIM_KEY) == claim.encode():
            client.delete(CLAIM_KEY)  # the database held other keys: not ours to use
        client.close()
    pytest.fail(f"no free Redis database at {REDIS_URL} (1-15 are claimed or in use)")


@pytest.fixture(params=["sqlite", "redis"])
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every queue test runs on the SQLite broker and on Redis (a database of its own, flushed per test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'queue.db'}"
        return
    import redis

    url = str(request.getfixturevalue("redis_test_url"))
    client = redis.Redis.from_url(url)
    claim = client.get(CLAIM_KEY)

    def flush() -> None:
        client.flushdb()
        client.set(CLAIM_KEY, claim or b"", ex=6 * 3600)

    flush()
    try:
        yield url
    finally:
        flush()
        client.close()


@pytest.fixture
def app_env(
    broker_url: str, db: peewee.Database, database_url: str, make_env: Callable[..., dict[str, str]]
) -> dict[str, str]:
    """The environment of a whole app: a broker and a migrated, empty database."""
    return make_env(MEINGYM_BROKER_URL=broker_url, DATABASE_URL=database_url)


@pytest.fixture
def app_settings(app_env: dict[str, str]) -> Iterator[Settings]:
    """Settings for a whole app (both queues and the database), queues bound to them."""
    settings = Settings.from_env(app_env)
    queues.configure(settings)
    try:
        yield settings
    finally:
        queues.reset()


@pytest.fixture
def queue_settings(broker_url: str, make_settings: Callable[..., Settings]) -> Iterator[Settings]:
    """Both queues bound to a fresh broker (no project database needed)."""
    settings = make_settings(MEINGYM_BROKER_URL=broker_url)
    queues.configure(settings)
    try:
        yield settings
    finally:
        queues.reset()


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


# --------------------------------------------------------------------------- SMTP


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


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()
