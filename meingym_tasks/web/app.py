"""``create_app(settings)``: the API, the dashboard, the probes and the metrics as one ASGI app.

The app can run alone (``meingym-tasks web``) or be mounted in a host
application (``host.mount("/tasks", create_app(settings))``): paths, links and
cookies follow the mount point.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from meingym_tasks import __version__
from meingym_tasks.db.database import init_database
from meingym_tasks.queue import queues
from meingym_tasks.settings import Settings
from meingym_tasks.web import dashboard, docs, routes
from meingym_tasks.web.auth import AuthMiddleware, Gate, admin_token
from meingym_tasks.web.config import WebSettings
from meingym_tasks.web.context import WebContext
from meingym_tasks.web.errors import install_error_handlers
from meingym_tasks.web.metrics import Metrics
from meingym_tasks.web.middleware import BodySizeLimitMiddleware, HeadMiddleware, SecurityHeadersMiddleware
from meingym_tasks.web.permissions import PUBLIC, check_route_scopes
from meingym_tasks.web.schemas import TriggerSchema, trigger_schema

DESCRIPTION = """
MeinGym's background jobs: trigger them, follow them, retry and cancel them.

**Authentication**: every endpoint but `/healthz` and `/readyz` needs a token, as
`Authorization: Bearer <token>` (press *Authorize*), or the dashboard's session cookie
(then state-changing requests also need the `X-CSRF-Token` header, which this page adds).
Each token has one scope: **read** (every GET, `/metrics`), **operate** (also trigger, retry, cancel)
or **admin** (also purge, tokens, sessions, the audit trail); each operation names the scope it needs
(`x-required-scope`), and a smaller one is answered 403 with `missing_scope`. Repeated failed tokens
from one address are answered 429 with `Retry-After`.
Errors are JSON with a `message`; 422 answers name each field in `errors[].field`.
"""


def create_app(settings: Settings | None = None, web_settings: WebSettings | None = None) -> FastAPI:
    """Build the web app for ``settings`` (default: the environment) and bind the queues and database to them.

    The built-in admin token is ``MEINGYM_ADMIN_TOKEN`` or, when unset, the one
    in ``<data dir>/admin.token``, generated (mode 0600) on first use; named
    tokens, sessions and the audit trail are in the project database. Nothing
    connects yet: the broker and the database are reached on the first request.
    Raises RuntimeError when a route declares no scope (``permissions.py``).
    """
    settings = settings or Settings.from_env()
    web_settings = web_settings or WebSettings.from_env()
    queues.configure(settings)
    init_database(settings, pooled=True)
    token, source = admin_token(settings, web_settings)
    metrics = Metrics()
    gate = Gate(settings, web_settings, token, metrics)

    app = FastAPI(
        title="meingym-tasks",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,  # FastAPI's page loads Swagger UI from a CDN; ours is packaged (docs.py)
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        openapi_tags=[
            {"name": "jobs", "description": "Trigger, list, follow, retry and cancel jobs"},
            {"name": "queues", "description": "Queue depth, throughput and consumers"},
            {"name": "access", "description": "Tokens, dashboard sessions and the audit trail (admin scope)"},
            {"name": "operations", "description": "Probes and metrics"},
        ],
    )
    from meingym_tasks.jobs import public_jobs  # importing the jobs declares them

    trigger = trigger_schema(public_jobs(), settings)
    app.state.web = WebContext(
        settings=settings, web=web_settings, auth=gate, token_source=source, metrics=metrics, trigger=trigger
    )
    install_error_handlers(app, error_page=dashboard.error_page)
    app.include_router(routes.trigger_router(trigger))
    app.include_router(routes.router)
    app.include_router(routes.probes)
    app.include_router(dashboard.router)
    app.include_router(docs.router)
    app.mount("/static", StaticFiles(directory=str(files("meingym_tasks.web") / "static")), name="static")
    scopes = check_route_scopes(app)
    _declare_bearer(app, trigger)

    # Outermost first: headers on every answer (also 401/413/429), HEAD as GET, the size limit, authentication.
    app.add_middleware(AuthMiddleware, gate=gate, max_body_bytes=web_settings.max_body_bytes)
    app.add_middleware(BodySizeLimitMiddleware, limit=web_settings.max_body_bytes)
    app.add_middleware(HeadMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    app.state.route_scopes = scopes
    return app


def _declare_bearer(app: FastAPI, trigger: TriggerSchema) -> None:
    """Describe the Bearer token in the OpenAPI document (Swagger UI's Authorize button).

    Also puts the trigger body's schemas back as pydantic wrote them (exact bounds, see
    ``TriggerSchema.components``).
    """
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(trigger.components())
            schema["components"]["securitySchemes"] = {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token: the built-in admin token or one of `meingym-tasks tokens create`",
                }
            }
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    scope = operation.get("x-required-scope", PUBLIC)
                    operation["security"] = [] if scope == PUBLIC else [{"bearer": []}]
                    if scope != PUBLIC:
                        needed = f"Needs the **{scope}** scope."
                        operation["description"] = f"{operation.get('description', '')}\n\n{needed}".strip()
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
