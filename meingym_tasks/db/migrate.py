"""Schema migrations: peewee's ``playhouse.migrations`` runner over ``migrations/``.

The migration files are plain scripts shipped as package data (the folder is
deliberately not a Python package: the runner executes each file from its path,
and names such as ``0001_initial`` are not importable anyway). Applied names are
recorded in the ``schema_migration`` table, so :func:`migrate` is idempotent.
Nothing runs at import; callers pass the database explicitly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import peewee
from playhouse.migrations import Runner

__all__ = ["MIGRATIONS_DIR", "migrate", "pending"]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Any constant works; it names "the meingym schema" among PostgreSQL advisory locks.
_ADVISORY_LOCK_KEY = 0x6D65696E67796D  # "meingym"


def _unwrap(db: peewee.Database) -> peewee.Database:
    return db.obj if isinstance(db, peewee.DatabaseProxy) else db


def _runner(db: peewee.Database) -> Runner:
    return Runner(_unwrap(db), str(MIGRATIONS_DIR))


def pending(db: peewee.Database) -> list[str]:
    """Names of the migrations not yet applied to ``db``, in the order they would run."""
    return [m.name for m in _runner(db).status() if m.path is not None and not m.applied]


def migrate(db: peewee.Database) -> list[str]:
    """Apply the pending migrations to ``db``; returns their names (``[]`` when up to date).

    Each migration runs in its own transaction where the database has
    transactional DDL (both SQLite and PostgreSQL do). On PostgreSQL a session
    advisory lock makes concurrent starts (web service and consumers) take
    turns instead of racing to create the same tables.
    """
    bound = _unwrap(db)
    with _exclusive(bound):
        return list(_runner(bound).up())


@contextmanager
def _exclusive(db: peewee.Database) -> Iterator[None]:
    if not isinstance(db, peewee.PostgresqlDatabase):
        yield
        return
    db.execute_sql("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK_KEY,))
    try:
        yield
    finally:
        db.execute_sql("SELECT pg_advisory_unlock(%s)", (_ADVISORY_LOCK_KEY,))
