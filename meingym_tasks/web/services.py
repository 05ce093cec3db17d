"""What the API routes and the dashboard's forms do, once: trigger, list, read, retry, cancel, purge, access.

Each opens the request's database connection itself (a sync function, run in
the worker thread of its endpoint) and raises :class:`ApiError` or a domain
error that the handlers in ``errors.py`` turn into one answer. Writes that
touch the broker run inside one database transaction, so a broker that fails
half way leaves no registry record behind. Every state-changing one records
its actor and outcome in the audit trail (``access.audit``), refusals and
failures included.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from meingym_tasks import jobs
from meingym_tasks.access import audit, sessions, tokens
from meingym_tasks.access.errors import AccessError
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

#: Errors that mean "the rules turned this down" (audited as refused); anything else is a failure.
REFUSALS: tuple[type[BaseException], ...] = (ApiError, InvalidJobRequest, UnknownJob, JobStateConflict, AccessError)
#: Entries of a job shown with it.
JOB_AUDIT_ENTRIES = 50


def _reason(error: BaseException) -> str:
    return error.message if isinstance(error, ApiError) else f"{type(error).__name__}: {error}"


def _recorded(actor: audit.Actor, action: str, target: str | None) -> Any:
    return audit.recorded(actor, action, target, refusals=REFUSALS, describe=_reason)


# --------------------------------------------------------------------------- jobs


def trigger(
    context: WebContext, request: BaseModel, actor: audit.Actor
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Enqueue the job of a checked trigger body (see ``schemas.TriggerSchema``); its answer and its record.

    The enqueue runs inside one transaction: the registry record (written by
    the enqueue signal) commits only once the broker has the message.
    """
    action: str = getattr(request, "action")  # noqa: B009 (every trigger model has one)
    arguments = request.model_dump(exclude=set(OPTIONS), exclude_unset=True)
    delay, eta = getattr(request, "delay", None), getattr(request, "eta", None)
    with context.connection():
        with _recorded(actor, "trigger", action) as entry:
            entry.detail = {"job": action, "arguments": request.model_dump(mode="json", exclude=set(OPTIONS))}
            if delay is not None or eta is not None:
                entry.detail.update(delay=delay, eta=eta.isoformat() if eta is not None else None)
            # The accepted job's record and its audit entry are written in this transaction: a 202 means all exist.
            with write_transaction(), records_written_now():
                commit_without_waiting_for_disk()  # the broker holds the job; its consumer rewrites a lost record
                queued = jobs.enqueue(action, delay=delay, eta=eta, **arguments)
                entry.target = queued["job_id"]
                entry.detail["deduplicated"] = bool(queued.get("deduplicated"))
                entry.message = trigger_message(action, queued, {"state": queued.get("state", "queued")})
                entry.write_now()
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


def retry_all_failed(context: WebContext, queue: str, actor: audit.Actor) -> dict[str, Any]:
    """Run every failed job of ``queue`` again, up to RETRY_FAILED_BATCH (``more`` says when to call again).

    Audited once for the queue and once per job retried, so each job's page says who retried it.
    """
    with context.connection(), _recorded(actor, "retry-all", queue) as entry:
        outcome = _retry_all_failed(queue)
        entry.message, entry.detail = outcome["message"], {"retried": len(outcome["retried"]), "more": outcome["more"]}
        retried = [
            audit.Entry(actor, "retry", job_id, f"queued again by retry-all of {queue}")
            for job_id in outcome["retried"]
        ]
        with write_transaction():
            audit.record_many(retried)
    return outcome


def _retry_all_failed(queue: str) -> dict[str, Any]:
    """Retry the failed jobs of ``queue`` (the caller holds the connection)."""
    if queue not in QUEUES:
        raise field_error("queue", f"unknown queue {queue!r}; allowed: {', '.join(QUEUES)}", "enum")
    retried: list[str] = []
    skipped: list[dict[str, str]] = []
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
    """The full record, with a run's pieces per state and who acted on it (newest first)."""
    with context.connection():
        job = jobs.get_job(_job_id(job_id))
        pieces = queries.children_counts(job_id)
        job["audit"] = audit.entries(target=job_id, limit=JOB_AUDIT_ENTRIES)["entries"]
    if pieces:
        job["children"] = pieces
    return job


def retry_one(context: WebContext, job_id: str, actor: audit.Actor) -> dict[str, Any]:
    with context.connection(), _recorded(actor, "retry", job_id) as entry:
        job = jobs.retry_job(_job_id(job_id))
        entry.message = f"queued again (attempt {job['attempts'] + 1} next)"
        return job


def cancel_one(context: WebContext, job_id: str, actor: audit.Actor) -> dict[str, Any]:
    with context.connection(), _recorded(actor, "cancel", job_id) as entry:
        job = jobs.cancel_job(_job_id(job_id))
        entry.message = cancel_message(job)
        return job


def purge(context: WebContext, state: str | None, older_than: int | None, actor: audit.Actor) -> dict[str, Any]:
    """Delete finished records (of one state, finished more than ``older_than`` seconds ago)."""
    what = f"{state or 'finished'} job records" + (f" finished more than {older_than} s ago" if older_than else "")
    with context.connection(), _recorded(actor, "purge", what) as entry:
        age = timedelta(seconds=older_than) if older_than is not None else None
        deleted = jobs.purge(state=state, older_than=age)
        entry.message, entry.detail = f"deleted {deleted} {what}", {"deleted": deleted}
    return {"deleted": deleted, "message": f"deleted {deleted} {what}"}


def cancel_message(job: dict[str, Any]) -> str:
    if job["state"] == RUNNING:
        return f"job {job['job_id']} was asked to stop; it stops at its next progress report"
    return f"job {job['job_id']} cancelled: it will not run"


def _job_id(job_id: str) -> str:
    try:
        return jobs.validate_job_id(job_id)
    except InvalidJobRequest as exc:
        raise ApiError(404, str(exc)) from None


# --------------------------------------------------------------------------- access


def audit_page(
    context: WebContext,
    *,
    target: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    limit: int = 50,
    before: int | None = None,
) -> dict[str, Any]:
    for field, text in (("target", target), ("actor", actor), ("action", action)):
        if text is not None and "\x00" in text:
            raise field_error(field, "must not contain a NUL character", "nul_character")
    with context.connection():
        return audit.entries(target=target, actor=actor, action=action, limit=limit, before=before)


def list_tokens(context: WebContext) -> dict[str, Any]:
    with context.connection():
        return {"tokens": tokens.listed(), "builtin": tokens.BUILTIN_NAME}


def create_token(context: WebContext, name: str, scope: str, actor: audit.Actor) -> dict[str, Any]:
    """A new token; the answer holds it this once (the audit trail never does)."""
    with context.connection(), _recorded(actor, "token.create", name) as entry:
        entry.detail = {"scope": scope}
        token, listed = tokens.create(name, scope, created_by=f"{actor.name} ({actor.via})")
        entry.message = f"token {name!r} created with scope {scope}"
    return {**listed, "token": token, "message": f"{entry.message}: this is the only time it is shown"}


def revoke_token(context: WebContext, name: str, actor: audit.Actor) -> dict[str, Any]:
    with context.connection(), _recorded(actor, "token.revoke", name) as entry:
        ended = tokens.revoke(name)
        entry.message, entry.detail = f"token {name!r} revoked, {ended} session(s) ended", {"sessions_ended": ended}
    return {"message": entry.message, "sessions_ended": ended}


def list_sessions(context: WebContext) -> dict[str, Any]:
    with context.connection():
        return {"sessions": sessions.listed(policy=context.auth.session_policy)}


def revoke_session(context: WebContext, session_id: str, actor: audit.Actor) -> dict[str, Any]:
    with context.connection(), _recorded(actor, "session.revoke", f"session {session_id}") as entry:
        ended = sessions.end(session_id)
        entry.message, entry.detail = f"session {session_id} of token {ended['token']!r} ended", ended
    return {"message": entry.message, "sessions_ended": 1}


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
