"""The Python way in: schedule jobs and read their results.

Every helper validates its arguments before anything is enqueued (bad input
raises :class:`InvalidJobRequest` naming the problem and what is allowed) and
returns ``{"job_id": ...}``. An unreachable broker raises
:class:`BrokerUnavailable`. Importing this module connects to nothing.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from huey.constants import EmptyData
from huey.utils import Error

from meingym_tasks.db.database import init_database
from meingym_tasks.db.fields import write_transaction
from meingym_tasks.exceptions import BrokerUnavailable, InvalidJobRequest, JobStateConflict
from meingym_tasks.jobs.declare import ExistingRun, Job, declared, job_named
from meingym_tasks.names import PROCESS_USER_DATA, SEND_WELCOME_EMAIL, UPDATE_ALL_ACTIONS
from meingym_tasks.queue import single_flight
from meingym_tasks.queue.brokers import broker_errors
from meingym_tasks.queue.queues import ALL_QUEUES, actions_queue, queue_named
from meingym_tasks.registry import queries as registry_queries
from meingym_tasks.registry.models import (
    CANCELLABLE,
    COMPLETE,
    EXPIRED,
    FAILED,
    FINISHED,
    QUEUED,
    RETRYABLE,
    RETRYING,
    REVOKED,
    RUNNING,
    SCHEDULED,
    JobRecord,
)
from meingym_tasks.registry.recorder import flush_all


def enqueue(name: str, /, *, delay: Any = None, eta: datetime | None = None, **arguments: Any) -> dict[str, Any]:
    """Enqueue job ``name`` with ``arguments`` (by parameter name), now, after ``delay`` seconds or at ``eta``.

    The arguments, delay and ETA are checked against the job's declaration
    first (:class:`InvalidJobArguments` names each field at fault). Returns
    ``{"job_id", "state"}``; a single-flight job's answer also says whether it
    ``deduplicated`` (a run was already queued or running: its id is returned).
    """
    job = job_named(name)
    args, kwargs = job.spec.call(arguments)
    with _broker():  # a refused enqueue leaves no record (see Recorder.discard_enqueue)
        if delay is None and eta is None:
            queued = job(*args, **kwargs)
        else:
            queued = job.schedule(args=args, kwargs=kwargs, delay=delay, eta=eta)
    return answer(job, queued)


def answer(job: Job, queued: Any) -> dict[str, Any]:
    """What the helpers return for huey's Result of an enqueue."""
    if isinstance(queued, ExistingRun):
        return {"job_id": queued.id, "deduplicated": True}
    eta = queued.task.eta
    state = SCHEDULED if eta is not None and eta > registry_queries.utcnow() else QUEUED  # the recorder's rule
    result: dict[str, Any] = {"job_id": queued.id, "state": state}
    if job.spec.single_flight:
        result["deduplicated"] = False
    return result


def schedule_actions_update(delay: float | None = None, eta: datetime | None = None) -> dict[str, Any]:
    """Recompute every action's score; a run already queued or running is returned instead.

    Returns ``{"job_id": ..., "deduplicated": bool}``, with the new job's ``state`` unless deduplicated.
    """
    return enqueue(UPDATE_ALL_ACTIONS, delay=delay, eta=eta)


def schedule_user_processing(user_id: int, delay: float | None = None, eta: datetime | None = None) -> dict[str, Any]:
    """Recompute one user's aggregates (``process-user-data``); ``{"job_id": ..., "state": "queued"}``."""
    return enqueue(PROCESS_USER_DATA, user_id=user_id, delay=delay, eta=eta)


def schedule_welcome_email(user_id: int, delay: float | None = None, eta: datetime | None = None) -> dict[str, Any]:
    """Send the welcome email to one user (``send-welcome-email``)."""
    return enqueue(SEND_WELCOME_EMAIL, user_id=user_id, delay=delay, eta=eta)


def job_result(job_id: str) -> dict[str, Any]:
    """The outcome of a job: ``status`` is ``complete`` (with ``result``), ``failed``
    (with ``error`` and ``traceback``) or ``pending`` (queued, scheduled, running,
    retrying, or an id this broker no longer remembers).
    """
    validate_job_id(job_id)
    with _broker():
        for queue in ALL_QUEUES.values():
            raw = queue.storage.peek_data(job_id)
            if raw is EmptyData:
                continue
            value = queue.serializer.deserialize(bytes(raw))
            if isinstance(value, Error):
                return {
                    "job_id": job_id,
                    "queue": queue.name,
                    "status": "failed",
                    "error": value.metadata.get("error"),
                    "retryable": value.metadata.get("retryable", True),
                    "traceback": value.metadata.get("traceback", ""),
                }
            return {"job_id": job_id, "queue": queue.name, "status": "complete", "result": value}
    with _registry():
        record = registry_queries.get_record(job_id)  # UnknownJob when nobody knows this id
    if record.state in FINISHED:  # finished, but its result has expired from the broker
        return {"job_id": job_id, "queue": record.queue, "status": _STATUS[record.state], "state": record.state,
                "result": record.result, "error": record.error}  # fmt: skip
    return {"job_id": job_id, "queue": record.queue, "status": "pending", "state": record.state}


_STATUS = {COMPLETE: "complete", FAILED: "failed", REVOKED: "failed", EXPIRED: "failed"}


# --------------------------------------------------------------------------- the registry


def get_job(job_id: str) -> dict[str, Any]:
    """The registry record of a job: state, attempts, times, progress, result, every failed attempt."""
    validate_job_id(job_id)
    with _registry():
        return registry_queries.get_job(job_id)


def list_jobs(
    state: str | None = None,
    queue: str | None = None,
    name: str | None = None,
    limit: int = 50,
    before: str | None = None,
    children: bool = False,
) -> dict[str, Any]:
    """Jobs newest first, ``{"jobs": [...], "next": cursor}``; pass ``next`` as ``before`` for the next page.

    Batches of a run are listed only with ``children=True`` (or when ``name`` asks for them).
    """
    with _registry():
        return registry_queries.list_jobs(
            state=state, queue=queue, name=name, limit=limit, before=before, children=children
        )


def counts() -> dict[str, dict[str, int]]:
    """Records per queue and state."""
    with _registry():
        return registry_queries.counts()


def queue_overview() -> dict[str, dict[str, Any]]:
    """Per queue: pending and scheduled in the broker, every state's count, finished in the last hour, consumers."""
    with _registry():
        states = registry_queries.counts()
        hour = registry_queries.finished_since(registry_queries.utcnow() - timedelta(hours=1))
        consumers = registry_queries.consumers_alive()
    overview = {}
    with _broker():
        for name, queue in ALL_QUEUES.items():
            overview[name] = {
                "pending": queue.pending_count(),
                "scheduled": queue.scheduled_count(),
                "running": states[name][RUNNING],
                "retrying": states[name][RETRYING],
                "failed": states[name][FAILED],
                "states": states[name],
                "completed_last_hour": hour[name][COMPLETE],
                "failed_last_hour": hour[name][FAILED],
                "consumers": [c for c in consumers if c["queue"] == name],
            }
    return overview


def consumers_alive(queue: str | None = None) -> list[dict[str, Any]]:
    """The consumers with a recent heartbeat, of ``queue`` or of every queue."""
    with _registry():
        consumers = registry_queries.consumers_alive()
    return [c for c in consumers if queue is None or c["queue"] == queue]


def retry_job(job_id: str) -> dict[str, Any]:
    """Run a failed, revoked, expired or interrupted job again: same id, same record, a new attempt."""
    validate_job_id(job_id)
    with _registry(), write_transaction():  # BEGIN IMMEDIATE on SQLite: this reads, then writes
        record = registry_queries.get_record(job_id)
        if record.state not in RETRYABLE:
            raise JobStateConflict(f"job {job_id} is {record.state}; only {', '.join(RETRYABLE)} jobs can be retried")
        queue = queue_named(record.queue)
        try:
            task_class = queue.task_class(record.name)
        except KeyError:
            raise JobStateConflict(f"job {job_id} ran {record.name!r}, which this version does not know") from None
        if _single_flight(record.queue, record.name):
            holder = single_flight.claim(queue, record.name, job_id)
            if holder not in (None, job_id):
                raise JobStateConflict(f"another run of {record.name} is in progress: {holder}")
        settings = queue.settings
        (
            JobRecord.update(
                state=QUEUED,
                max_attempts=record.attempts + settings.job_attempts,
                finished_at=None,
                next_attempt_at=None,
                result=None,
                cancel_requested=False,
                progress_done=None,
                updated_at=registry_queries.utcnow(),
            )
            .where(JobRecord.job_id == job_id)
            .execute()
        )
        arguments = record.arguments or {}
        task = task_class(tuple(arguments.get("args", ())), dict(arguments.get("kwargs", {})), id=job_id)
        with _broker():  # inside the transaction: a broker that refuses leaves the record as it was
            queue.restore_by_id(job_id)  # lift a cancellation
            queue.delete(job_id)  # the old failure must not answer job_result() for the new attempt
            queue.enqueue(task)
    return get_job(job_id)


def cancel_job(job_id: str) -> dict[str, Any]:
    """Cancel a job: a scheduled, queued or retrying one never runs; a running one is asked to stop.

    A running job stops where it reports progress (``update-all-actions``
    stops before its next batch); one that never reports runs to its end.
    """
    validate_job_id(job_id)
    with _registry(), write_transaction():  # BEGIN IMMEDIATE on SQLite: this reads, then writes
        record = registry_queries.get_record(job_id)
        queue = queue_named(record.queue)
        now = registry_queries.utcnow()
        if record.state in CANCELLABLE:
            with _broker():
                queue.revoke_by_id(job_id)
            # cancel_requested too: consumers write their transitions a moment late, so a job
            # recorded as queued may already run; it then stops at its next progress check.
            (
                JobRecord.update(state=REVOKED, cancel_requested=True, finished_at=now, updated_at=now)
                .where(JobRecord.job_id == job_id)
                .execute()
            )
            if _single_flight(record.queue, record.name):
                single_flight.release(queue, record.name, job_id)
        elif record.state == RUNNING:
            JobRecord.update(cancel_requested=True, updated_at=now).where(JobRecord.job_id == job_id).execute()
        else:
            raise JobStateConflict(
                f"job {job_id} is {record.state}; only {', '.join((*CANCELLABLE, RUNNING))} jobs can be cancelled"
            )
    return get_job(job_id)


def dead_letters(queue: str | None = None, limit: int = 50) -> dict[str, Any]:
    """Messages that were never run (bad signature, undecodable, unknown task, wrong arguments,
    or a job that kept killing its consumer), newest first, with counts per queue."""
    with _registry():
        return registry_queries.dead_letters(queue=queue, limit=limit)


def purge(state: str | None = None, older_than: timedelta | None = None) -> int:
    """Delete finished records (of one state, finished longer ago than ``older_than``); returns how many."""
    with _registry():
        return registry_queries.purge(state=state, older_than=older_than)


def wait_for_result(job_id: str, timeout: float | None = None, poll: float = 0.1) -> dict[str, Any]:
    """Poll :func:`job_result` until the job has ended or ``timeout`` seconds passed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = poll
    while True:
        outcome = job_result(job_id)
        if outcome["status"] != "pending":
            return outcome
        if deadline is not None and time.monotonic() >= deadline:
            return outcome
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


# --------------------------------------------------------------------------- validation


def validate_job_id(job_id: str) -> str:
    """Job ids are huey's UUID4 strings; anything else is a typo, not an unknown job."""
    import uuid

    try:
        uuid.UUID(str(job_id))
    except ValueError:
        raise InvalidJobRequest(f"job id {job_id!r} is not a job id; expected a UUID like 3f2b8c1e-...-9a7d") from None
    return str(job_id)


def _single_flight(queue: str, name: str) -> bool:
    """Whether the job ``name`` of ``queue`` is declared to run one at a time."""
    return any(j.spec.single_flight for j in declared() if j.spec.queue == queue and j.spec.name == name)


class _registry:
    """Bind the project database (where the registry lives) for the duration of a call."""

    def __enter__(self) -> None:
        init_database(actions_queue.settings)
        flush_all()  # read our own writes

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        return None


class _broker:
    """Turn the broker's connection errors into :class:`BrokerUnavailable`."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        if error is not None and isinstance(error, broker_errors()):
            raise BrokerUnavailable(f"the queue broker is unavailable: {error}") from error
