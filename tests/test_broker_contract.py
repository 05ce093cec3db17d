"""huey's own storage test suite, run against each of our brokers, plain and with reliable fetch on.

Our storages change how messages are taken and how results expire; everything
else must still behave exactly as huey's storages do. What reliable fetch,
claims and retention add is tested in ``test_brokers.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("HUEY_SLOW_TESTS", "1")  # before huey.tests is imported: include the slow cases

import pytest
from huey import Huey
from huey.tests.base import BaseTestCase
from huey.tests.test_storage import StorageTests

from meingym_tasks.queue.brokers import PostgresBroker, RedisBroker, SqliteBroker
from tests.helpers import empty_postgres_tables


@pytest.fixture(autouse=True)
def _locations(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    if request.cls is None:
        yield
        return
    request.cls.tmp_path = tmp_path
    if issubclass(request.cls, RedisContract):
        request.cls.redis_url = str(request.getfixturevalue("redis_test_url"))
    if not issubclass(request.cls, PostgresContract):
        yield
        return
    url = request.cls.dsn = str(request.getfixturevalue("postgres_broker_url"))
    empty_postgres_tables(url)  # huey's tests flush the queue's rows, not the in-flight ones
    yield
    empty_postgres_tables(url)


class RedisContract(StorageTests, BaseTestCase):
    __test__ = False
    destructive_reads = False  # results live under their own keys and expire; reads peek
    redis_url = ""
    leased = False

    def get_huey(self) -> Huey:
        huey = Huey("contract-redis", storage_class=RedisBroker, url=self.redis_url, clean_name=False, utc=False)
        if self.leased:
            huey.storage.lease_for("contract-consumer")
        return huey


class SqliteContract(StorageTests, BaseTestCase):
    __test__ = False
    supports_ttl = True  # our SQLite broker implements put_if_empty(ttl=)
    tmp_path = Path(".")
    leased = False

    def get_huey(self) -> Huey:
        huey = Huey("contract-sqlite", storage_class=SqliteBroker, filename=str(self.tmp_path / "q.db"), utc=False)
        if self.leased:
            huey.storage.lease_for("contract-consumer")
        return huey


class PostgresContract(StorageTests, BaseTestCase):
    __test__ = False
    supports_ttl = True  # our PostgreSQL broker implements put_if_empty(ttl=)
    dsn = ""
    leased = False

    def get_huey(self) -> Huey:
        huey = Huey(
            "contract-postgres",
            storage_class=PostgresBroker,
            dsn=self.dsn,
            table_prefix="meingym_queue",
            read_timeout=0.1,  # as huey's own PostgreSQL tests: an empty blocking dequeue waits this long
            utc=False,
        )
        if self.leased:
            huey.storage.lease_for("contract-consumer")
        return huey

    def tearDown(self) -> None:
        super().tearDown()
        self.huey.storage.close()


class TestRedisBrokerPlain(RedisContract):
    __test__ = True


class TestRedisBrokerLeased(RedisContract):
    __test__ = True
    leased = True


class TestSqliteBrokerPlain(SqliteContract):
    __test__ = True


class TestSqliteBrokerLeased(SqliteContract):
    __test__ = True
    leased = True


class TestPostgresBrokerPlain(PostgresContract):
    __test__ = True


class TestPostgresBrokerLeased(PostgresContract):
    __test__ = True
    leased = True
