"""Huey storages with bounded result retention, one per broker kind.

Huey keeps a task's result until somebody reads it, and forever otherwise.
Bull's ``removeOnComplete`` removed finished jobs; here every result gets a
time to live (completed ones short, failures longer) and ``put_if_empty``
accepts one too, for the once-per-night and single-flight keys:

* Redis: huey's ``RedisExpireStorage`` already stores each result under its
  own key; we only choose the ``EX`` per result.
* SQLite and PostgreSQL: huey's ``kv`` table has no expiry column, so an
  extra ``result_expiry`` table records deadlines and :meth:`prune_results`
  (run by a periodic job, off the hot path) deletes what has expired.

Constructors connect to nothing; SQL tables are created on first use.
"""

from __future__ import annotations

import time
from typing import Any

from huey.constants import EmptyData
from huey.storage import PostgresStorage, RedisExpireStorage, SqliteStorage


class RedisBroker(RedisExpireStorage):
    """Redis: results expire by themselves (``SET ... EX``)."""

    def put_result(self, key: str, value: bytes, ttl: int) -> None:
        self.conn.set(self.result_key(key), value, ex=ttl)
        if self.notify_result:
            self._notify(key)

    def prune_results(self, now: float | None = None) -> int:
        return 0  # Redis removes expired keys itself.


class _SqlExpiry:
    """Deadlines for kv rows, shared by the SQLite and PostgreSQL brokers."""

    name: str
    db: Any  # huey's BaseSqlStorage.db(commit=...) context manager
    ddl: list[str]
    _conn: Any
    _schema_ready = False
    expiry_table = "result_expiry"
    kv_table = "kv"
    param = "?"
    upsert_kv = "insert or replace into kv (queue, key, value) values (?, ?, ?)"

    def _expiry_ddl(self) -> list[str]:
        return [
            f"create table if not exists {self.expiry_table} ("
            "queue text not null, key text not null, expires double precision not null, "
            "primary key (queue, key))",
            f"create index if not exists {self.expiry_table}_expires on {self.expiry_table} (queue, expires)",
        ]

    def _set_expiry(self, curs: Any, key: str, ttl: int) -> None:
        p = self.param
        curs.execute(
            f"delete from {self.expiry_table} where queue = {p} and key = {p}",
            (self.name, key),
        )
        curs.execute(
            f"insert into {self.expiry_table} (queue, key, expires) values ({p}, {p}, {p})",
            (self.name, key, time.time() + ttl),
        )

    def put_result(self, key: str, value: bytes, ttl: int) -> None:
        with self.db(commit=True) as curs:
            curs.execute(self.upsert_kv, (self.name, key, value))
            self._set_expiry(curs, key, ttl)

    def delete_data(self, key: str) -> bool:
        p = self.param
        with self.db(commit=True) as curs:
            curs.execute(f"delete from {self.kv_table} where queue = {p} and key = {p}", (self.name, key))
            deleted = bool(curs.rowcount)
            curs.execute(f"delete from {self.expiry_table} where queue = {p} and key = {p}", (self.name, key))
        return deleted

    def put_if_empty(self, key: str, value: bytes, ttl: int | None = None) -> bool:
        """Claim ``key`` unless a live (unexpired) value holds it; atomic in one transaction."""
        p = self.param
        with self.db(commit=True) as curs:
            curs.execute(
                f"select 1 from {self.expiry_table} where queue = {p} and key = {p} and expires <= {p}",
                (self.name, key, time.time()),
            )
            if curs.fetchone():  # an expired claim no longer counts
                curs.execute(f"delete from {self.kv_table} where queue = {p} and key = {p}", (self.name, key))
                curs.execute(f"delete from {self.expiry_table} where queue = {p} and key = {p}", (self.name, key))
            curs.execute(f"select 1 from {self.kv_table} where queue = {p} and key = {p}", (self.name, key))
            if curs.fetchone():
                return False
            curs.execute(self.upsert_kv, (self.name, key, value))
            if ttl is not None:
                self._set_expiry(curs, key, ttl)
            else:
                curs.execute(f"delete from {self.expiry_table} where queue = {p} and key = {p}", (self.name, key))
            return True

    def prune_results(self, now: float | None = None) -> int:
        """Delete results whose time to live has passed; returns how many."""
        p = self.param
        deadline = time.time() if now is None else now
        with self.db(commit=True) as curs:
            curs.execute(
                f"delete from {self.kv_table} where queue = {p} and key in "
                f"(select key from {self.expiry_table} where queue = {p} and expires <= {p})",
                (self.name, self.name, deadline),
            )
            removed = int(curs.rowcount or 0)
            curs.execute(
                f"delete from {self.expiry_table} where queue = {p} and expires <= {p}",
                (self.name, deadline),
            )
        return removed


class SqliteBroker(_SqlExpiry, SqliteStorage):
    """The embedded default: one SQLite file holds both queues."""

    def __init__(self, name: str, filename: str, **kwargs: Any) -> None:
        super().__init__(name, filename=filename, create_tables=False, **kwargs)
        self.ddl = [*self.ddl, *self._expiry_ddl()]

    @property
    def conn(self) -> Any:
        # Huey runs its DDL in the constructor unless create_tables=False; we
        # run it with the first connection instead, so that importing a module
        # that builds a queue never creates a file.
        if self._conn is None:
            conn = self._create_connection()
            if not self._schema_ready:
                for sql in self.ddl:
                    conn.execute(sql)
                self._schema_ready = True
            self._conn = conn
        return self._conn


class PostgresBroker(_SqlExpiry, PostgresStorage):
    """PostgreSQL as broker, for deployments that want no Redis."""

    param = "%s"

    def __init__(self, name: str, dsn: str, **kwargs: Any) -> None:
        super().__init__(name, dsn=dsn, create_tables=False, **kwargs)
        self.expiry_table = f"{self.table_kv.removesuffix('_kv')}_result_expiry"
        self.kv_table = self.table_kv
        self.upsert_kv = (
            f"insert into {self.table_kv} (queue, key, value) values (%s, %s, %s) "
            "on conflict (queue, key) do update set value = excluded.value"
        )
        self.ddl = [*self.ddl, *self._expiry_ddl()]

    @property
    def conn(self) -> Any:
        conn = PostgresStorage.conn.fget(self)  # type: ignore[attr-defined]
        if not self._schema_ready:
            with conn.cursor() as curs:
                for sql in self.ddl:
                    curs.execute(sql)
            self._schema_ready = True
        return conn


__all__ = ["EmptyData", "PostgresBroker", "RedisBroker", "SqliteBroker"]


def broker_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the broker cannot be reached", for every broker kind."""
    import sqlite3

    import redis.exceptions

    errors: list[type[BaseException]] = [
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        sqlite3.OperationalError,
        ConnectionError,
    ]
    try:
        import psycopg

        errors.append(psycopg.OperationalError)
    except ImportError:  # the postgres extra is not installed
        pass
    return tuple(errors)
