"""Registry reads only the web service needs: throughput per minute, counts by name, durations.

Each is one grouped query that the registry's indexes serve (``state,
finished_at`` for the time windows, ``parent_id`` for a run's pieces).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import peewee

from meingym_tasks.db.database import is_sqlite
from meingym_tasks.names import QUEUES
from meingym_tasks.registry.models import COMPLETE, FAILED, STATES, JobRecord
from meingym_tasks.registry.queries import iso

MINUTE_FORMAT = "%Y-%m-%d %H:%M"


def _minute_of(column: peewee.Field) -> peewee.Function:
    """The UTC minute of a timestamp column as ``YYYY-MM-DD HH:MM`` text, on SQLite and PostgreSQL alike."""
    # The formats are literals, not parameters: PostgreSQL must see the same expression in GROUP BY.
    # coerce(False): the text must not be parsed back into a datetime by the column's converter.
    if is_sqlite():
        return peewee.fn.strftime(peewee.SQL(f"'{MINUTE_FORMAT}'"), column).coerce(False)
    return peewee.fn.to_char(column, peewee.SQL("'YYYY-MM-DD HH24:MI'")).coerce(False)


def throughput(now: datetime, minutes: int = 60) -> dict[str, list[dict[str, Any]]]:
    """Jobs completed and failed per minute and queue over the last ``minutes`` minutes, oldest first.

    ``now`` is naive UTC. Every minute is listed (zeros included); the last
    entry is the current, still filling, minute.
    """
    current = now.replace(second=0, microsecond=0)
    first = current - timedelta(minutes=minutes - 1)
    slots = [first + timedelta(minutes=i) for i in range(minutes)]
    keys = [slot.strftime(MINUTE_FORMAT) for slot in slots]
    found: dict[tuple[str, str, str], int] = {}
    minute = _minute_of(JobRecord.finished_at)
    query = (
        JobRecord.select(JobRecord.queue, JobRecord.state, minute.alias("minute"), peewee.fn.COUNT(JobRecord.job_id))
        .where(JobRecord.state.in_([COMPLETE, FAILED]), JobRecord.finished_at >= first)
        .group_by(JobRecord.queue, JobRecord.state, minute)
    )
    for queue, state, at, number in query.tuples().iterator():
        found[(queue, state, at)] = int(number)
    queues = list(QUEUES) + sorted({q for q, _, _ in found} - set(QUEUES))
    return {
        queue: [
            {
                "minute": iso(slot),
                "complete": found.get((queue, COMPLETE, key), 0),
                "failed": found.get((queue, FAILED, key), 0),
            }
            for slot, key in zip(slots, keys, strict=True)
        ]
        for queue in queues
    }


def counts_by_name() -> list[tuple[str, str, str, int]]:
    """``(queue, name, state, number)`` for every combination that has records."""
    query = JobRecord.select(
        JobRecord.queue, JobRecord.name, JobRecord.state, peewee.fn.COUNT(JobRecord.job_id)
    ).group_by(JobRecord.queue, JobRecord.name, JobRecord.state)
    return [(q, n, s, int(c)) for q, n, s, c in query.tuples().iterator()]


def finished_between(after: datetime, until: datetime) -> list[tuple[str, str, str, float]]:
    """``(queue, name, state, seconds)`` of jobs that completed or failed in ``(after, until]``."""
    query = JobRecord.select(
        JobRecord.queue, JobRecord.name, JobRecord.state, JobRecord.started_at, JobRecord.finished_at
    ).where(
        JobRecord.state.in_([COMPLETE, FAILED]),
        JobRecord.finished_at > after,
        JobRecord.finished_at <= until,
        JobRecord.started_at.is_null(False),
    )
    return [
        (queue, name, state, max(0.0, (finished - started).total_seconds()))
        for queue, name, state, started, finished in query.tuples().iterator()
    ]


def children_counts(parent_id: str) -> dict[str, int]:
    """How many pieces of a run (``update-all-actions`` batches) are in each state."""
    query = (
        JobRecord.select(JobRecord.state, peewee.fn.COUNT(JobRecord.job_id))
        .where(JobRecord.parent_id == parent_id)
        .group_by(JobRecord.state)
    )
    found = {state: int(number) for state, number in query.tuples().iterator()}
    return {state: found[state] for state in STATES if found.get(state)}
