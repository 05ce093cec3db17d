"""Reading and maintaining the registry: jobs, counts, retention.

Listing is newest first with keyset pagination on ``(enqueued_at, job_id)``,
which the indexes serve for every filter, so a page costs the same at record
one million as at record one.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import peewee

from meingym_tasks.clock import utcnow
from meingym_tasks.db.database import database
from meingym_tasks.db.fields import write_transaction
from meingym_tasks.exceptions import InvalidJobRequest, UnknownJob
from meingym_tasks.names import QUEUES
from meingym_tasks.queue.reliable import ALIVE_INTERVAL
from meingym_tasks.registry.models import (
    COMPLETE,
    EXPIRED,
    FAILED,
    FINISHED,
    INTERRUPTED,
    REVOKED,
    RUNNING,
    STATES,
    ConsumerRecord,
    DeadLetter,
    JobAttempt,
    JobCount,
    JobRecord,
)
from meingym_tasks.settings import Settings

MAX_PAGE = 500

#: A consumer whose last registry heartbeat is older than this is not alive.
ALIVE_TIMEOUT = 3 * ALIVE_INTERVAL


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=UTC).isoformat()


def record_dict(record: JobRecord) -> dict[str, Any]:
    """A record as plain JSON-ready data (times as ISO-8601 UTC)."""
    done, total = record.progress_done, record.progress_total
    percent = None
    if total:
        percent = round(100.0 * min(done or 0, total) / total, 1)
    elif record.state == COMPLETE and total == 0:
        percent = 100.0
    return {
        "job_id": record.job_id,
        "queue": record.queue,
        "name": record.name,
        "parent_id": record.parent_id,
        "arguments": record.arguments,
        "state": record.state,
        "attempts": record.attempts,
        "max_attempts": record.max_attempts,
        "enqueued_at": iso(record.enqueued_at),
        "scheduled_for": iso(record.scheduled_for),
        "started_at": iso(record.started_at),
        "finished_at": iso(record.finished_at),
        "next_attempt_at": iso(record.next_attempt_at),
        "consumer": record.consumer,
        "progress": {"done": done, "total": total, "percent": percent, "message": record.progress_message},
        "result": record.result,
        "error": record.error,
        "cancel_requested": record.cancel_requested,
        "recoveries": record.recoveries,
        "updated_at": iso(record.updated_at),
    }


def get_record(job_id: str) -> JobRecord:
    record = JobRecord.get_or_none(JobRecord.job_id == job_id)
    if record is None:
        raise UnknownJob(job_id)
    return record


def get_job(job_id: str) -> dict[str, Any]:
    """The full record of ``job_id`` with every failed attempt (error and traceback)."""
    job = record_dict(get_record(job_id))
    attempts = JobAttempt.select().where(JobAttempt.job_id == job_id).order_by(JobAttempt.id)
    job["failed_attempts"] = [
        {
            "attempt": a.attempt,
            "error": a.error,
            "traceback": a.traceback,
            "consumer": a.consumer,
            "failed_at": iso(a.failed_at),
        }
        for a in attempts
    ]
    return job


def _check_choice(kind: str, value: str | None, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value is not None and value not in allowed:
        raise InvalidJobRequest(f"unknown {kind} {value!r}; allowed: {', '.join(allowed)}")


def encode_cursor(record: JobRecord) -> str:
    raw = f"{record.enqueued_at.isoformat()}|{record.job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, job_id = raw.split("|", 1)
        return datetime.fromisoformat(at), job_id
    except ValueError:
        raise InvalidJobRequest(f"cursor {cursor!r} is not valid; pass the 'next' value of a previous page") from None


def list_jobs(
    state: str | None = None,
    queue: str | None = None,
    name: str | None = None,
    limit: int = 50,
    before: str | None = None,
    children: bool = False,
) -> dict[str, Any]:
    """Jobs newest first: ``{"jobs": [...], "next": cursor or None}``; pass ``next`` as ``before``.

    The pieces of a run (the batches of ``update-all-actions``) are left out
    unless ``children`` is true or ``name`` asks for them.
    """
    _check_choice("state", state, STATES)
    _check_choice("queue", queue, QUEUES)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidJobRequest(f"limit {limit!r} is not allowed; expected a whole number from 1 to {MAX_PAGE}")
    query = JobRecord.select()
    if state is not None:
        query = query.where(JobRecord.state == state)
    if queue is not None:
        query = query.where(JobRecord.queue == queue)
    if name is not None:
        query = query.where(JobRecord.name == name)
    elif not children:
        query = query.where(JobRecord.parent_id.is_null())
    if before is not None:
        at, job_id = decode_cursor(before)
        query = query.where(peewee.Tuple(JobRecord.enqueued_at, JobRecord.job_id) < peewee.Tuple(at, job_id))
    rows = list(query.order_by(JobRecord.enqueued_at.desc(), JobRecord.job_id.desc()).limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    return {"jobs": [record_dict(r) for r in rows], "next": encode_cursor(rows[-1]) if more and rows else None}


#: Delta rows (PostgreSQL) beyond which reading the counts folds them up first.
COMPACT_AFTER = 2_000


def counts() -> dict[str, dict[str, int]]:
    """Number of records per queue and state (every state listed, zeros included).

    Read from ``job_count``, which triggers keep in step with ``job_record``:
    constant time however many records there are.
    """
    result = {queue: dict.fromkeys(STATES, 0) for queue in QUEUES}
    query = JobCount.select(JobCount.queue, JobCount.state, peewee.fn.SUM(JobCount.n), peewee.fn.COUNT(1)).group_by(
        JobCount.queue, JobCount.state
    )
    rows = 0
    for queue, state, number, parts in query.tuples().iterator():
        rows += parts
        if number:
            result.setdefault(queue, dict.fromkeys(STATES, 0))[state] = int(number)
    if rows > COMPACT_AFTER:
        compact_counts()
    return result


def compact_counts() -> int:
    """Fold PostgreSQL's delta rows into one row per key; returns the rows left (0 on SQLite: nothing to do).

    One statement: rows another transaction appends meanwhile are not in its
    snapshot and stay, so concurrent writers and compactions lose nothing.
    """
    if not isinstance(database.obj, peewee.PostgresqlDatabase):
        return 0
    cursor = database.execute_sql(
        "WITH folded AS (DELETE FROM job_count RETURNING queue, state, n) "
        "INSERT INTO job_count (queue, state, n) SELECT queue, state, SUM(n) FROM folded "
        "GROUP BY queue, state HAVING SUM(n) <> 0"
    )
    return max(0, int(cursor.rowcount or 0))


def consumers_alive(now: datetime | None = None) -> list[dict[str, Any]]:
    """Consumers whose last heartbeat is recent, per queue."""
    now = now or utcnow()
    since = now - timedelta(seconds=ALIVE_TIMEOUT)
    rows = ConsumerRecord.select().where(ConsumerRecord.last_seen_at >= since).order_by(ConsumerRecord.queue)
    return [
        {
            "consumer_id": c.consumer_id,
            "queue": c.queue,
            "host": c.host,
            "pid": c.pid,
            "workers": c.workers,
            "worker_type": c.worker_type,
            "started_at": iso(c.started_at),
            "last_seen_at": iso(c.last_seen_at),
        }
        for c in rows
    ]


def finished_since(since: datetime) -> dict[str, dict[str, int]]:
    """Jobs completed and failed per queue since ``since``."""
    result = {queue: {COMPLETE: 0, FAILED: 0} for queue in QUEUES}
    query = (
        JobRecord.select(JobRecord.queue, JobRecord.state, peewee.fn.COUNT(JobRecord.job_id))
        .where(JobRecord.state.in_([COMPLETE, FAILED]), JobRecord.finished_at >= since)
        .group_by(JobRecord.queue, JobRecord.state)
    )
    for queue, state, number in query.tuples().iterator():
        result.setdefault(queue, {COMPLETE: 0, FAILED: 0})[state] = number
    return result


def purge(state: str | None = None, older_than: timedelta | None = None, now: datetime | None = None) -> int:
    """Delete finished records (all, or of one state), optionally only those finished before a cutoff."""
    purgeable = (*FINISHED, INTERRUPTED)
    _check_choice("state", state, purgeable)
    condition = JobRecord.state.in_([state] if state else purgeable)
    if older_than is not None:
        condition &= JobRecord.finished_at < (now or utcnow()) - older_than
    return _delete(condition)


def _delete(condition: peewee.Expression) -> int:
    """Delete the records matching ``condition`` and their attempts, together (a retry in between keeps both)."""
    with write_transaction():
        ids = JobRecord.select(JobRecord.job_id).where(condition)
        JobAttempt.delete().where(JobAttempt.job_id.in_(ids)).execute()
        return int(JobRecord.delete().where(condition).execute())


def prune(settings: Settings, now: datetime | None = None) -> int:
    """Retention (Bull's removeOnComplete): old and surplus completed records, old failures, dead consumers."""
    now = now or utcnow()
    removed = _delete(
        (JobRecord.state == COMPLETE) & (JobRecord.finished_at < now - timedelta(seconds=settings.result_ttl))
    )
    removed += _delete(
        JobRecord.state.in_([FAILED, REVOKED, EXPIRED, INTERRUPTED])
        & (JobRecord.finished_at < now - timedelta(seconds=settings.failed_result_ttl))
    )
    newest_kept = (
        JobRecord.select(JobRecord.finished_at)
        .where(JobRecord.state == COMPLETE)
        .order_by(JobRecord.finished_at.desc())
        .offset(settings.keep_complete_count)
        .limit(1)
        .scalar()
    )
    if newest_kept is not None:
        removed += _delete((JobRecord.state == COMPLETE) & (JobRecord.finished_at <= newest_kept))
    ConsumerRecord.delete().where(ConsumerRecord.last_seen_at < now - timedelta(days=1)).execute()
    compact_counts()
    return removed


def running_count(queue: str) -> int:
    return int(JobRecord.select().where(JobRecord.queue == queue, JobRecord.state == RUNNING).count())


def dead_letters(queue: str | None = None, limit: int = 50) -> dict[str, Any]:
    """Messages that could not run, newest first, with the total count per queue."""
    _check_choice("queue", queue, QUEUES)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidJobRequest(f"limit {limit!r} is not allowed; expected a whole number from 1 to {MAX_PAGE}")
    query = DeadLetter.select()
    if queue is not None:
        query = query.where(DeadLetter.queue == queue)
    rows = query.order_by(DeadLetter.id.desc()).limit(limit)
    totals = dict.fromkeys(QUEUES, 0)
    for name, number in (
        DeadLetter.select(DeadLetter.queue, peewee.fn.COUNT(DeadLetter.id))
        .group_by(DeadLetter.queue)
        .tuples()
        .iterator()
    ):
        totals[name] = number
    return {
        "dead_letters": [
            {
                "id": d.id,
                "queue": d.queue,
                "reason": d.reason,
                "size": d.size,
                "payload_hex": d.payload,
                "consumer": d.consumer,
                "received_at": iso(d.received_at),
            }
            for d in rows
        ],
        "counts": totals,
    }
