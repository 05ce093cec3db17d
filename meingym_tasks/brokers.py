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

# Moves every due message of the schedule onto the queue in one step, so a
# scheduler killed between huey's "pop from schedule" and "enqueue" loses none.
SCHEDULE_TO_QUEUE_LUA = """\
local due = redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1])
for _, item in ipairs(due) do
    redis.call('lpush', KEYS[2], item)
    redis.call('zrem', KEYS[1], item)
end
return due"""

# Removes finished messages from an in-flight list. BLMOVE pushes on the left, so
# the oldest (usually the ones finishing) sit at the right: LREM with count -1
# searches from there. One script call instead of a pipelined LREM per message:
# the client packs one command per batch instead of one per job.
ACK_LUA = """\
for _, item in ipairs(ARGV) do
    redis.call('lrem', KEYS[1], -1, item)
end
return #ARGV"""
ACK_CHUNK = 1_000


class RedisBroker(RedisExpireStorage):
    """Redis: results expire by themselves (``SET ... EX``); reliable fetch with in-flight lists.

    A consumer that called :meth:`lease_for` takes a message with ``BLMOVE``
    from the queue to its own in-flight list and removes it there only when
    the job has ended (:meth:`ack`). Its heartbeat key expires if it dies; any
    consumer's reaper then moves the dead one's in-flight messages back.
    """

    consumer_id: str | None = None

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.consumers_key = f"huey.consumers.{self.name}"
        self._to_queue = self.conn.register_script(SCHEDULE_TO_QUEUE_LUA)
        self._ack = self.conn.register_script(ACK_LUA)

    def inflight_key(self, consumer_id: str) -> str:
        return f"huey.inflight.{self.name}.{consumer_id}"

    def heartbeat_key(self, consumer_id: str) -> str:
        return f"huey.heartbeat.{self.name}.{consumer_id}"

    def lease_for(self, consumer_id: str) -> None:
        self.consumer_id = consumer_id

    def dequeue(self) -> bytes | None:
        if self.consumer_id is None:
            return super().dequeue()  # type: ignore[no-any-return]
        target = self.inflight_key(self.consumer_id)
        if self.blocking:
            return self.conn.blmove(self.queue_key, target, self.read_timeout, "RIGHT", "LEFT")  # type: ignore[no-any-return]
        return self.conn.lmove(self.queue_key, target, "RIGHT", "LEFT")  # type: ignore[no-any-return]

    def ack(self, data: bytes) -> None:
        self.ack_many([data])

    def ack_many(self, messages: list[bytes]) -> None:
        """Drop finished messages from our in-flight list: one command, however many."""
        if self.consumer_id is None or not messages:
            return
        key = self.inflight_key(self.consumer_id)
        for start in range(0, len(messages), ACK_CHUNK):  # a backlog after an outage: bounded script runs
            self._ack(keys=[key], args=messages[start : start + ACK_CHUNK])

    def beat(self, ttl: int) -> None:
        assert self.consumer_id is not None
        pipe = self.conn.pipeline()
        pipe.sadd(self.consumers_key, self.consumer_id)
        pipe.set(self.heartbeat_key(self.consumer_id), b"1", ex=ttl)
        pipe.execute()

    def inflight(self, consumer_id: str | None = None) -> list[bytes]:
        return self.conn.lrange(self.inflight_key(consumer_id or self.consumer_id or ""), 0, -1)  # type: ignore[no-any-return]

    def dead_consumers(self) -> list[str]:
        members = [m.decode() for m in self.conn.smembers(self.consumers_key)]
        members = [m for m in members if m != self.consumer_id]
        if not members:
            return []
        pipe = self.conn.pipeline()
        for member in members:
            pipe.exists(self.heartbeat_key(member))
        return [m for m, alive in zip(members, pipe.execute(), strict=True) if not alive]

    def claim_one(self, dead_id: str) -> bytes | None:
        """Move one message of a dead consumer's in-flight list into ours (atomic: one reaper gets it)."""
        assert self.consumer_id is not None
        return self.conn.lmove(self.inflight_key(dead_id), self.inflight_key(self.consumer_id), "RIGHT", "LEFT")  # type: ignore[no-any-return]

    def requeue(self, data: bytes) -> None:
        """Put a message we hold back at the head of the queue and drop it from our in-flight list."""
        assert self.consumer_id is not None
        pipe = self.conn.pipeline(transaction=True)
        pipe.rpush(self.queue_key, data)
        pipe.lrem(self.inflight_key(self.consumer_id), 1, data)
        pipe.execute()

    def end_heartbeat(self) -> None:
        """Declare this consumer gone: reapers recover anything left in its in-flight list."""
        if self.consumer_id is not None:
            self.conn.delete(self.heartbeat_key(self.consumer_id))

    def forget_consumer(self, consumer_id: str) -> None:
        pipe = self.conn.pipeline()
        pipe.srem(self.consumers_key, consumer_id)
        pipe.delete(self.heartbeat_key(consumer_id))
        pipe.execute()

    def move_due_to_queue(self, ts: Any) -> list[bytes]:
        return self._to_queue(keys=[self.schedule_key, self.queue_key], args=[self.convert_ts(ts)]) or []  # type: ignore[no-any-return]

    def put_result(self, key: str, value: bytes, ttl: int, delete: str | None = None) -> None:
        """Store a result for ``ttl`` seconds, deleting the key ``delete`` in the same round trip."""
        if delete is None:
            self.conn.set(self.result_key(key), value, ex=ttl)
        else:
            pipe = self.conn.pipeline(transaction=False)
            pipe.delete(self.result_key(delete))
            pipe.set(self.result_key(key), value, ex=ttl)
            pipe.execute()
        if self.notify_result:
            self._notify(key)

    def prune_results(self, now: float | None = None) -> int:
        return 0  # Redis removes expired keys itself.


class _SqlExpiry:
    """Deadlines for kv rows, shared by the SQLite and PostgreSQL brokers."""

    name: str
    db: Any  # huey's BaseSqlStorage.db(commit=...) context manager
    pop_data: Any
    sql: Any  # huey's BaseSqlStorage.sql(query, params, commit=, results=)
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
            f"insert into {self.expiry_table} (queue, key, expires) values ({p}, {p}, {p}) "
            "on conflict (queue, key) do update set expires = excluded.expires",
            (self.name, key, time.time() + ttl),
        )

    def put_result(self, key: str, value: bytes, ttl: int, delete: str | None = None) -> None:
        """Store a result for ``ttl`` seconds, deleting the key ``delete`` in the same transaction."""
        p = self.param
        with self.db(commit=True) as curs:
            if delete is not None:
                curs.execute(f"delete from {self.kv_table} where queue = {p} and key = {p}", (self.name, delete))
                curs.execute(f"delete from {self.expiry_table} where queue = {p} and key = {p}", (self.name, delete))
            curs.execute(self.upsert_kv, (self.name, key, value))
            self._set_expiry(curs, key, ttl)

    def _live(self) -> str:
        p = self.param
        return (
            f"not exists (select 1 from {self.expiry_table} e where e.queue = {p} and e.key = {p} and e.expires <= {p})"
        )

    def peek_data(self, key: str) -> Any:
        """The value under ``key``, unless its time to live has passed (then as if absent)."""
        p = self.param
        rows = self.sql(
            f"select value from {self.kv_table} where queue = {p} and key = {p} and {self._live()}",
            (self.name, key, self.name, key, time.time()),
            results=True,
        )
        return bytes(rows[0][0]) if rows else EmptyData

    def has_data_for_key(self, key: str) -> bool:
        return self.peek_data(key) is not EmptyData

    def delete_data(self, key: str) -> bool:
        p = self.param
        # huey deletes a job's revoke key after it ran (when no result goes with it, see
        # MeinGymHuey.delete), and there almost never is one: look first, so that the common
        # case is a read, not a write transaction and its lock.
        look = f"select 1 from {self.kv_table} where queue = {p} and key = {p}"
        if not self.sql(look, (self.name, key), results=True):
            return False
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


class _SqlLeases(_SqlExpiry):
    """Reliable fetch on SQL: a taken message moves to ``inflight`` until its job has ended."""

    consumer_id: str | None = None
    task_table = "task"
    schedule_table = "schedule"
    inflight_table = "inflight"
    heartbeat_table = "heartbeat"

    def _lease_ddl(self) -> list[str]:
        blob = "bytea" if self.param == "%s" else "blob"
        serial = "bigserial primary key" if self.param == "%s" else "integer not null primary key"
        return [
            f"create table if not exists {self.inflight_table} (id {serial}, queue text not null, "
            f"consumer text not null, data {blob} not null, priority double precision not null default 0, "
            "taken_at double precision not null)",
            f"create index if not exists {self.inflight_table}_consumer on {self.inflight_table} (queue, consumer)",
            f"create table if not exists {self.heartbeat_table} (queue text not null, consumer text not null, "
            "expires double precision not null, primary key (queue, consumer))",
        ]

    def lease_for(self, consumer_id: str) -> None:
        self.consumer_id = consumer_id

    def _take(self, curs: Any) -> bytes | None:
        """Move the next message from the queue to our in-flight rows, inside the caller's transaction."""
        p = self.param
        curs.execute(
            f"select id, data, priority from {self.task_table} where queue = {p} "
            f"order by priority desc, id limit 1" + (" for update skip locked" if p == "%s" else ""),
            (self.name,),
        )
        row = curs.fetchone()
        if row is None:
            return None
        task_id, data, priority = row
        curs.execute(f"delete from {self.task_table} where id = {p}", (task_id,))
        curs.execute(
            f"insert into {self.inflight_table} (queue, consumer, data, priority, taken_at) "
            f"values ({p}, {p}, {p}, {p}, {p})",
            (self.name, self.consumer_id, data, priority, time.time()),
        )
        return bytes(data)

    def _drop(self, curs: Any, consumer_id: str, data: bytes) -> None:
        p = self.param
        curs.execute(
            f"delete from {self.inflight_table} where id = (select id from {self.inflight_table} "
            f"where queue = {p} and consumer = {p} and data = {p} limit 1)",
            (self.name, consumer_id, data),
        )

    def ack(self, data: bytes) -> None:
        self.ack_many([data])

    def ack_many(self, messages: list[bytes]) -> None:
        if self.consumer_id is None or not messages:
            return
        with self.db(commit=True) as curs:
            for data in messages:
                self._drop(curs, self.consumer_id, data)

    def beat(self, ttl: int) -> None:
        p = self.param
        with self.db(commit=True) as curs:
            curs.execute(
                f"delete from {self.heartbeat_table} where queue = {p} and consumer = {p}",
                (self.name, self.consumer_id),
            )
            curs.execute(
                f"insert into {self.heartbeat_table} (queue, consumer, expires) values ({p}, {p}, {p})",
                (self.name, self.consumer_id, time.time() + ttl),
            )

    def inflight(self, consumer_id: str | None = None) -> list[bytes]:
        p = self.param
        rows = self.sql(
            f"select data from {self.inflight_table} where queue = {p} and consumer = {p} order by id",
            (self.name, consumer_id or self.consumer_id),
            results=True,
        )
        return [bytes(data) for (data,) in rows]

    def dead_consumers(self) -> list[str]:
        """Consumers holding messages (or a heartbeat) whose heartbeat has expired."""
        p = self.param
        rows = self.sql(
            f"select distinct i.consumer from {self.inflight_table} i left join {self.heartbeat_table} h "
            f"on h.queue = i.queue and h.consumer = i.consumer "
            f"where i.queue = {p} and (h.expires is null or h.expires < {p}) "
            f"union select consumer from {self.heartbeat_table} where queue = {p} and expires < {p}",
            (self.name, time.time(), self.name, time.time()),
            results=True,
        )
        return [c for (c,) in rows if c != self.consumer_id]

    def claim_one(self, dead_id: str) -> bytes | None:
        p = self.param
        with self.db(commit=True) as curs:
            curs.execute(
                f"update {self.inflight_table} set consumer = {p} where id = (select id from {self.inflight_table} "
                f"where queue = {p} and consumer = {p} order by id limit 1) returning data",
                (self.consumer_id, self.name, dead_id),
            )
            row = curs.fetchone()
        return None if row is None else bytes(row[0])

    def requeue(self, data: bytes) -> None:
        assert self.consumer_id is not None
        p = self.param
        with self.db(commit=True) as curs:
            curs.execute(
                f"insert into {self.task_table} (queue, data, priority) values ({p}, {p}, {p})",
                (self.name, data, 0),
            )
            self._drop(curs, self.consumer_id, data)
        self._notify_new()

    def end_heartbeat(self) -> None:
        if self.consumer_id is not None:
            self.forget_consumer(self.consumer_id)  # in-flight rows without a heartbeat are recovered

    def forget_consumer(self, consumer_id: str) -> None:
        p = self.param
        with self.db(commit=True) as curs:
            curs.execute(
                f"delete from {self.heartbeat_table} where queue = {p} and consumer = {p}", (self.name, consumer_id)
            )

    def move_due_to_queue(self, ts: Any) -> list[bytes]:
        p = self.param
        with self.db(commit=True) as curs:
            curs.execute(
                f"select id, data from {self.schedule_table} where queue = {p} and timestamp <= {p} "
                "order by timestamp, id",
                (self.name, ts.timestamp()),
            )
            rows = curs.fetchall()
            for row_id, data in rows:
                curs.execute(
                    f"insert into {self.task_table} (queue, data, priority) values ({p}, {p}, {p})",
                    (self.name, data, 0),
                )
                curs.execute(f"delete from {self.schedule_table} where id = {p}", (row_id,))
        if rows:
            self._notify_new()
        return [bytes(data) for _, data in rows]

    def _notify_new(self) -> None:
        """Wake blocked consumers (PostgreSQL's LISTEN/NOTIFY); nothing to do on SQLite."""


class SqliteBroker(_SqlLeases, SqliteStorage):
    """The embedded default: one SQLite file holds both queues."""

    def __init__(self, name: str, filename: str, **kwargs: Any) -> None:
        super().__init__(name, filename=filename, create_tables=False, **kwargs)
        self.ddl = [*self.ddl, *self._expiry_ddl(), *self._lease_ddl()]

    def dequeue(self) -> bytes | None:
        if self.consumer_id is None:
            return super().dequeue()  # type: ignore[no-any-return]
        # The same cheap look before the exclusive lock as huey's own dequeue.
        if not self.sql("select 1 from task where queue = ? limit 1", (self.name,), results=True):
            return None
        with self.db(commit=True) as curs:
            return self._take(curs)

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


class PostgresBroker(_SqlLeases, PostgresStorage):
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
        prefix = self.table_kv.removesuffix("_kv")
        self.task_table, self.schedule_table = self.table_task, self.table_schedule
        self.inflight_table, self.heartbeat_table = f"{prefix}_inflight", f"{prefix}_heartbeat"
        self.ddl = [*self.ddl, *self._expiry_ddl(), *self._lease_ddl()]

    def _dequeue(self) -> bytes | None:
        if self.consumer_id is None:
            return super()._dequeue()  # type: ignore[no-any-return]
        with self.db(commit=True) as curs:
            return self._take(curs)

    def _notify_new(self) -> None:
        self.sql("select pg_notify(%s, %s)", (self.channel, ""))

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
