"""The embedded default broker: one SQLite file holds both queues."""

from __future__ import annotations

from typing import Any

from huey.storage import SqliteStorage

from meingym_tasks.queue.brokers.sql import SqlLeases


class SqliteBroker(SqlLeases, SqliteStorage):
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
