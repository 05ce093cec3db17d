"""The project database: one peewee proxy, bound explicitly from settings.

Models point at :data:`database`, a :class:`peewee.DatabaseProxy`; nothing is
opened until :func:`init_database` binds it and a query runs. SQLite gets WAL,
foreign keys and a busy timeout so that consumers, the CLI and the web service
can share one file.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import peewee
from playhouse.db_url import connect as db_url_connect
from playhouse.db_url import parse as parse_db_url
from playhouse.pool import PooledDatabase, PooledPostgresqlDatabase

from meingym_tasks.settings import Settings

database = peewee.DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 30_000,
    "synchronous": "normal",
}

#: The web's pool, per process: up to one connection per thread of uvicorn's thread pool (40);
#: beyond that a request waits up to ``timeout`` seconds; idle ones are replaced after 5 minutes.
POSTGRES_POOL = {"max_connections": 40, "stale_timeout": 300, "timeout": 30}

POOLED_SCHEMES = ("postgres", "postgresql")

_bound_url: str | None = None
_lock = threading.Lock()


class WebConnectionPool(PooledPostgresqlDatabase):
    """peewee's pool, without the ``SELECT 1`` check-out round trip for a connection just handed back.

    peewee pings every idle connection it hands out (its status flag is only
    local); under load a connection comes back and goes out again within
    milliseconds, and the ping is one of a request's few round trips. One that
    rests longer than :attr:`TRUST_SECONDS` is pinged as before; if the server
    dropped a fresh one meanwhile, that request fails (503) and the connection
    is discarded when it comes back.
    """

    TRUST_SECONDS = 1.0

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # Weak keys: a connection the pool closes for good leaves no entry behind.
        self._returned_at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    def _close(self, conn: Any, close_conn: bool = False) -> None:
        self._returned_at[conn] = time.monotonic()
        super()._close(conn, close_conn)

    def _is_closed(self, conn: Any) -> bool:
        returned = self._returned_at.pop(conn, None)
        if returned is not None and time.monotonic() - returned < self.TRUST_SECONDS:
            return bool(getattr(conn, "closed", True))
        return bool(super()._is_closed(conn))


def private_sqlite_file(path: Path) -> None:
    """Create the SQLite file ``path`` readable by this user only (0600), in a 0700 directory if it makes one.

    The embedded files hold users' emails and names and job results; SQLite
    would create them 0644 (the umask). Its ``-wal`` and ``-shm`` files take the
    main file's mode. An existing file or directory keeps its mode (``config
    check`` warns when others can read it): an operator may have chosen it.
    """
    # Best effort: where the path cannot be made (a file in the way, no permission), opening it
    # fails next with SQLite's own error, which callers already turn into "unavailable".
    with contextlib.suppress(OSError):
        if not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def open_database(url: str, pooled: bool = False) -> peewee.Database:
    """A peewee database for ``url`` (not yet connected).

    SQLite's file is created empty and private (:func:`private_sqlite_file`)
    so a fresh data directory works and nobody else reads it. PostgreSQL URLs
    use psycopg 3 through peewee's own adapter; ``pooled`` keeps closed
    connections for the next user (see :func:`init_database`).
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        path = url[len("sqlite:///") :]
        if path and path != ":memory:" and not path.startswith("file:"):
            private_sqlite_file(Path(path))
        return db_url_connect(url, pragmas=SQLITE_PRAGMAS, timeout=30)
    if pooled and scheme in POOLED_SCHEMES:
        return WebConnectionPool(**parse_db_url(url), **POSTGRES_POOL)
    return db_url_connect(url)


def init_database(settings: Settings, pooled: bool = False) -> peewee.Database:
    """Bind :data:`database` to the settings' URL; a no-op when already bound to it.

    ``pooled`` is for the web service, which opens "a connection" per request:
    a new PostgreSQL connection costs a backend process (3 ms here), a pooled
    one is handed back on close and checked on the next check-out. Only the
    web asks for it: a consumer keeps one connection per thread anyway, and
    one with process workers must not hand a pooled connection to a fork.
    Once pooled, a process stays pooled for that URL.
    """
    global _bound_url
    with _lock:
        url = settings.database_url
        upgrade = pooled and urlsplit(url).scheme in POOLED_SCHEMES and not isinstance(database.obj, PooledDatabase)
        if _bound_url != url or database.obj is None or upgrade:
            if database.obj is not None and not database.is_closed():
                database.close()
            database.initialize(open_database(settings.database_url, pooled=pooled))
            _bound_url = settings.database_url
    return database.obj


def close_database() -> None:
    """Close this thread's connection, if open (before forking: a child must open its own)."""
    if database.obj is not None and not database.is_closed():
        database.close()


def commit_without_waiting_for_disk() -> None:
    """On PostgreSQL, let the current transaction's commit return before its WAL reaches the disk.

    For writes that something else can redo: the web's record of an accepted
    job, whose message the broker already holds (a consumer writes the record
    again when it runs the job). A database crash in the next fraction of a
    second can lose such a record, never a job, and corrupts nothing; the
    request no longer waits for an fsync. SQLite (WAL, ``synchronous=normal``)
    already commits without one.
    """
    if isinstance(database.obj, peewee.PostgresqlDatabase):
        database.execute_sql("SET LOCAL synchronous_commit TO OFF")


def is_sqlite() -> bool:
    return isinstance(database.obj, peewee.SqliteDatabase)
