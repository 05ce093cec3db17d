"""The project database: one peewee proxy, bound explicitly from settings.

Models point at :data:`database`, a :class:`peewee.DatabaseProxy`; nothing is
opened until :func:`init_database` binds it and a query runs. SQLite gets WAL,
foreign keys and a busy timeout so that consumers, the CLI and the web service
can share one file.
"""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import urlsplit

import peewee
from playhouse.db_url import connect as db_url_connect

from meingym_tasks.settings import Settings

database = peewee.DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 30_000,
    "synchronous": "normal",
}

_bound_url: str | None = None
_lock = threading.Lock()


def open_database(url: str) -> peewee.Database:
    """A peewee database for ``url`` (not yet connected).

    SQLite's parent directory is created so a fresh data directory works.
    PostgreSQL URLs use psycopg 3 through peewee's own adapter.
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        path = url[len("sqlite:///") :]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return db_url_connect(url, pragmas=SQLITE_PRAGMAS, timeout=30)
    return db_url_connect(url)


def init_database(settings: Settings) -> peewee.Database:
    """Bind :data:`database` to the settings' URL; a no-op when already bound to it."""
    global _bound_url
    with _lock:
        if _bound_url != settings.database_url or database.obj is None:
            if database.obj is not None and not database.is_closed():
                database.close()
            database.initialize(open_database(settings.database_url))
            _bound_url = settings.database_url
    return database.obj


def is_sqlite() -> bool:
    return isinstance(database.obj, peewee.SqliteDatabase)
