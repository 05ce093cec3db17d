"""Shared fixtures: real SQLite files, the real Redis and PostgreSQL on loopback.

Services are probed once. Without them the tests that need them skip with a
reason, unless ``MEINGYM_TEST_REQUIRE_SERVICES=1`` (CI), where a missing
service fails the run instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import peewee
import pytest
from aiosmtpd.controller import Controller

from meingym_tasks.db.database import database, init_database
from meingym_tasks.queue import queues
from meingym_tasks.settings import Settings
from tests.helpers import (
    BROKERS,
    CLAIM_KEY,
    REDIS_URL,
    Inbox,
    empty_postgres_tables,
    free_port,
    only_test_keys,
    require,
    throwaway_postgres_database,
)

# --------------------------------------------------------------------------- the matrix


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The PostgreSQL broker runs with the PostgreSQL project database only.

    A deployment that wants no Redis has PostgreSQL for its data already; the
    broker alone is tested on its own (``test_brokers.py``, ``queue_settings``).
    Pairing it with SQLite too would add some 40 s to a run for no new case.
    """
    keep, deselected = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        pairing = (params.get("broker_url"), params.get("database_url"))
        (deselected if pairing == ("postgres", "sqlite") else keep).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = keep


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
    """A throwaway PostgreSQL database for this test run's project data, dropped at the end."""
    with throwaway_postgres_database("meingym_test") as url:
        try:
            yield url
        finally:
            if database.obj is not None and not database.is_closed():
                database.close()


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


@pytest.fixture(scope="session")
def postgres_broker_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for the PostgreSQL broker's tables, apart from the project data."""
    with throwaway_postgres_database("meingym_broker") as url:
        yield url


@pytest.fixture(params=BROKERS)
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every queue test runs on each broker: a SQLite file, a Redis database and a PostgreSQL database
    of its own, emptied before and after each test (``MEINGYM_TEST_BROKERS`` narrows the list)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'queue.db'}"
        return
    if request.param == "postgres":
        url = str(request.getfixturevalue("postgres_broker_url"))
        empty_postgres_tables(url)
        try:
            yield url
        finally:
            empty_postgres_tables(url)
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


# --------------------------------------------------------------------------- SMTP


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
