"""The ``/admin`` pages: login, the jobs dashboard, a job's detail, access, and the forms that act.

Server-rendered with Jinja2 (autoescaped, templates in the package); the
little JavaScript in ``static/dashboard.js`` polls the JSON API to keep the
counts, the chart, the consumers and the first page of the table live. Every
form posts with the session's CSRF token and answers with a redirect and a
one-time message (a signed cookie), so a reload never repeats an action.
A page shows only what the session's scope may do (a read token sees no
buttons); the routes check the scope all the same. Links and redirects are
paths, never URLs made from the request's Host header.
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from meingym_tasks.access.errors import AccessError, UnknownSession
from meingym_tasks.exceptions import BrokerUnavailable, InvalidJobRequest, JobStateConflict, UnknownJob
from meingym_tasks.jobs.declare import allowed, job_names, value_schema
from meingym_tasks.names import QUEUE_ALIASES, QUEUES
from meingym_tasks.registry import queries as registry_queries
from meingym_tasks.registry.models import FAILED, STATES
from meingym_tasks.web import presenters, services
from meingym_tasks.web.auth import (
    FLASH_COOKIE,
    LOGIN_PATH,
    SAME_SITE_FETCH,
    SESSION_COOKIE,
    Refusal,
    client_address,
)
from meingym_tasks.web.context import path_for, web_context
from meingym_tasks.web.errors import ApiError, field_error, invalid_input
from meingym_tasks.web.permissions import ADMIN, OPERATE, PUBLIC, READ, actor, needs, principal
from meingym_tasks.web.schemas import Filter, TriggerSchema

router = APIRouter(prefix="/admin", include_in_schema=False)

#: The states in the order the dashboard shows them.
STATE_ORDER = ("queued", "scheduled", "running", "retrying", "complete", "failed", "revoked", "expired", "interrupted")
assert set(STATE_ORDER) == set(STATES)
PAGE_SIZES = (20, 50, 100, 200)
#: The longest text a trigger form field takes (the body size limit stops far longer ones first).
MAX_FIELD = 1000

_environment = jinja2.Environment(
    loader=jinja2.PackageLoader("meingym_tasks.web", "templates"),
    autoescape=True,  # every template, whatever its name: data from jobs is never markup
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.filters.update(
    relative=presenters.relative,
    absolute=presenters.absolute,
    pretty_json=presenters.pretty_json,
    duration=presenters.duration,
    arguments_summary=presenters.arguments_summary,
)


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render ``meingym_tasks/<name>`` with what every page needs (CSRF token, scope, one-time message, paths)."""
    who = principal(request)
    flash = None
    web = request.app.state.web
    raw_flash = request.cookies.get(FLASH_COOKIE)
    if raw_flash:
        flash = web.auth.read_flash(raw_flash)
    template = _environment.get_template(f"meingym_tasks/{name}")

    def url_for(route: str, /, **params: Any) -> str:
        return path_for(request, route, **params)

    html = template.render(
        request=request,
        url_for=url_for,
        csrf=(who.csrf or "") if who is not None else "",
        logged_in=who is not None and who.session_id is not None,
        who=who,
        can_operate=who is not None and who.may(OPERATE),
        can_admin=who is not None and who.may(ADMIN),
        flash=flash,
        now=datetime.now(UTC),
        **context,
    )
    response = HTMLResponse(html, status_code=status)
    if raw_flash:
        response.delete_cookie(FLASH_COOKIE, path=_cookie_path(request))
    return response


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return render(request, "error.html", status=status, status_code=status, message=message)


def _cookie_path(request: Request) -> str:
    return request.scope.get("root_path") or "/"


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=_cookie_path(request),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _redirect(request: Request, url: str, kind: str | None = None, text: str | None = None) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    if kind and text:
        context = web_context(request)
        _set_cookie(request, response, FLASH_COOKIE, context.auth.dump_flash(kind, text), 300)
    return response


def _safe_next(request: Request, target: str | None) -> str:
    """Only a path of this app: never another host (``//evil``, ``https://...``, ``/\\evil``)."""
    root = request.scope.get("root_path", "")
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or "\\" in target:
        return f"{root}/admin/jobs"
    return root + target


# --------------------------------------------------------------------------- login


@router.get("/login", dependencies=[needs(PUBLIC)])
def login_page(request: Request, next: str | None = None) -> Response:
    context = web_context(request)
    if context.auth.session(request.cookies.get(SESSION_COOKIE)) is not None:
        return RedirectResponse(_safe_next(request, next), status_code=303)
    # A link from another site arrives without the SameSite=Strict cookie; reloading from here sends it.
    cross_site = request.headers.get("sec-fetch-site") == "cross-site"
    return render(request, "login.html", next=next or "/admin/jobs", error=None, reload=cross_site)


@router.post("/login", dependencies=[needs(PUBLIC)])
def login(
    request: Request,
    token: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/admin/jobs",
) -> Response:
    """Check the token (throttled like a Bearer token) and start a session in the database."""
    context = web_context(request)
    if request.headers.get("sec-fetch-site", "same-origin") not in SAME_SITE_FETCH:
        return render(request, "login.html", status=403, next=next, error="Cross-site login refused.", reload=False)
    found = context.auth.login(token, client_address(request.scope), request.headers.get("user-agent"))
    if isinstance(found, Refusal):
        error = "That token is not valid." if found.status == 401 else f"Refused: {found.message}."
        page = render(request, "login.html", status=found.status, next=next, error=error, reload=False)
        if found.retry_after is not None:
            page.headers["Retry-After"] = str(found.retry_after)
        return page
    secret, _ = found
    response = RedirectResponse(_safe_next(request, next), status_code=303)
    _set_cookie(request, response, SESSION_COOKIE, secret, context.auth.session_ttl)
    return response


@router.post("/logout", dependencies=[needs(READ)])
def logout(request: Request) -> Response:
    """End the session in the database (the cookie is refused at once, everywhere) and drop the cookie."""
    who = principal(request)
    if who is not None:
        with contextlib.suppress(UnknownSession):  # revoked a moment ago: logged out all the same
            web_context(request).auth.logout(who, client_address(request.scope))
    root = request.scope.get("root_path", "")
    response = RedirectResponse(f"{root}{LOGIN_PATH}", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=_cookie_path(request), httponly=True, samesite="strict")
    return response


@router.get("", dependencies=[needs(READ)])
def admin_home(request: Request) -> Response:
    return RedirectResponse(path_for(request, "dashboard"), status_code=303)


# --------------------------------------------------------------------------- pages


@router.get("/jobs", name="dashboard", dependencies=[needs(READ)])
def dashboard(
    request: Request,
    state: Annotated[Filter | None, Query()] = None,
    queue: Annotated[Filter | None, Query()] = None,
    name: Annotated[Filter | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=registry_queries.MAX_PAGE)] = 50,
    cursor: Annotated[Filter | None, Query()] = None,
    children: Annotated[bool, Query()] = False,
) -> Response:
    context = web_context(request)
    state, queue, name = state or None, queue or None, name or None
    page, _ = services.fetch_page(
        context, state=state, queue=queue, name=name, limit=limit, cursor=cursor, children=children, with_counts=False
    )
    overview = services.queues_overview(context)  # counts them once, for the tiles
    filters = {"state": state or "", "queue": queue or "", "name": name or "", "limit": limit, "children": children}
    query = {k: ("1" if v is True else v) for k, v in filters.items() if v and not (k == "limit" and v == 50)}
    older = f"?{urlencode({**query, 'cursor': page['next']})}" if page["next"] else None
    newest = f"?{urlencode(query)}" if cursor else None
    return render(
        request,
        "jobs.html",
        page_name="dashboard",
        overview=overview["queues"],
        charts={q: presenters.chart(info["throughput"]) for q, info in overview["queues"].items()},
        jobs=page["jobs"],
        filters=filters,
        older=older,
        newest=newest,
        paged=bool(cursor),
        states=STATE_ORDER,
        queues=QUEUES,
        job_names=job_names(),
        trigger_jobs=trigger_fields(context.trigger),
        aliases={queue: alias for alias, queue in QUEUE_ALIASES.items()},
        page_sizes=PAGE_SIZES,
        timezone=context.settings.timezone,
        max_delay=context.settings.max_schedule_ahead,
        failed_state=FAILED,
    )


@router.get("/jobs/{job_id}", name="job_page", dependencies=[needs(READ)])
def job_page(request: Request, job_id: str) -> Response:
    job = services.read_job(web_context(request), job_id)
    return render(
        request,
        "job.html",
        page_name="job",
        job=job,
        timeline=presenters.timeline(job),
        can_retry=presenters.can_retry(job),
        can_cancel=presenters.can_cancel(job),
    )


# --------------------------------------------------------------------------- actions


def _job_url(request: Request, job_id: str) -> str:
    return path_for(request, "job_page", job_id=job_id)


def _dashboard_url(request: Request, anchor: str = "") -> str:
    return path_for(request, "dashboard") + anchor


def _failure(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        return exc.message
    return str(exc)


ACTION_ERRORS = (ApiError, InvalidJobRequest, UnknownJob, JobStateConflict, BrokerUnavailable, AccessError)


@router.post("/jobs/trigger", name="trigger_form", dependencies=[needs(OPERATE)])
async def trigger_form(request: Request) -> Response:
    """Trigger the chosen job with the fields the form showed for it (``trigger_fields``).

    The fields are text; each becomes the JSON value its schema asks for (an
    integer only from ASCII digits), and the body is checked as the API checks it.
    """
    context = web_context(request)
    back = _dashboard_url(request, "#trigger")
    form = await request.form()
    texts = {key: value for key, value in form.multi_items() if isinstance(value, str)}
    try:
        body = trigger_body(context.trigger, texts)
        job = context.trigger.validate(body)
        queued, record = await run_in_threadpool(services.trigger, context, job, actor(request))
    except ValidationError as exc:
        return _redirect(request, back, "error", f"Not triggered: {invalid_input(exc.errors()).message}")
    except ACTION_ERRORS as exc:
        return _redirect(request, back, "error", f"Not triggered: {_failure(exc)}")
    kind = "info" if queued.get("deduplicated") else "ok"
    message = services.trigger_message(body["action"], queued, record)
    return _redirect(request, _job_url(request, queued["job_id"]), kind, message)


@router.post("/jobs/retry-failed", name="retry_failed_form", dependencies=[needs(OPERATE)])
def retry_failed_form(request: Request, queue: Annotated[str, Form(max_length=100)] = "") -> Response:
    try:
        outcome = services.retry_all_failed(web_context(request), queue, actor(request))
    except ACTION_ERRORS as exc:
        return _redirect(request, _dashboard_url(request), "error", f"Nothing retried: {_failure(exc)}")
    text = outcome["message"] + (" (more are left: press again)" if outcome["more"] else "")
    return _redirect(request, _dashboard_url(request), "ok", text)


@router.post("/jobs/{job_id}/retry", name="retry_form", dependencies=[needs(OPERATE)])
def retry_form(request: Request, job_id: str) -> Response:
    try:
        services.retry_one(web_context(request), job_id, actor(request))
    except ACTION_ERRORS as exc:
        return _redirect(request, _job_url(request, job_id), "error", f"Not retried: {_failure(exc)}")
    return _redirect(request, _job_url(request, job_id), "ok", "Queued again: a new attempt will run shortly.")


@router.post("/jobs/{job_id}/cancel", name="cancel_form", dependencies=[needs(OPERATE)])
def cancel_form(request: Request, job_id: str) -> Response:
    try:
        job = services.cancel_one(web_context(request), job_id, actor(request))
    except ACTION_ERRORS as exc:
        return _redirect(request, _job_url(request, job_id), "error", f"Not cancelled: {_failure(exc)}")
    return _redirect(request, _job_url(request, job_id), "ok", services.cancel_message(job))


# --------------------------------------------------------------------------- access (admin)


@router.get("/access", name="access_page", dependencies=[needs(ADMIN)])
def access_page(request: Request) -> Response:
    """Tokens, open sessions (each can be revoked) and the latest entries of the audit trail."""
    context = web_context(request)
    return render(
        request,
        "access.html",
        page_name="access",
        tokens=services.list_tokens(context)["tokens"],
        sessions=services.list_sessions(context)["sessions"],
        entries=services.audit_page(context, limit=100)["entries"],
        builtin=context.token_source,
    )


def _access_url(request: Request) -> str:
    return path_for(request, "access_page")


@router.post("/sessions/{session_id}/revoke", name="revoke_session_form", dependencies=[needs(ADMIN)])
def revoke_session_form(request: Request, session_id: str) -> Response:
    try:
        outcome = services.revoke_session(web_context(request), session_id, actor(request))
    except ACTION_ERRORS as exc:
        return _redirect(request, _access_url(request), "error", f"Not ended: {_failure(exc)}")
    return _redirect(request, _access_url(request), "ok", outcome["message"])


@router.post("/tokens/{name}/revoke", name="revoke_token_form", dependencies=[needs(ADMIN)])
def revoke_token_form(request: Request, name: str) -> Response:
    try:
        outcome = services.revoke_token(web_context(request), name, actor(request))
    except ACTION_ERRORS as exc:
        return _redirect(request, _access_url(request), "error", f"Not revoked: {_failure(exc)}")
    return _redirect(request, _access_url(request), "ok", outcome["message"])


# --------------------------------------------------------------------------- the trigger form

INTEGER = re.compile(r"[+-]?[0-9]+")
NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def trigger_fields(schema: TriggerSchema) -> dict[str, dict[str, Any]]:
    """Per public job: its description and the form fields of its parameters, from the trigger schema."""
    described = {}
    for action, model in schema.jobs.items():
        fields = []
        for name, field_schema in schema.parameters(action).items():
            value = value_schema(field_schema)
            fields.append(
                {
                    "name": name,
                    "label": field_schema.get("title") or name.replace("_", " ").capitalize(),
                    "input": _input_of(value),
                    "required": model.model_fields[name].is_required(),
                    "options": [str(option) for option in value.get("enum", [])],
                    "min": value.get("minimum", ""),
                    "max": value.get("maximum", ""),
                    "max_length": value.get("maxLength", ""),
                    "help": _help(field_schema),
                }
            )
        described[action] = {"description": model.__doc__ or "", "fields": fields}
    return described


def _help(field_schema: dict[str, Any]) -> str:
    description = field_schema.get("description", "").rstrip(".")
    rule = f"Allowed: {allowed(field_schema)}."
    return f"{description}. {rule}" if description else rule


def _input_of(value: dict[str, Any]) -> str:
    """The HTML input for a value schema: number, date, datetime-local, checkbox, select or text."""
    if "enum" in value:
        return "select"
    kind, shape = value.get("type"), value.get("format")
    if kind == "integer":
        return "integer"
    if kind == "number":
        return "number"
    if kind == "boolean":
        return "checkbox"
    return {"date": "date", "date-time": "datetime-local"}.get(shape or "", "text")


def trigger_body(schema: TriggerSchema, texts: dict[str, str]) -> dict[str, Any]:
    """The JSON body a form's text fields stand for: the chosen job's fields, delay and eta.

    A number field becomes a number only when it is one in ASCII (``²`` or
    ``١٢`` stay text and are refused by the schema, naming the field); an empty
    field is left out.
    """
    for name, text in texts.items():
        if len(text) > MAX_FIELD:
            raise field_error(name, f"at most {MAX_FIELD} characters are allowed", "string_too_long")
    action = texts.get("action", "")
    body: dict[str, Any] = {"action": action}
    known = schema.parameters(action) if action in schema.jobs else {}
    options = {"delay": {"type": "number"}, "eta": {"type": "string", "format": "date-time"}}
    for name, field_schema in {**known, **options}.items():
        text = texts.get(name, "").strip()
        if text:
            body[name] = _json_value(value_schema(field_schema), text)
    return body


def _json_value(value: dict[str, Any], text: str) -> Any:
    kind = value.get("type")
    if kind == "integer" and INTEGER.fullmatch(text):
        return int(text)
    if kind == "number" and NUMBER.fullmatch(text):
        return float(text)
    if kind == "boolean":
        return text in ("on", "true", "1")
    return text
