"""What the SQLite and PostgreSQL brokers share: result deadlines and reliable fetch in SQL.

huey's ``kv`` table has no expiry column, so an extra ``result_expiry`` table
records deadlines and :meth:`prune_results` (run by a periodic job, off the
hot path) deletes what has expired. A taken message moves to ``inflight``
until its job has ended.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from huey.constants import EmptyData


class SqlExpiry:
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

    def _key(self, key: str) -> str:
        """A key as the kv table stores it (PostgreSQL: text, as huey's own storage does; SQLite: as given)."""
        return key

    def _set_expiry(self, curs: Any, key: str, ttl: float) -> None:
        p = self.param
        curs.execute(
            f"insert into {self.expiry_table} (queue, key, expires) values ({p}, {p}, {p}) "
            "on conflict (queue, key) do update set expires = excluded.expires",
            (self.name, key, time.time() + ttl),
        )

    def put_result(self, key: str, value: bytes, ttl: float, delete: str | None = None) -> None:
        """Store a result for ``ttl`` seconds, deleting the key ``delete`` in the same transaction."""
        p, key = self.param, self._key(key)
        with self.db(commit=True) as curs:
            if delete is not None:
                gone = self._key(delete)
                curs.execute(f"delete from {self.kv_table} where queue = {p} and key = {p}", (self.name, gone))
                curs.execute(f"delete from {self.expiry_table} where queue = {p} and key = {p}", (self.name, gone))
            curs.execute(self.upsert_kv, (self.name, key, value))
            self._set_expiry(curs, key, ttl)

    def _live(self) -> str:
        p = self.param
        return (
            f"not exists (select 1 from {self.expiry_table} e where e.queue = {p} and e.key = {p} and e.expires <= {p})"
        )

    def peek_data(self, key: str) -> Any:
        """The value under ``key``, unless its time to live has passed (then as if absent)."""
        p, key = self.param, self._key(key)
        rows = self.sql(
            f"select value from {self.kv_table} where queue = {p} and key = {p} and {self._live()}",
            (self.name, key, self.name, key, time.time()),
            results=True,
        )
        return bytes(rows[0][0]) if rows else EmptyData

    def has_data_for_key(self, key: str) -> bool:
        return self.peek_data(key) is not EmptyData

    def delete_data(self, key: str) -> bool:
        p, key = self.param, self._key(key)
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

    def put_if_empty(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        """Claim ``key`` unless a live (unexpired) value holds it: True for exactly one of any racing callers.

        huey's own SQL storages claim in one statement (``insert ... on conflict do
        nothing``); a look followed by a write is not atomic under PostgreSQL's READ
        COMMITTED. So here too: an expired claim is deleted by one statement (its
        deadline in the WHERE), then one insert decides, and only its winner writes the
        deadline, in the same transaction. Racers blocked on the expired row find it
        gone once the winner commits and lose at the insert.
        """
        p, kv, expiry, key = self.param, self.kv_table, self.expiry_table, self._key(key)
        now = time.time()
        with self.db(commit=True) as curs:
            curs.execute(
                f"delete from {kv} where queue = {p} and key = {p} and exists (select 1 from {expiry} e "
                f"where e.queue = {kv}.queue and e.key = {kv}.key and e.expires <= {p})",
                (self.name, key, now),
            )
            curs.execute(
                f"insert into {kv} (queue, key, value) values ({p}, {p}, {p}) on conflict (queue, key) do nothing",
                (self.name, key, value),
            )
            if curs.rowcount != 1:
                return False
            if ttl is not None:
                self._set_expiry(curs, key, ttl)
            else:  # a deadline left from an expired claim must not end this one
                curs.execute(f"delete from {expiry} where queue = {p} and key = {p}", (self.name, key))
            return True

    def swap(self, key: str, expected: bytes, new: bytes | None, ttl: float | None = None) -> bool:
        """Replace (or delete) ``key``'s live value if it is ``expected``: one conditional statement decides."""
        p, kv, expiry, key = self.param, self.kv_table, self.expiry_table, self._key(key)
        match = f"where queue = {p} and key = {p} and value = {p} and {self._live()}"
        params = (self.name, key, expected, self.name, key, time.time())
        with self.db(commit=True) as curs:
            if new is None:
                curs.execute(f"delete from {kv} {match}", params)
            else:
                curs.execute(f"update {kv} set value = {p} {match}", (new, *params))
            if curs.rowcount != 1:
                return False
            if new is not None and ttl is not None:
                self._set_expiry(curs, key, ttl)
            else:
                curs.execute(f"delete from {expiry} where queue = {p} and key = {p}", (self.name, key))
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


class SqlLeases(SqlExpiry):
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

    def ack(
        self,
        messages: Sequence[bytes],
        results: Sequence[tuple[str, bytes, float]] = (),
        deletes: Sequence[str] = (),
    ) -> None:
        """Drop finished messages from our in-flight rows, writing their ``results`` and ``deletes`` first.

        One transaction for the whole batch (one commit, where a result written
        per job took a write transaction of its own).
        """
        acking = self.consumer_id is not None and bool(messages)
        if not acking and not results and not deletes:
            return
        p, kv, expiry = self.param, self.kv_table, self.expiry_table
        with self.db(commit=True) as curs:
            if deletes:  # revoke flags: written by put_data, so they never have a deadline row
                gone = [(self.name, self._key(key)) for key in deletes]
                curs.executemany(f"delete from {kv} where queue = {p} and key = {p}", gone)
            if results:
                now = time.time()
                curs.executemany(self.upsert_kv, [(self.name, self._key(key), value) for key, value, _ in results])
                curs.executemany(
                    f"insert into {expiry} (queue, key, expires) values ({p}, {p}, {p}) "
                    "on conflict (queue, key) do update set expires = excluded.expires",
                    [(self.name, self._key(key), now + ttl) for key, _, ttl in results],
                )
            if acking:
                assert self.consumer_id is not None
                for data in messages:
                    self._drop(curs, self.consumer_id, data)

    def taken_flags(self, task_id: str, name: str) -> list[bytes | None] | None:
        return None  # taking a message reads no flags here: the revoke check reads them

    def beat(self, ttl: float) -> None:
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
        # Racing reapers on PostgreSQL (READ COMMITTED): "skip locked" lets each take a different
        # row, and the outer "consumer = dead" makes a reaper that still meets a row another one
        # just claimed (re-checked once that one commits) take nothing rather than take it twice.
        skip_locked = " for update skip locked" if p == "%s" else ""
        with self.db(commit=True) as curs:
            curs.execute(
                f"update {self.inflight_table} set consumer = {p} where queue = {p} and consumer = {p} and id = "
                f"(select id from {self.inflight_table} where queue = {p} and consumer = {p} "
                f"order by id limit 1{skip_locked}) returning data",
                (self.consumer_id, self.name, dead_id, self.name, dead_id),
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
            # Locked on PostgreSQL, so that two schedulers of one queue never both move a message.
            curs.execute(
                f"select id, data from {self.schedule_table} where queue = {p} and timestamp <= {p} "
                "order by timestamp, id" + (" for update skip locked" if p == "%s" else ""),
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
