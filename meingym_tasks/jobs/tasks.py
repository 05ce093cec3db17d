"""The jobs themselves: thin wrappers that load, call the domain, write.

Each job is declared here, once (:func:`meingym_tasks.jobs.declare.job`): name,
queue, parameters with their bounds, single-flight, public. Each runs inside a
database connection of its own (bound from its queue's settings), so a
consumer recovers from a dropped PostgreSQL connection at the next job.
Importing this module registers every task on its queue, and
:mod:`meingym_tasks.consumers` imports it for ``huey_consumer``.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from huey import group
from huey.api import Task
from huey.utils import Error
from pydantic import Field

from meingym_tasks import access
from meingym_tasks.clock import utcnow
from meingym_tasks.db.database import database, init_database
from meingym_tasks.domain.aggregates import recompute_user_stats
from meingym_tasks.domain.mailer import deliver, welcome_message
from meingym_tasks.domain.models import Action, SentEmail, User, write_transaction
from meingym_tasks.domain.rescoring import action_id_bounds, rescore_actions
from meingym_tasks.exceptions import JobCancelled, UnknownUser
from meingym_tasks.jobs.declare import ExistingRun, job
from meingym_tasks.jobs.progress import add_progress, cancel_requested, progress
from meingym_tasks.names import (
    NIGHTLY_UPDATE,
    PROCESS_USER_DATA,
    PRUNE_RESULTS,
    SEND_WELCOME_EMAIL,
    UPDATE_ACTIONS_BATCH,
    UPDATE_ACTIONS_FINISH,
    UPDATE_ALL_ACTIONS,
)
from meingym_tasks.queue import single_flight
from meingym_tasks.queue.app import MeinGymHuey
from meingym_tasks.queue.queues import ALL_QUEUES, actions_queue, users_queue
from meingym_tasks.queue.schedule import nightly_due
from meingym_tasks.registry import defer_completion, install
from meingym_tasks.registry import queries as registry_queries
from meingym_tasks.registry.models import COMPLETE, FAILED, REVOKED
from meingym_tasks.registry.recorder import finish_record

logger = logging.getLogger("meingym_tasks.jobs")

# Every job of both queues gets a registry record; their consumers keep heartbeats.
install(actions_queue)
install(users_queue)

F = TypeVar("F", bound=Callable[..., Any])

#: A user's id as the database stores it (a 64-bit primary key).
UserId = Annotated[int, Field(ge=1, le=2**63 - 1, title="User ID", description="The user's id")]


def with_database(queue: MeinGymHuey) -> Callable[[F], F]:
    """Run the job inside a connection to the database of ``queue``'s settings."""

    def decorator(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            init_database(queue.settings)
            with database.connection_context():
                return fn(*args, **kwargs)

        return run  # type: ignore[return-value]

    return decorator


# --------------------------------------------------------------------------- update-all-actions


def id_ranges(first: int, last: int, size: int) -> list[tuple[int, int]]:
    """Split the id range ``first..last`` into inclusive ranges of at most ``size`` ids."""
    return [(start, min(start + size - 1, last)) for start in range(first, last + 1, size)]


@job(actions_queue, UPDATE_ALL_ACTIONS, public=True, single_flight=True)
@with_database(actions_queue)
def update_all_actions(task: Task) -> None:
    """Recompute every action's score, in batches every consumer of the queue shares; one run at a time.

    Fans the rescoring out as one batch job per id range; the finishing job stores the summary.
    The run's own result (under this job's id) is written by
    :func:`finish_actions_update` once every batch has ended, so a caller
    waiting on this job id waits for the whole run; its registry record stays
    ``running`` until then, with progress counted by the batches.
    """
    started = time.time()
    bounds = action_id_bounds()
    ranges = id_ranges(*bounds, actions_queue.settings.update_batch_size) if bounds else []
    # Also where a run cancelled before it fans out stops (JobCancelled): no batch is enqueued.
    progress(0, Action.select().count(), f"scoring in {len(ranges)} batch(es)")
    defer_completion(task)
    logger.info("update-all-actions %s: %d batch(es) over ids %s", task.id, len(ranges), bounds)
    batches = [score_actions_batch.s(first, last, parent_id=task.id) for first, last in ranges]
    actions_queue.enqueue(group(batches).then(finish_actions_update, started, parent_id=task.id))


@job(actions_queue, UPDATE_ACTIONS_BATCH)
@with_database(actions_queue)
def score_actions_batch(first_id: int, last_id: int, parent_id: str) -> int:
    """Rescore the actions with ids ``first_id..last_id`` in one set-based UPDATE."""
    if cancel_requested(parent_id):
        raise JobCancelled(f"run {parent_id} was cancelled")
    scored = rescore_actions(first_id, last_id, utcnow())
    add_progress(parent_id, scored)
    # huey's own lines name the batch's job id only; this one ties the batch to its run in the log.
    logger.info("update-all-actions %s: ids %d..%d scored (%d actions)", parent_id, first_id, last_id, scored)
    return scored


@job(actions_queue, UPDATE_ACTIONS_FINISH)
@with_database(actions_queue)
def finish_actions_update(started: float, results: list[Any], parent_id: str) -> dict[str, Any]:
    """Store the run's summary (or its failure) under the run's job id and release the claim."""
    failures = [r for r in results if isinstance(r, Error)]
    summary = {
        "actions_scored": sum(r for r in results if isinstance(r, int)),
        "batches": len(results),
        "seconds": round(time.time() - started, 3),
    }
    try:
        if failures:
            cancelled = cancel_requested(parent_id)
            reason = failures[0].metadata.get("error", "unknown error")
            error = {
                "error": f"{len(failures)} of {len(results)} batches failed; first: {reason}",
                "retryable": not cancelled,
                "retries": 0,
                "traceback": failures[0].metadata.get("traceback", ""),
                "task_id": parent_id,
                "summary": summary,
            }
            actions_queue.put_result(parent_id, Error(error))
            finish_record(parent_id, REVOKED if cancelled else FAILED, result=summary, error=error)
        else:
            actions_queue.put_result(parent_id, summary)
            finish_record(parent_id, COMPLETE, result=summary)
    finally:
        single_flight.release(actions_queue, UPDATE_ALL_ACTIONS, parent_id)
    logger.info("update-all-actions %s finished: %s", parent_id, summary)
    return summary


def claim_nightly_run(now_utc: datetime) -> bool:
    """True once per local night: the first scheduler to see the run due claims its date.

    The claim is a key per local date in the broker, so two machines with the
    scheduler on (a configuration mistake) still start one run.
    """
    settings = actions_queue.settings
    if not settings.scheduler_enabled:
        return False
    local_date = nightly_due(now_utc, settings.nightly_at, settings.zone)
    if local_date is None:
        return False
    owner = f"{socket.gethostname()}:{os.getpid()}".encode()
    try:
        return bool(actions_queue.storage.put_if_empty(f"nightly:{local_date.isoformat()}", owner, 3 * 86400))
    except Exception:  # the scheduler must survive a broker outage; the next minute tries again
        logger.exception("could not claim the nightly run of %s", local_date)
        return False


@job(actions_queue, NIGHTLY_UPDATE, due=claim_nightly_run)
def nightly_update_all_actions() -> dict[str, Any]:
    """Trigger ``update-all-actions`` (through the single-flight rule, like any other trigger)."""
    return trigger_update_all_actions()


def trigger_update_all_actions(eta: datetime | None = None) -> dict[str, Any]:
    """Enqueue a run unless one is queued or running; returns its job id either way."""
    run = update_all_actions() if eta is None else update_all_actions.schedule(eta=eta)
    return {"job_id": run.id, "deduplicated": isinstance(run, ExistingRun)}


# --------------------------------------------------------------------------- users


@job(users_queue, PROCESS_USER_DATA, public=True)
@with_database(users_queue)
def process_user_data(user_id: UserId) -> dict[str, Any]:
    """Recompute one user's aggregates from their actions."""
    settings = users_queue.settings
    return recompute_user_stats(user_id, utcnow(), settings.zone)


@job(users_queue, SEND_WELCOME_EMAIL, public=True)
@with_database(users_queue)
def send_welcome_email(user_id: UserId, task: Task) -> dict[str, Any]:
    """Send the welcome email to one user, once per job.

    The marker row and the send share one transaction: if sending fails the
    marker is rolled back and the retry sends; once the marker is committed a
    rerun of the same job finds it and sends nothing.
    """
    settings = users_queue.settings
    with write_transaction():  # BEGIN IMMEDIATE on SQLite: read-then-write must not hit "locked"
        sent = SentEmail.get_or_none(SentEmail.job_id == task.id)
        if sent is not None:
            return {"user_id": user_id, "recipient": sent.recipient, "already_sent": True}
        user = User.get_or_none(User.id == user_id)
        if user is None:
            raise UnknownUser(user_id)
        message = welcome_message(user.name, user.email, settings)
        SentEmail.create(
            job_id=task.id,
            user=user,
            kind="welcome",
            recipient=user.email,
            sent_at=utcnow(),
            message_id=message["Message-ID"],
        )
        where = deliver(message, settings, task.id)
    return {"user_id": user_id, "recipient": user.email, "delivered_to": where, "already_sent": False}


# --------------------------------------------------------------------------- housekeeping


def _every_ten_minutes(now_utc: datetime) -> bool:
    return now_utc.minute % 10 == 0


def _prune(queue: MeinGymHuey) -> int:
    removed = queue.storage.prune_results()
    if removed:
        logger.info("%s: removed %d expired result(s)", queue.name, removed)
    return removed


@job(actions_queue, PRUNE_RESULTS, due=_every_ten_minutes)
@with_database(actions_queue)
def prune_actions_results() -> int:
    """Remove expired results of the actions queue and old registry records (Bull's removeOnComplete).

    The registry is shared by both queues, so only this queue's job prunes it.
    """
    records = registry_queries.prune(actions_queue.settings) + access.prune(actions_queue.settings)
    if records:
        logger.info("registry: removed %d old record(s)", records)
    return _prune(actions_queue) + records


@job(users_queue, PRUNE_RESULTS, due=_every_ten_minutes)
def prune_users_results() -> int:
    """Remove expired results of the users queue."""
    return _prune(users_queue)


__all__ = [
    "ALL_QUEUES",
    "finish_actions_update",
    "nightly_update_all_actions",
    "process_user_data",
    "score_actions_batch",
    "send_welcome_email",
    "trigger_update_all_actions",
    "update_all_actions",
]
