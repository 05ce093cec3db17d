"""The Python way in: schedule jobs and read their results.

Every helper validates its arguments before anything is enqueued (bad input
raises :class:`InvalidJobRequest` naming the problem and what is allowed) and
returns ``{"job_id": ...}``. An unreachable broker raises
:class:`BrokerUnavailable`. Importing this module connects to nothing.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from huey.constants import EmptyData
from huey.utils import Error

from meingym_tasks.brokers import broker_errors
from meingym_tasks.exceptions import BrokerUnavailable, InvalidJobRequest
from meingym_tasks.names import JOBS, PROCESS_USER_DATA, SEND_WELCOME_EMAIL, UPDATE_ALL_ACTIONS, USER_JOBS
from meingym_tasks.queues import ALL_QUEUES, actions_queue
from meingym_tasks.tasks import process_user_data, send_welcome_email, trigger_update_all_actions

#: An ETA further in the past than this is a mistake (wrong year, wrong zone), not "run now".
PAST_ETA_TOLERANCE = timedelta(hours=1)
MAX_USER_ID = 2**63 - 1


def schedule_actions_update(delay: float | None = None, eta: datetime | None = None) -> dict[str, Any]:
    """Recompute every action's score; a run already queued or running is returned instead.

    Returns ``{"job_id": ..., "deduplicated": bool}``.
    """
    when = _when(delay, eta)
    with _broker():
        return trigger_update_all_actions(eta=when)


def schedule_user_processing(user_id: int, delay: float | None = None, eta: datetime | None = None) -> dict[str, Any]:
    """Recompute one user's aggregates (``process-user-data``)."""
    return _enqueue_user_job(PROCESS_USER_DATA, user_id, delay, eta)


def schedule_welcome_email(user_id: int, delay: float | None = None, eta: datetime | None = None) -> dict[str, Any]:
    """Send the welcome email to one user (``send-welcome-email``)."""
    return _enqueue_user_job(SEND_WELCOME_EMAIL, user_id, delay, eta)


def trigger(
    job: str, user_id: int | None = None, delay: float | None = None, eta: datetime | None = None
) -> dict[str, Any]:
    """Schedule a job by its public name (what the CLI and the API call)."""
    if job not in JOBS:
        raise InvalidJobRequest(f"unknown job {job!r}; allowed: {', '.join(JOBS)}")
    if job == UPDATE_ALL_ACTIONS:
        if user_id is not None:
            raise InvalidJobRequest(f"{UPDATE_ALL_ACTIONS} takes no user id")
        return schedule_actions_update(delay=delay, eta=eta)
    if user_id is None:
        raise InvalidJobRequest(f"{job} needs a user id (a whole number from 1 to {MAX_USER_ID})")
    return _enqueue_user_job(job, user_id, delay, eta)


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
    return {"job_id": job_id, "status": "pending"}


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


def validate_user_id(user_id: object) -> int:
    if isinstance(user_id, bool) or not isinstance(user_id, int):
        raise InvalidJobRequest(f"user id {user_id!r} is not allowed; expected a whole number from 1 to {MAX_USER_ID}")
    if not 1 <= user_id <= MAX_USER_ID:
        raise InvalidJobRequest(f"user id {user_id} is not allowed; expected a whole number from 1 to {MAX_USER_ID}")
    return user_id


def _when(delay: float | None, eta: datetime | None) -> datetime | None:
    """Check a delay or an ETA and return the ETA (aware); a naive ETA is read in the gym's zone.

    A delay becomes an ETA here, on the same clock as the consumer's
    (huey would read a clock bound at import time).
    """
    settings = actions_queue.settings
    limit = settings.max_schedule_ahead
    if delay is not None and eta is not None:
        raise InvalidJobRequest("give a delay or an ETA, not both")
    if delay is not None:
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay != delay:
            raise InvalidJobRequest(f"delay {delay!r} is not allowed; expected seconds from 0 to {limit}")
        if not 0 <= delay <= limit:
            raise InvalidJobRequest(f"delay {delay} is not allowed; expected seconds from 0 to {limit}")
        return datetime.now(UTC) + timedelta(seconds=float(delay))
    if eta is not None:
        if not isinstance(eta, datetime):
            raise InvalidJobRequest(f"ETA {eta!r} is not allowed; expected a date and time")
        aware = eta if eta.utcoffset() is not None else eta.replace(tzinfo=settings.zone)
        now = datetime.now(UTC)
        if aware < now - PAST_ETA_TOLERANCE:
            raise InvalidJobRequest(
                f"ETA {aware.isoformat()} is more than an hour in the past; expected a time from now "
                f"to {limit} seconds ahead"
            )
        if aware > now + timedelta(seconds=limit):
            raise InvalidJobRequest(
                f"ETA {aware.isoformat()} is too far ahead; expected at most {limit} seconds from now"
            )
        return aware
    return None


def _enqueue_user_job(job: str, user_id: int, delay: float | None, eta: datetime | None) -> dict[str, Any]:
    assert job in USER_JOBS
    user_id = validate_user_id(user_id)
    when = _when(delay, eta)
    task = process_user_data if job == PROCESS_USER_DATA else send_welcome_email
    with _broker():
        result = task(user_id) if when is None else task.schedule(args=(user_id,), eta=when)
    return {"job_id": result.id}


class _broker:
    """Turn the broker's connection errors into :class:`BrokerUnavailable`."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        if error is not None and isinstance(error, broker_errors()):
            raise BrokerUnavailable(f"the queue broker is unavailable: {error}") from error
