"""The JSON API under ``/api``, the probes and ``/metrics``.

Every endpoint is a sync ``def`` (FastAPI runs it in a worker thread) that
opens the database connection itself, inside its body. Writes that touch the
broker run inside one database transaction, so a broker that fails half way
leaves no registry record behind.
"""

from __future__ import annotations

import concurrent.futures
import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from meingym_tasks import jobs
from meingym_tasks.db.database import commit_without_waiting_for_disk, database
from meingym_tasks.db.fields import write_transaction
from meingym_tasks.exceptions import InvalidJobRequest, JobStateConflict, UnknownJob
from meingym_tasks.names import JOBS, QUEUES, UPDATE_ALL_ACTIONS, USER_JOBS
from meingym_tasks.queue.queues import ALL_QUEUES
from meingym_tasks.registry import queries as registry_queries
from meingym_tasks.registry import records_written_now
from meingym_tasks.registry.models import FAILED, STATES
from meingym_tasks.web import queries
from meingym_tasks.web.context import WebContext, web_context
from meingym_tasks.web.errors import ApiError, field_error

logger = logging.getLogger("meingym_tasks.web")

MAX_USER_ID = 2**63 - 1
#: Jobs retried by one call of retry-failed; the answer says when more are left.
RETRY_FAILED_BATCH = 1000
READY_TIMEOUT = 5.0

# --------------------------------------------------------------------------- models (OpenAPI)


class ErrorBody(BaseModel):
    message: str = Field(description="What went wrong and, where it applies, what is allowed")
    allowed: list[str] | None = Field(None, description="The valid values (unknown action)")
    errors: list[dict[str, str]] | None = Field(None, description="Per field: field, message, type (422)")


class TriggerRequest(BaseModel):
    """A job to run: the old body ``{"action": "update-all-actions"}`` is valid as it is."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"action": "update-all-actions"},
                {"action": "process-user-data", "user_id": 7},
                {"action": "send-welcome-email", "user_id": 7, "delay": 60},
                {"action": "send-welcome-email", "user_id": 7, "eta": "2026-12-01T09:00:00+01:00"},
            ]
        },
    )

    action: StrictStr = Field(description="One of: " + ", ".join(JOBS))
    user_id: Annotated[StrictInt, Field(ge=1, le=MAX_USER_ID)] | None = Field(
        None, description="The user, for " + " and ".join(USER_JOBS)
    )
    delay: Annotated[float, Field(strict=True, ge=0)] | None = Field(
        None, description="Run after this many seconds (at most MEINGYM_MAX_SCHEDULE_AHEAD)"
    )
    eta: datetime | None = Field(
        None, description="Run at this ISO-8601 time; without an offset it is read in MEINGYM_TIMEZONE"
    )


class Accepted(BaseModel):
    job_id: str
    state: str = Field(description="The job's registry state now (queued, scheduled, running, ...)")
    url: str = Field(description="Where to follow the job: GET it for its state, attempts and result")
    deduplicated: bool = Field(
        description="True when a run of update-all-actions was already queued or running: that run is answered"
    )
    message: str


class Progress(BaseModel):
    done: int | None
    total: int | None
    percent: float | None
    message: str | None


class FailedAttempt(BaseModel):
    attempt: int
    error: str
    traceback: str
    consumer: str | None
    failed_at: str | None


class JobSummary(BaseModel):
    """A job's registry record; times are ISO-8601 UTC."""

    job_id: str
    queue: str
    name: str
    parent_id: str | None
    arguments: Any
    state: str = Field(description="One of: " + ", ".join(STATES))
    attempts: int
    max_attempts: int
    enqueued_at: str | None
    scheduled_for: str | None
    started_at: str | None
    finished_at: str | None
    next_attempt_at: str | None
    consumer: str | None
    progress: Progress
    result: Any
    error: str | None
    cancel_requested: bool
    updated_at: str | None


class Job(JobSummary):
    """The full record: also every failed attempt, and a run's pieces per state."""

    failed_attempts: list[FailedAttempt]
    children: dict[str, int] | None = Field(None, description="A run's pieces (batches) per state; null otherwise")


class JobAction(BaseModel):
    message: str
    job: Job


class JobPage(BaseModel):
    jobs: list[JobSummary]
    next: str | None = Field(description="Pass as cursor= for the next (older) page; null on the last page")
    next_url: str | None
    counts: dict[str, dict[str, int]] = Field(description="Records per queue and state (all, not just this page)")


class RetryFailedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queue: StrictStr = Field(description="One of: " + ", ".join(QUEUES))


class Skipped(BaseModel):
    job_id: str
    message: str


class RetryFailedResult(BaseModel):
    queue: str
    retried: list[str]
    skipped: list[Skipped]
    more: bool = Field(description=f"True when more than {RETRY_FAILED_BATCH} were failed: call again")
    message: str


class Consumer(BaseModel):
    consumer_id: str
    queue: str
    host: str
    pid: int
    workers: int
    worker_type: str
    started_at: str | None
    last_seen_at: str | None


class Minute(BaseModel):
    minute: str | None
    complete: int
    failed: int


class QueueInfo(BaseModel):
    pending: int = Field(description="Ready to run, waiting in the broker")
    scheduled: int = Field(description="Delayed, ETA or waiting for a retry, in the broker")
    running: int
    retrying: int
    failed: int
    states: dict[str, int] = Field(description="Registry records per state")
    completed_last_hour: int
    failed_last_hour: int
    throughput: list[Minute] = Field(description="Completed and failed per minute, the last 60 minutes, oldest first")
    consumers: list[Consumer] = Field(description="Consumers alive (heartbeat within 30 s)")


class Queues(BaseModel):
    queues: dict[str, QueueInfo]
    generated_at: str


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No or wrong token"},
    503: {"model": ErrorBody, "description": "The broker or the database cannot be reached"},
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "Unknown action (the valid ones are listed)",
        403: "Cookie session without CSRF token",
        404: "No job with this id",
        409: "The job's state does not allow this",
        413: "Body too large",
        422: "A field is missing, has the wrong type or a value that is not allowed",
    }
    return {**ERRORS, **{code: {"model": ErrorBody, "description": described[code]} for code in codes}}


router = APIRouter(prefix="/api")
probes = APIRouter(tags=["operations"])

# --------------------------------------------------------------------------- jobs


@router.post("/jobs", tags=["jobs"], status_code=202, response_model=Accepted, responses=_errors(400, 403, 413, 422))
def create_job(body: TriggerRequest, request: Request, response: Response) -> dict[str, Any]:
    """Enqueue a job. A second ``update-all-actions`` while one is queued or running answers with that run."""
    context = web_context(request)
    queued, job = trigger(context, body.action, body.user_id, body.delay, body.eta)
    url = str(request.url_for("get_job", job_id=queued["job_id"]))
    response.headers["Location"] = url
    return {
        "job_id": queued["job_id"],
        "state": job["state"] if job else "queued",
        "url": url,
        "deduplicated": bool(queued.get("deduplicated")),
        "message": trigger_message(body.action, queued, job),
    }


def trigger(
    context: WebContext, action: str, user_id: int | None, delay: float | None, eta: datetime | None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Check the request like the API documents it, enqueue, and read the record back.

    Shared with the dashboard's trigger form. The enqueue runs inside one
    transaction: the registry record (written by the enqueue signal) commits
    only once the broker has the message.
    """
    if action not in JOBS:
        raise ApiError(400, f"unknown action {action!r}; allowed: {', '.join(JOBS)}", allowed=list(JOBS))
    if action in USER_JOBS and user_id is None:
        raise field_error("user_id", f"{action} needs user_id, a whole number from 1 to {MAX_USER_ID}", "missing")
    if action == UPDATE_ALL_ACTIONS and user_id is not None:
        raise field_error("user_id", f"{UPDATE_ALL_ACTIONS} takes no user_id", "extra_forbidden")
    if delay is not None and eta is not None:
        raise field_error(["delay", "eta"], "give delay or eta, not both")
    with context.connection():
        try:
            # The accepted job's record is written in this transaction: a 202 means both exist.
            with write_transaction(), records_written_now():
                commit_without_waiting_for_disk()  # the broker holds the job; its consumer rewrites a lost record
                arguments = {} if user_id is None else {"user_id": user_id}
                queued = jobs.enqueue(action, delay=delay, eta=eta, **arguments)
        except InvalidJobRequest as exc:
            raise field_error(
                "delay" if delay is not None else "eta" if eta is not None else "user_id", str(exc)
            ) from None
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


@router.get("/jobs", tags=["jobs"], response_model=JobPage, responses=_errors(422))
def list_jobs(
    request: Request,
    state: Annotated[str | None, Query(description="One of: " + ", ".join(STATES))] = None,
    queue: Annotated[str | None, Query(description="One of: " + ", ".join(QUEUES))] = None,
    name: Annotated[
        str | None, Query(description="Job name, e.g. update-all-actions or update-all-actions.batch")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=registry_queries.MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(description="The 'next' value of the previous page")] = None,
    children: Annotated[bool, Query(description="Include the pieces of a run (batches)")] = False,
) -> dict[str, Any]:
    """Jobs newest first, one page at a time (keyset pagination), with the counts per queue and state."""
    context = web_context(request)
    page, counts = fetch_page(
        context, state=state, queue=queue, name=name, limit=limit, cursor=cursor, children=children
    )
    next_url = None
    if page["next"]:
        next_url = str(request.url.include_query_params(cursor=page["next"]))
    return {**page, "next_url": next_url, "counts": counts}


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
    with context.connection():
        try:
            page = jobs.list_jobs(state=state, queue=queue, name=name, limit=limit, before=cursor, children=children)
        except InvalidJobRequest as exc:
            raise field_error("cursor", str(exc)) from None
        return page, jobs.counts() if with_counts else {}


@router.post("/jobs/retry-failed", tags=["jobs"], response_model=RetryFailedResult, responses=_errors(403, 422))
def retry_failed(request: Request, body: RetryFailedRequest) -> dict[str, Any]:
    """Run every failed job of a queue again (up to 1000 per call; ``more`` says when to call again)."""
    return retry_all_failed(web_context(request), body.queue)


def retry_all_failed(context: WebContext, queue: str) -> dict[str, Any]:
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


JobId = Annotated[str, Path(description="The job id (a UUID)")]


@router.get("/jobs/{job_id}", tags=["jobs"], response_model=Job, responses=_errors(404))
def get_job(request: Request, job_id: JobId) -> dict[str, Any]:
    """The full record: state, attempts with errors and tracebacks, progress, result."""
    return read_job(web_context(request), job_id)


def read_job(context: WebContext, job_id: str) -> dict[str, Any]:
    with context.connection():
        job = jobs.get_job(_job_id(job_id))
        pieces = queries.children_counts(job_id)
    if pieces:
        job["children"] = pieces
    return job


@router.post("/jobs/{job_id}/retry", tags=["jobs"], response_model=JobAction, responses=_errors(403, 404, 409))
def retry_job(request: Request, job_id: JobId) -> dict[str, Any]:
    """Run a failed, revoked, expired or interrupted job again, under the same id and record."""
    job = retry_one(web_context(request), job_id)
    return {"message": f"job {job_id} queued again", "job": job}


def retry_one(context: WebContext, job_id: str) -> dict[str, Any]:
    with context.connection():
        return jobs.retry_job(_job_id(job_id))


@router.post("/jobs/{job_id}/cancel", tags=["jobs"], response_model=JobAction, responses=_errors(403, 404, 409))
def cancel_job(request: Request, job_id: JobId) -> dict[str, Any]:
    """Cancel a scheduled, queued or retrying job; a running one is asked to stop at its next progress report."""
    job = cancel_one(web_context(request), job_id)
    return {"message": cancel_message(job), "job": job}


def cancel_one(context: WebContext, job_id: str) -> dict[str, Any]:
    with context.connection():
        return jobs.cancel_job(_job_id(job_id))


def cancel_message(job: dict[str, Any]) -> str:
    if job["state"] == "running":
        return f"job {job['job_id']} was asked to stop; it stops at its next progress report"
    return f"job {job['job_id']} cancelled: it will not run"


def _job_id(job_id: str) -> str:
    try:
        return jobs.validate_job_id(job_id)
    except InvalidJobRequest as exc:
        raise ApiError(404, str(exc)) from None


# --------------------------------------------------------------------------- queues


@router.get("/queues", response_model=Queues, tags=["queues"])
def list_queues(request: Request) -> dict[str, Any]:
    """Per queue: pending and scheduled in the broker, counts per state, throughput per minute, consumers."""
    return queues_overview(web_context(request))


def queues_overview(context: WebContext) -> dict[str, Any]:
    """``jobs.queue_overview()`` plus each queue's completed and failed jobs per minute of the last hour."""
    with context.connection():
        now = registry_queries.utcnow()
        overview = jobs.queue_overview()  # a broker error answers 503 (errors.py)
        per_minute = queries.throughput(now)
    for name, row in overview.items():
        row["throughput"] = per_minute.get(name, [])
    return {"queues": overview, "generated_at": registry_queries.iso(now)}


class DeadLetterItem(BaseModel):
    id: int
    queue: str
    reason: str
    size: int
    payload_hex: str
    consumer: str | None
    received_at: str | None


class DeadLetters(BaseModel):
    dead_letters: list[DeadLetterItem]
    counts: dict[str, int]


@router.get("/dead-letters", response_model=DeadLetters, tags=["queues"], responses=_errors(422))
def list_dead_letters(
    request: Request,
    queue: Annotated[str | None, Query(description="One of: " + ", ".join(QUEUES))] = None,
    limit: Annotated[int, Query(ge=1, le=registry_queries.MAX_PAGE)] = 50,
) -> dict[str, Any]:
    """Messages that were never run (bad signature, undecodable, unknown job, wrong arguments,
    or a job that kept killing its consumer), newest first, with counts per queue."""
    with web_context(request).connection():
        try:
            return registry_queries.dead_letters(queue=queue, limit=limit)
        except InvalidJobRequest as exc:
            raise field_error("queue", str(exc)) from None


# --------------------------------------------------------------------------- probes and metrics


@probes.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


_ready_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="meingym-readyz")


@probes.get("/readyz", summary="Readiness: broker and database answer", responses={503: {"model": dict[str, str]}})
def readyz(request: Request) -> JSONResponse:
    """Unauthenticated, so the answer says only which dependency is down; the reason goes to the log."""
    context = web_context(request)
    checks = {"database": _ready_pool.submit(_database_ok, context), "broker": _ready_pool.submit(_broker_ok)}
    result: dict[str, str] = {}
    for name, future in checks.items():
        try:
            future.result(timeout=READY_TIMEOUT)
            result[name] = "ok"
        except concurrent.futures.TimeoutError:
            logger.warning("readyz: %s gave no answer within %s s", name, READY_TIMEOUT)
            result[name] = "down"
        except Exception as exc:
            logger.warning("readyz: %s is down: %s", name, exc)
            result[name] = "down"
    ready = all(value == "ok" for value in result.values())
    return JSONResponse({"status": "ready" if ready else "unavailable", **result}, status_code=200 if ready else 503)


def _database_ok(context: WebContext) -> None:
    with context.connection():
        database.execute_sql("SELECT 1")


def _broker_ok() -> None:
    for queue in ALL_QUEUES.values():
        queue.pending_count()


@probes.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics (text format)")
def metrics(request: Request) -> Response:
    context = web_context(request)
    with context.connection():
        body = context.metrics.render()
    return Response(body, media_type=CONTENT_TYPE_LATEST)
