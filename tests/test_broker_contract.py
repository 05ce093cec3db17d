"""huey's own storage test suite, run against our brokers, plain and with reliable fetch on.

Our storages change how messages are taken and how results expire; everything
else must still behave exactly as huey's storages do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HUEY_SLOW_TESTS", "1")  # before huey.tests is imported: include the slow cases

import pytest
from huey import Huey
from huey.tests.base import BaseTestCase
from huey.tests.test_storage import StorageTests

from meingym_tasks.queue.brokers import RedisBroker, SqliteBroker


@pytest.fixture(autouse=True)
def _locations(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if request.cls is not None:
        request.cls.tmp_path = tmp_path
        if issubclass(request.cls, RedisContract):
            request.cls.redis_url = str(request.getfixturevalue("redis_test_url"))


class LeasedChecks:
    """What reliable fetch adds to huey's contract."""

    s: Any

    def test_a_taken_message_stays_in_flight_until_acknowledged(self: Any) -> None:
        self.s.enqueue(b"job-1")

        taken = self.s.dequeue()

        self.assertEqual(self.s.inflight(), [b"job-1"])
        self.s.ack([taken])
        self.assertEqual(self.s.inflight(), [])


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


class TestRedisBrokerPlain(RedisContract):
    __test__ = True


class TestRedisBrokerLeased(LeasedChecks, RedisContract):
    __test__ = True
    leased = True


class TestSqliteBrokerPlain(SqliteContract):
    __test__ = True


class TestSqliteBrokerLeased(LeasedChecks, SqliteContract):
    __test__ = True
    leased = True
