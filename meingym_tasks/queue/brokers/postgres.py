"""PostgreSQL as broker, for deployments that want no Redis."""

from __future__ import annotations

import time
from typing import Any

from huey.storage import PostgresStorage

from meingym_tasks.queue.brokers.sql import SqlLeases


class PostgresBroker(SqlLeases, PostgresStorage):
    """PostgreSQL as broker, for deployments that want no Redis."""

    param = "%s"
    _key = PostgresStorage._key  # keys as text, as huey's own PostgreSQL storage stores them

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
        """Move the next message from the queue to our in-flight rows: one statement, atomic by itself.

        huey takes a message with one ``delete ... returning``; a transaction of
        select, delete and insert here cost five round trips (begin and commit
        included). The delete and the insert share one statement instead (a
        data-modifying ``with``), which PostgreSQL runs in a transaction of its own.
        """
        if self.consumer_id is None:
            return super()._dequeue()  # type: ignore[no-any-return]
        task, inflight = self.task_table, self.inflight_table
        with self.db() as curs:
            curs.execute(
                f"with taken as (delete from {task} where id = (select id from {task} where queue = %s "
                "order by priority desc, id limit 1 for update skip locked) returning data, priority) "
                f"insert into {inflight} (queue, consumer, data, priority, taken_at) "
                "select %s, %s, data, priority, %s from taken returning data",
                (self.name, self.name, self.consumer_id, time.time()),
            )
            row = curs.fetchone()
        return None if row is None else bytes(row[0])

    def _notify_new(self) -> None:
        self.sql("select pg_notify(%s, %s)", (self.channel, ""))

    @property
    def conn(self) -> Any:
        conn = PostgresStorage.conn.fget(self)  # type: ignore[attr-defined]
        if not self._schema_ready:
            # "create table if not exists" is not safe against itself: two processes creating a
            # table at once fail one with a unique violation in pg_type (both consumers starting
            # on a new database). One transaction under an advisory lock makes them take turns.
            with conn.transaction(), conn.cursor() as curs:
                curs.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"meingym-tasks ddl {self.table_kv}",))
                for sql in self.ddl:
                    curs.execute(sql)
            self._schema_ready = True
        return conn
