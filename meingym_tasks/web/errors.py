"""Every error as a JSON body with a ``message`` (an HTML page on the dashboard's paths).

Domain errors map to one status each: an unknown job, token or session is
404, a state that forbids the change (or a token name taken) 409, a broker or
database that cannot be reached 503. An unexpected error is a 500 that says
only that (the traceback goes to the log), with the security headers too.
Validation errors are 422 and name each field (``errors[].field``) and what it
allows; an unknown action is 400 with the ``allowed`` ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, JSONResponse, Response

from meingym_tasks.access.errors import InvalidTokenRequest, TokenExists, UnknownSession, UnknownToken
from meingym_tasks.exceptions import (
    BrokerUnavailable,
    InvalidJobArguments,
    InvalidJobRequest,
    JobStateConflict,
    UnknownJob,
)
from meingym_tasks.queue.brokers import broker_errors
from meingym_tasks.web.auth import DATABASE_ERRORS, route_path

logger = logging.getLogger("meingym_tasks.web")


class ApiError(Exception):
    """An answer other than success: the status, a message and optional details (``allowed``, ``errors``)."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def field_error(fields: str | list[str], message: str, kind: str = "value_error") -> ApiError:
    """A 422 naming the field(s) at fault, shaped like the validation errors FastAPI raises."""
    names = [fields] if isinstance(fields, str) else fields
    errors = [{"field": name, "message": message, "type": kind} for name in names]
    return ApiError(422, f"{', '.join(names)}: {message}", errors=errors)


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or str(loc[0] if loc else "body")


def invalid_input(errors: Sequence[Mapping[str, Any]]) -> ApiError:
    """pydantic's errors as one answer: 400 for an unknown action (with the allowed ones), else 422 per field."""
    for error in errors:
        if error.get("type") == "unknown_action":
            return ApiError(400, str(error["msg"]), allowed=list(error.get("ctx", {}).get("allowed", [])))
    fields = [
        {"field": _field_name(e.get("loc", ())), "message": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in errors
    ]
    return ApiError(422, "; ".join(f"{e['field']}: {e['message']}" for e in fields) or "invalid request", errors=fields)


#: Renders an error as a page for the dashboard's paths: ``page(request, status, message)``.
ErrorPage = Callable[[Request, int, str], Response]


def _respond(
    request: Request, status: int, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> Response:
    page: ErrorPage | None = getattr(request.app.state, "error_page", None)
    if page is not None and route_path(request.scope).startswith("/admin"):
        return page(request, status, message)
    return JSONResponse({"message": message, **extra}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI, error_page: ErrorPage | None = None) -> None:
    """Register the handlers on ``app``; ``error_page`` answers the dashboard's paths with a page."""
    app.state.error_page = error_page

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _respond(request, exc.status, exc.message, **exc.extra)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return _respond(request, exc.status_code, message, headers=exc.headers)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        error = invalid_input(exc.errors())
        return _respond(request, error.status, error.message, **error.extra)

    async def invalid_arguments(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, InvalidJobArguments)
        return _respond(request, 422, str(exc), errors=exc.errors)

    async def unknown_job(request: Request, exc: Exception) -> Response:
        return _respond(request, 404, str(exc))

    async def invalid_request(request: Request, exc: Exception) -> Response:
        return _respond(request, 400, str(exc))

    async def conflict(request: Request, exc: Exception) -> Response:
        return _respond(request, 409, str(exc))

    async def broker_down(request: Request, exc: Exception) -> Response:
        logger.warning("broker unavailable: %s", exc)
        text = str(exc) if isinstance(exc, BrokerUnavailable) else f"the queue broker is unavailable: {exc}"
        return _respond(request, 503, " ".join(text.split()), headers={"Retry-After": "5"})

    async def server_error(request: Request, exc: Exception) -> Response:
        # Answered by Starlette's ServerErrorMiddleware, outside every middleware: set the headers here.
        # The traceback goes to the server's log (the exception is raised again after this answer).
        from meingym_tasks.web.middleware import security_headers

        message = "internal server error; the reason is in the server's log"
        response: Response
        if route_path(request.scope).startswith("/admin"):  # a plain page: rendering may be what failed
            page = f"<!doctype html><title>Error 500</title><h1>Something went wrong</h1><p>{message}.</p>"
            response = HTMLResponse(page, status_code=500)
        else:
            response = JSONResponse({"message": message}, status_code=500)

        security_headers(route_path(request.scope), response.headers)
        return response

    async def database_down(request: Request, exc: Exception) -> Response:
        logger.warning("database unavailable: %s", exc)
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return _respond(request, 503, f"the database is unavailable: {reason}", headers={"Retry-After": "5"})

    app.add_exception_handler(Exception, server_error)
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(UnknownJob, unknown_job)
    app.add_exception_handler(InvalidJobRequest, invalid_request)
    app.add_exception_handler(InvalidJobArguments, invalid_arguments)
    app.add_exception_handler(JobStateConflict, conflict)
    app.add_exception_handler(TokenExists, conflict)
    app.add_exception_handler(InvalidTokenRequest, conflict)
    app.add_exception_handler(UnknownToken, unknown_job)
    app.add_exception_handler(UnknownSession, unknown_job)
    app.add_exception_handler(BrokerUnavailable, broker_down)
    for error in broker_errors():
        if issubclass(error, Exception):
            app.add_exception_handler(error, broker_down)
    for db_error in DATABASE_ERRORS:
        app.add_exception_handler(db_error, database_down)
