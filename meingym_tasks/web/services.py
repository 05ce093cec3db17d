"""What the API routes and the dashboard's forms do, once: trigger, list, read, retry, cancel, overview.

Each opens the request's database connection itself (a sync function, run in
the worker thread of its endpoint) and raises :class:`ApiError` or a domain
error that the handlers in ``errors.py`` turn into one answer. Writes that
touch the broker run inside one database transaction, so a broker that fails
half way leaves no registry record behind.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from meingym_tasks import jobs
from meingym_tasks.db.database import commit_without_waiting_for_disk
from meingym_tasks.db.fields import write_transaction
from meingym_tasks.exceptions import InvalidJobRequest, JobStateConflict, UnknownJob
from meingym_tasks.names import QUEUES
from meingym_tasks.registry import queries as registry_queries
from meingym_tasks.registry import records_written_now
from meingym_tasks.registry.models import FAILED, RUNNING, STATES
from meingym_tasks.web import queries
from meingym_tasks.web.context import WebContext
from meingym_tasks.web.errors import ApiError, field_error
from meingym_tasks.web.schemas import OPTIONS, RETRY_FAILED_BATCH

# --------------------------------------------------------------------------- jobs


def trigger(context: WebContext, request: BaseModel) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Enqueue the job of a checked trigger body (see ``schemas.TriggerSchema``); its answer and its record.

    The enqueue runs inside one transaction: the registry record (written by
    the enqueue signal) commits only once the broker has the message.
    """
    action: str = getattr(request, "action")  # noqa: B009 (every trigger model has one)
    arguments = request.model_dump(exclude=set(OPTIONS), exclude_unset=True)
    delay, eta = getattr(request, "delay", None), getattr(request, "eta", None)
    with context.connection():
        # The accepted job's record is written in this transaction: a 202 means both exist.
        with write_transaction(), records_written_now():
            commit_without_waiting_for_disk()  # the broker holds the job; its consumer rewrites a lost record
            queued = jobs.enqueue(action, delay=delay, eta=eta, **arguments)
        if "state" in queued:  # a new job: its record says what we know (reading it back cost a quarter)
            return queued, {"state": queued["state"]}
        try:
            job = jobs.get_job(queued["job_id"])
        except UnknownJob:  # a single-flight holder whose record retention already removed
            job = None
    return queued, job


def trigger_message(action: str, queued: dict[str, Any], job: dict[str, Any] | None) -> str:
    state = job["state"] if job else "queued"
    if queued.get("deduplicated"):
        return f"{action} is already {state}: answering with that run ({queued['job_id']}) instead of starting another"
    return f"{action} enqueued as {queued['job_id']} ({state})"


def fetch_page(
    context: WebContext,
    *,
    state: str | None,
    queue: str | None,
    name: str | None,
    limit: int,
    cursor: str | None,
    children: bool = False,
    with_counts: bool = True,
) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """A page of jobs and the counts, with every filter checked and named when wrong (422)."""
    if state is not None and state not in STATES:
        raise field_error("state", f"unknown state {state!r}; allowed: {', '.join(STATES)}", "enum")
    if queue is not None and queue not in QUEUES:
        raise field_error("queue", f"unknown queue {queue!r}; allowed: {', '.join(QUEUES)}", "enum")
    for field, text in (("name", name), ("cursor", cursor)):
        if text is not None and "\x00" in text:
            raise field_error(field, "must not contain a NUL character", "nul_character")
    with context.connection():
        try:
            page = jobs.list_jobs(state=state, queue=queue, name=name, limit=limit, before=cursor, children=children)
        except InvalidJobRequest as exc:
            raise field_error("cursor", str(exc)) from None
        return page, jobs.counts() if with_counts else {}


def retry_all_failed(context: WebContext, queue: str) -> dict[str, Any]:
    """Run every failed job of ``queue`` again, up to RETRY_FAILED_BATCH (``more`` says when to call again)."""
    if queue not in QUEUES:
        raise field_error("queue", f"unknown queue {queue!r}; allowed: {', '.join(QUEUES)}", "enum")
    retried: list[str] = []
    skipped: list[dict[str, str]] = []
    with context.connection():
        ids: list[str] = []
        cursor = None
        while len(ids) <= RETRY_FAILED_BATCH:  # collect first: retrying changes the set being paged
            page = jobs.list_jobs(state=FAILED, queue=queue, limit=registry_queries.MAX_PAGE, before=cursor)
            ids += [job["job_id"] for job in page["jobs"]]
            cursor = page["next"]
            if not cursor:
                break
        more = len(ids) > RETRY_FAILED_BATCH
        for job_id in ids[:RETRY_FAILED_BATCH]:
            try:
                jobs.retry_job(job_id)
                retried.append(job_id)
            except (JobStateConflict, UnknownJob) as exc:  # changed meanwhile: say so, go on
                skipped.append({"job_id": job_id, "message": str(exc)})
    message = f"{len(retried)} failed job(s) of {queue} queued again"
    if skipped:
        message += f", {len(skipped)} skipped"
    return {"queue": queue, "retried": retried, "skipped": skipped, "more": more, "message": message}


def read_job(context: WebContext, job_id: str) -> dict[str, Any]:
    """The full record, with a run's pieces per state."""
    with context.connection():
        job = jobs.get_job(_job_id(job_id))
        pieces = queries.children_counts(job_id)
    if pieces:
        job["children"] = pieces
    return job


def retry_one(context: WebContext, job_id: str) -> dict[str, Any]:
    with context.connection():
        return jobs.retry_job(_job_id(job_id))


def cancel_one(context: WebContext, job_id: str) -> dict[str, Any]:
    with context.connection():
        return jobs.cancel_job(_job_id(job_id))


def cancel_message(job: dict[str, Any]) -> str:
    if job["state"] == RUNNING:
        return f"job {job['job_id']} was asked to stop; it stops at its next progress report"
    return f"job {job['job_id']} cancelled: it will not run"


def _job_id(job_id: str) -> str:
    try:
        return jobs.validate_job_id(job_id)
    except InvalidJobRequest as exc:
        raise ApiError(404, str(exc)) from None


# --------------------------------------------------------------------------- queues


def queues_overview(context: WebContext) -> dict[str, Any]:
    """``jobs.queue_overview()`` plus each queue's completed and failed jobs per minute of the last hour.

    A queue with jobs waiting and no live consumer is flagged (``unserved``): they wait until one starts.
    """
    with context.connection():
        now = registry_queries.utcnow()
        overview = jobs.queue_overview()  # a broker error answers 503 (errors.py)
        per_minute = queries.throughput(now)
    for name, row in overview.items():
        row["throughput"] = per_minute.get(name, [])
        row["unserved"] = bool(row["pending"]) and not row["consumers"]
    return {"queues": overview, "generated_at": registry_queries.iso(now)}


def dead_letters(context: WebContext, queue: str | None, limit: int) -> dict[str, Any]:
    with context.connection():
        try:
            return registry_queries.dead_letters(queue=queue, limit=limit)
        except InvalidJobRequest as exc:
            raise field_error("queue", str(exc)) from None
