"""One stack (plain huey or the full meingym-tasks stack) on one broker, ready for a measurement.

Every measurement starts from an empty broker and an empty registry: Redis is
flushed, each SQLite measurement gets fresh files, and on PostgreSQL both
stacks' broker tables are dropped (each stack creates its own on first use)
and the registry's tables emptied. The registry is where production keeps it:
PostgreSQL behind the Redis and PostgreSQL brokers, SQLite behind the embedded
default.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from huey import Huey, RedisHuey

from bench.noop import FULL, PLAIN_POSTGRES_PREFIX, Stack, plain_queue
from bench.services import BenchEnv, bind_database, clear_postgres
from meingym_tasks.db.database import database
from meingym_tasks.settings import Settings

BROKERS = ("redis", "sqlite", "postgres")
REGISTRY_TABLES = ("job_record", "job_attempt", "job_consumer", "job_dead_letter")
#: Table prefix of the full stack's PostgreSQL broker (``MeinGymHuey.get_storage``).
FULL_POSTGRES_PREFIX = "meingym_queue"


def registry_of(broker: str) -> str:
    return "sqlite" if broker == "sqlite" else "postgresql"


@dataclasses.dataclass
class Prepared:
    """A stack bound to a fresh broker: what the producer calls, and what its consumer is told."""

    name: str
    broker: str
    stack: Stack
    #: The plain consumer's broker: a Redis URL, a SQLite file or a PostgreSQL DSN.
    location: str
    #: The environment of the full stack's processes (the plain consumer ignores it).
    app_env: dict[str, str]

    @property
    def queue(self) -> Huey:
        return self.stack.queue

    def close(self) -> None:
        queue = self.stack.queue
        if self.name == "full":
            FULL.queue.close()  # type: ignore[attr-defined]
            if not database.is_closed():
                database.close()
        elif isinstance(queue, RedisHuey):
            queue.storage.pool.disconnect()  # huey's RedisStorage has no close()
        else:
            queue.storage.close()


def drop_broker_tables(postgres_url: str) -> None:
    """Drop both stacks' PostgreSQL broker tables (each creates its own again on first use)."""
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True, connect_timeout=5) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "select tablename from pg_tables where schemaname = current_schema() "
                "and (tablename like %s or tablename like %s)",
                (f"{FULL_POSTGRES_PREFIX}_%", f"{PLAIN_POSTGRES_PREFIX}_%"),
            )
        ]
        if names:
            conn.execute("drop table if exists " + ", ".join(f'"{name}"' for name in names) + " cascade")


def prepare(env: BenchEnv, name: str, broker: str, data_dir: Path, **extra_env: str) -> Prepared:
    """``name`` ("plain" or "full") on a fresh ``broker``, its registry emptied."""
    if broker not in BROKERS:
        raise ValueError(f"unknown broker {broker!r}")
    postgres_url = str(env.postgres_url)
    if broker == "redis":
        env.flush_redis()
        location = env.redis_url
        broker_url, database_url = env.redis_url, postgres_url
    elif broker == "postgres":
        drop_broker_tables(postgres_url)
        location = broker_url = database_url = postgres_url
    else:
        location = str(data_dir / "queue.db")
        broker_url, database_url = f"sqlite:///{location}", f"sqlite:///{data_dir / 'meingym.db'}"
    app_env = env.app_env(data_dir, broker_url, database_url, **extra_env)
    stack: Stack
    if name == "full":
        settings = Settings.from_env(app_env)
        bound = bind_database(settings)
        if registry_of(broker) == "postgresql":
            clear_postgres(bound, *REGISTRY_TABLES)
        FULL.queue.configure(settings)  # type: ignore[attr-defined]
        stack = FULL
    else:
        stack = plain_queue(broker, location)
    return Prepared(name, broker, stack, location, app_env)


def full_checks(report: dict[str, Any], queue_name: str) -> dict[str, Any]:
    """The full stack's own checks: every record complete, nothing left unacknowledged."""
    from meingym_tasks.registry.models import COMPLETE, JobRecord

    complete = JobRecord.select().where(JobRecord.queue == queue_name, JobRecord.state == COMPLETE)
    return {
        "records_complete": complete.count(),
        "unacknowledged": report["held"],
        "registry_backlog_at_last_job": report.get("backlog_at_last"),
    }
