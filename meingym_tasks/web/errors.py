"""Every error as a JSON body with a ``message`` (an HTML page on the dashboard's paths).

Domain errors map to one status each: an unknown job is 404, a state that
forbids the change 409, a broker or database that cannot be reached 503.
Validation errors are 422 and name each field (``errors[].field``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import peewee
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from playhouse.pool import MaxConnectionsExceeded
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from meingym_tasks.exceptions import BrokerUnavailable, InvalidJobRequest, JobStateConflict, UnknownJob
from meingym_tasks.queue.brokers import broker_errors
from meingym_tasks.web.auth import route_path

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


def _respond(
    request: Request, status: int, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> Response:
    if route_path(request.scope).startswith("/admin"):
        from meingym_tasks.web.dashboard import error_page

        return error_page(request, status, message)
    return JSONResponse({"message": message, **extra}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _respond(request, exc.status, exc.message, **exc.extra)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return _respond(request, exc.status_code, message, headers=exc.headers)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"field": _field_name(e.get("loc", ())), "message": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        message = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
        return _respond(request, 422, message, errors=errors)

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

    async def database_down(request: Request, exc: Exception) -> Response:
        logger.warning("database unavailable: %s", exc)
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return _respond(request, 503, f"the database is unavailable: {reason}", headers={"Retry-After": "5"})

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(UnknownJob, unknown_job)
    app.add_exception_handler(InvalidJobRequest, invalid_request)
    app.add_exception_handler(JobStateConflict, conflict)
    app.add_exception_handler(BrokerUnavailable, broker_down)
    for error in broker_errors():
        if issubclass(error, Exception):
            app.add_exception_handler(error, broker_down)
    for db_error in (peewee.OperationalError, peewee.InterfaceError, MaxConnectionsExceeded):
        app.add_exception_handler(db_error, database_down)
