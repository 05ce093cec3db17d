"""What every request handler needs, built once by ``create_app`` and kept on ``app.state.web``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Request

from meingym_tasks.db.database import database, init_database
from meingym_tasks.settings import Settings
from meingym_tasks.web.auth import Gate
from meingym_tasks.web.config import WebSettings
from meingym_tasks.web.metrics import Metrics
from meingym_tasks.web.schemas import TriggerSchema


@dataclasses.dataclass
class WebContext:
    settings: Settings
    web: WebSettings
    #: Tokens, sessions, throttling (``auth.Gate``).
    auth: Gate
    token_source: str
    metrics: Metrics
    #: The trigger body of the public jobs declared when the app was built (API and dashboard form).
    trigger: TriggerSchema

    @contextmanager
    def connection(self) -> Iterator[None]:
        """The project database's connection for this request, opened and closed in the calling thread.

        Endpoints are sync ``def``s that run in a worker thread; peewee keeps
        one connection per thread, so the connection is opened here, inside
        the endpoint, never in a dependency that may run on another thread.
        """
        init_database(self.settings, pooled=True)
        with database.connection_context():
            yield


def web_context(request: Request) -> WebContext:
    context = request.app.state.web
    assert isinstance(context, WebContext)
    return context


def path_for(request: Request, name: str, /, **params: object) -> str:
    """The path of route ``name`` (with the mount prefix), never a URL made from the request's Host header."""
    return str(request.scope.get("root_path", "")) + str(request.app.url_path_for(name, **params))


def public_url_for(request: Request, name: str, /, **params: object) -> str:
    """The absolute URL of route ``name`` at the configured public address (``MEINGYM_PUBLIC_URL``)."""
    return web_context(request).web.public_url + path_for(request, name, **params)
