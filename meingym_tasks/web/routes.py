"""The HTTP routes: the JSON API under ``/api``, the probes and ``/metrics``.

Every endpoint is a sync ``def`` (FastAPI runs it in a worker thread) that
calls a function of ``services.py``, which opens the database connection in
its body. ``POST /api/jobs`` takes the body ``schemas.trigger_schema`` builds
from the public jobs' declarations, so its route is made per app
(:func:`trigger_router`). Every route declares the scope it needs
(``dependencies=[needs(...)]``, see ``permissions.py``): read for what only
reads, operate for trigger, retry and cancel, admin for purge, tokens,
sessions and the audit trail.
"""

from __future__ import annotations

import concurrent.futures
import logging
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from meingym_tasks.db.database import database
from meingym_tasks.names import QUEUES
from meingym_tasks.queue.queues import ALL_QUEUES
from meingym_tasks.registry import queries as registry_queries
from meingym_tasks.registry.models import STATES
from meingym_tasks.web import services
from meingym_tasks.web.context import WebContext, public_url_for, web_context
from meingym_tasks.web.permissions import ADMIN, OPERATE, PUBLIC, READ, actor, needs
from meingym_tasks.web.schemas import (
    Accepted,
    AuditPage,
    DeadLetters,
    ErrorBody,
    Filter,
    Job,
    JobAction,
    JobPage,
    PurgeRequest,
    PurgeResult,
    Queues,
    RetryFailedRequest,
    RetryFailedResult,
    Revoked,
    SessionList,
    TokenCreated,
    TokenList,
    TokenRequest,
    TriggerSchema,
)

logger = logging.getLogger("meingym_tasks.web")

READY_TIMEOUT = 5.0

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No or wrong token"},
    429: {
        "model": ErrorBody,
        "description": "Too many failed attempts from this address (or for this token): wait Retry-After seconds",
    },
    503: {"model": ErrorBody, "description": "The broker or the database cannot be reached"},
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "A body that cannot be read as JSON, or an unknown action (the valid ones are listed)",
        403: "The token's scope is too small (missing_scope names the one needed), or a cookie session "
        "without its CSRF token",
        404: "No job (token, session) with this id",
        409: "The job's state does not allow this (or the token name is taken)",
        413: "Body too large",
        422: "A field is missing, has the wrong type or a value that is not allowed (each is named)",
    }
    return {**ERRORS, **{code: {"model": ErrorBody, "description": described[code]} for code in codes}}


def _as_json(responses: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """Error answers documented as JSON also on a route whose own answer is not (``/metrics``)."""
    schema = {"$ref": "#/components/schemas/ErrorBody"}
    return {
        code: {"description": answer["description"], "content": {"application/json": {"schema": schema}}}
        for code, answer in responses.items()
    }


def _scoped(scope: str) -> dict[str, Any]:
    """The route's scope: checked (``needs``) and documented (``x-required-scope`` and the description)."""
    return {"dependencies": [needs(scope)], "openapi_extra": {"x-required-scope": scope}}


router = APIRouter(prefix="/api")
probes = APIRouter(tags=["operations"])

State = Literal[STATES]  # type: ignore[valid-type]
QueueName = Literal[QUEUES]  # type: ignore[valid-type]
#: A job id is a UUID; any other text is answered 404 like an unknown id (the pattern documents the shape).
JobId = Annotated[
    str,
    Path(
        description="The job id (a UUID)",
        json_schema_extra={"pattern": "^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$"},
    ),
]

# --------------------------------------------------------------------------- jobs


def trigger_router(schema: TriggerSchema) -> APIRouter:
    """``POST /api/jobs`` with the body of this app's public jobs."""
    jobs_router = APIRouter(prefix="/api")

    def create_job(body: Any, request: Request, response: Response) -> dict[str, Any]:
        """Enqueue a job: its action, its parameters, and a delay or an ETA.

        A single-flight job (update-all-actions) that is already queued or running answers with that run.
        """
        job = body.root
        queued, record = services.trigger(web_context(request), job, actor(request))
        url = public_url_for(request, "get_job", job_id=queued["job_id"])
        response.headers["Location"] = url
        return {
            "job_id": queued["job_id"],
            "state": record["state"] if record else "queued",
            "url": url,
            "deduplicated": bool(queued.get("deduplicated")),
            "message": services.trigger_message(job.action, queued, record),
        }

    # The body's model is built per app from the declarations; FastAPI reads it from the annotation.
    create_job.__annotations__["body"] = schema.request
    jobs_router.add_api_route(
        "/jobs",
        create_job,
        methods=["POST"],
        tags=["jobs"],
        status_code=202,
        response_model=Accepted,
        responses=_errors(400, 403, 413, 422),
        **_scoped(OPERATE),
    )
    return jobs_router


@router.get("/jobs", tags=["jobs"], response_model=JobPage, responses=_errors(422), **_scoped(READ))
def list_jobs(
    request: Request,
    state: Annotated[State | None, Query(description="Only jobs in this state")] = None,
    queue: Annotated[QueueName | None, Query(description="Only jobs of this queue")] = None,
    name: Annotated[
        Filter | None, Query(description="Job name, e.g. update-all-actions or update-all-actions.batch")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=registry_queries.MAX_PAGE)] = 50,
    cursor: Annotated[
        str | None, Query(pattern="^[A-Za-z0-9_-]+$", description="The 'next' value of the previous page")
    ] = None,
    children: Annotated[bool, Query(description="Include the pieces of a run (batches)")] = False,
) -> dict[str, Any]:
    """Jobs newest first, one page at a time (keyset pagination), with the counts per queue and state."""
    context = web_context(request)
    page, counts = services.fetch_page(
        context, state=state, queue=queue, name=name, limit=limit, cursor=cursor, children=children
    )
    next_url = None
    if page["next"]:
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"] + [("cursor", page["next"])]
        next_url = public_url_for(request, "list_jobs") + "?" + urlencode(query)
    return {**page, "next_url": next_url, "counts": counts}


@router.post(
    "/jobs/retry-failed",
    tags=["jobs"],
    response_model=RetryFailedResult,
    responses=_errors(400, 403, 413, 422),
    **_scoped(OPERATE),
)
def retry_failed(request: Request, body: RetryFailedRequest) -> dict[str, Any]:
    """Run every failed job of a queue again (up to 1000 per call; ``more`` says when to call again)."""
    return services.retry_all_failed(web_context(request), body.queue, actor(request))


@router.post(
    "/jobs/purge", tags=["jobs"], response_model=PurgeResult, responses=_errors(400, 403, 413, 422), **_scoped(ADMIN)
)
def purge_jobs(request: Request, body: PurgeRequest) -> dict[str, Any]:
    """Delete the records of finished jobs, of one state or all, finished more than ``older_than`` seconds ago."""
    return services.purge(web_context(request), body.state, body.older_than, actor(request))


@router.get("/jobs/{job_id}", tags=["jobs"], response_model=Job, responses=_errors(404), **_scoped(READ))
def get_job(request: Request, job_id: JobId) -> dict[str, Any]:
    """The full record: state, attempts with errors and tracebacks, progress, result, who acted on it."""
    return services.read_job(web_context(request), job_id)


@router.post(
    "/jobs/{job_id}/retry",
    tags=["jobs"],
    response_model=JobAction,
    responses=_errors(403, 404, 409),
    **_scoped(OPERATE),
)
def retry_job(request: Request, job_id: JobId) -> dict[str, Any]:
    """Run a failed, revoked, expired or interrupted job again, under the same id and record."""
    job = services.retry_one(web_context(request), job_id, actor(request))
    return {"message": f"job {job_id} queued again", "job": job}


@router.post(
    "/jobs/{job_id}/cancel",
    tags=["jobs"],
    response_model=JobAction,
    responses=_errors(403, 404, 409),
    **_scoped(OPERATE),
)
def cancel_job(request: Request, job_id: JobId) -> dict[str, Any]:
    """Cancel a scheduled, queued or retrying job; a running one is asked to stop at its next progress report."""
    job = services.cancel_one(web_context(request), job_id, actor(request))
    return {"message": services.cancel_message(job), "job": job}


# --------------------------------------------------------------------------- access

TokenName = Annotated[str, Path(description="The token's name", max_length=40)]
SessionId = Annotated[str, Path(description="The session's id (as listed)", max_length=32)]


@router.get("/audit", tags=["access"], response_model=AuditPage, responses=_errors(403, 422), **_scoped(ADMIN))
def list_audit(
    request: Request,
    target: Annotated[Filter | None, Query(max_length=200, description="A job id, queue, token or session")] = None,
    actor_name: Annotated[
        Filter | None, Query(alias="actor", max_length=200, description="A token's name, or user@host")
    ] = None,
    action: Annotated[Filter | None, Query(max_length=40, description="trigger, retry, cancel, login, ...")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="The 'next' value of the previous page")
    ] = None,
) -> dict[str, Any]:
    """The audit trail, newest first: every state-changing action with its actor, address, time and outcome."""
    return services.audit_page(
        web_context(request), target=target, actor=actor_name, action=action, limit=limit, before=before
    )


@router.get("/tokens", tags=["access"], response_model=TokenList, responses=_errors(403), **_scoped(ADMIN))
def list_tokens(request: Request) -> dict[str, Any]:
    """The named tokens (never their secrets) with their scope, creator, last use and open sessions."""
    return services.list_tokens(web_context(request))


@router.post(
    "/tokens",
    tags=["access"],
    status_code=201,
    response_model=TokenCreated,
    responses=_errors(400, 403, 409, 413, 422),
    **_scoped(ADMIN),
)
def create_token(request: Request, body: TokenRequest) -> dict[str, Any]:
    """Create a named token with one scope; the answer holds the token, this once."""
    return services.create_token(web_context(request), body.name, body.scope, actor(request))


@router.delete(
    "/tokens/{name}", tags=["access"], response_model=Revoked, responses=_errors(403, 404, 409), **_scoped(ADMIN)
)
def revoke_token(request: Request, name: TokenName) -> dict[str, Any]:
    """Revoke a token: it is refused from now on, and its dashboard sessions end at once."""
    return services.revoke_token(web_context(request), name, actor(request))


@router.get("/sessions", tags=["access"], response_model=SessionList, responses=_errors(403), **_scoped(ADMIN))
def list_sessions(request: Request) -> dict[str, Any]:
    """Open dashboard sessions: token, started, last seen, client address, user agent."""
    return services.list_sessions(web_context(request))


@router.delete(
    "/sessions/{session_id}",
    tags=["access"],
    response_model=Revoked,
    responses=_errors(403, 404),
    **_scoped(ADMIN),
)
def revoke_session(request: Request, session_id: SessionId) -> dict[str, Any]:
    """End a dashboard session at once."""
    return services.revoke_session(web_context(request), session_id, actor(request))


# --------------------------------------------------------------------------- queues


@router.get("/queues", response_model=Queues, tags=["queues"], responses=_errors(), **_scoped(READ))
def list_queues(request: Request) -> dict[str, Any]:
    """Per queue: pending and scheduled in the broker, counts per state, throughput per minute, consumers."""
    return services.queues_overview(web_context(request))


@router.get("/dead-letters", response_model=DeadLetters, tags=["queues"], responses=_errors(422), **_scoped(READ))
def list_dead_letters(
    request: Request,
    queue: Annotated[QueueName | None, Query(description="Only this queue's")] = None,
    limit: Annotated[int, Query(ge=1, le=registry_queries.MAX_PAGE)] = 50,
) -> dict[str, Any]:
    """Messages that were never run (bad signature, undecodable, unknown job, wrong arguments,
    or a job that kept killing its consumer), newest first, with counts per queue."""
    return services.dead_letters(web_context(request), queue, limit)


# --------------------------------------------------------------------------- probes and metrics


@probes.get("/healthz", summary="Liveness: the process answers", dependencies=[needs(PUBLIC)])
def healthz() -> dict[str, str]:
    return {"status": "ok"}


_ready_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="meingym-readyz")


@probes.get(
    "/readyz",
    summary="Readiness: broker and database answer",
    responses={503: {"model": dict[str, str]}},
    dependencies=[needs(PUBLIC)],
)
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


@probes.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics (text format)",
    responses=_as_json(_errors()),
    **_scoped(READ),
)
def metrics(request: Request) -> Response:
    context = web_context(request)
    with context.connection():
        body = context.metrics.render()
    return Response(body, media_type=CONTENT_TYPE_LATEST)
