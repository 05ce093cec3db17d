"""SQL statements and transactions per job, counted inside a process (``MEINGYM_BENCH_COUNT_SQL=1``).

Redis counts its own commands (``INFO commandstats``); SQLite has no server and
the bench's PostgreSQL has no ``pg_stat_statements``, so statements are counted
in the client: every SQLite connection gets a trace callback (called once per
executed statement, so each row of an ``executemany`` counts), and psycopg's
cursors are wrapped. Each connection is labelled by who opened it: ``broker``
(huey's storage) or ``registry`` (peewee). Counting costs a few microseconds a
statement, so the bench counts in runs of their own, never in timed ones.
"""

from __future__ import annotations

import collections
import functools
import sqlite3
import threading
import traceback
from typing import Any

#: label -> {"statements": n, "commits": n}
counts: collections.defaultdict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
_lock = threading.Lock()
_labels: dict[int, str] = {}


def _opener() -> str:
    """Who is opening a connection: huey's storage (the broker) or peewee (the registry)."""
    for frame in reversed(traceback.extract_stack(limit=30)):
        filename = frame.filename.replace("\\", "/")
        if "/meingym_tasks/queue/" in filename or "/huey/" in filename:
            return "broker"
        if "/peewee.py" in filename or "/playhouse/" in filename:
            return "registry"
    return "other"


def _count(label: str, statement: str) -> None:
    head = statement.lstrip()[:6].lower()
    with _lock:
        bucket = counts[label]
        bucket["statements"] += 1
        if head.startswith("commit") or head.startswith("end"):
            bucket["commits"] += 1


def install() -> None:
    """Count from now on, in this process."""
    connect = sqlite3.connect

    @functools.wraps(connect)
    def counted_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)
        label = _opener()
        conn.set_trace_callback(lambda statement: _count(label, statement))
        return conn

    sqlite3.connect = counted_connect  # type: ignore[assignment]
    try:
        import psycopg
    except ImportError:
        return
    pg_connect = psycopg.connect

    @functools.wraps(pg_connect)
    def counted_pg_connect(*args: Any, **kwargs: Any) -> Any:
        conn = pg_connect(*args, **kwargs)
        _labels[id(conn)] = _opener()
        return conn

    psycopg.connect = counted_pg_connect  # type: ignore[assignment]

    def wrap(method_name: str, per_row: bool = False) -> None:
        original = getattr(psycopg.Cursor, method_name)

        @functools.wraps(original)
        def counted(self: Any, query: Any, params: Any = None, *args: Any, **kwargs: Any) -> Any:
            label = _labels.get(id(self.connection), "other")
            text = query if isinstance(query, str) else str(query)
            if per_row and params is not None:
                params = list(params)
                for _ in params:
                    _count(label, text)
            else:
                _count(label, text)
            return original(self, query, params, *args, **kwargs)

        setattr(psycopg.Cursor, method_name, counted)

    wrap("execute")
    wrap("executemany", per_row=True)
    wrap("copy")
    original_commit = psycopg.Connection.commit

    @functools.wraps(original_commit)
    def counted_commit(self: Any) -> None:
        with _lock:
            counts[_labels.get(id(self), "other")]["commits"] += 1
        original_commit(self)

    psycopg.Connection.commit = counted_commit  # type: ignore[method-assign]


def snapshot() -> dict[str, dict[str, int]]:
    with _lock:
        return {label: dict(counter) for label, counter in counts.items()}
