"""What each route needs: every route declares a scope, and the app refuses to start when one does not.

Routes declare ``dependencies=[needs(OPERATE)]`` (or ``needs(PUBLIC)`` for the
probes and the login page). :func:`check_route_scopes` runs when the app is
built and raises for a route without a declaration, so a new route cannot
ship without saying who may call it; the middleware has already refused
anyone without credentials, and every credential carries at least ``read``.
A caller whose scope is too small gets 403 naming the missing scope, and the
refusal goes to the audit trail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Mount

from meingym_tasks.access import audit
from meingym_tasks.access.tokens import ADMIN, OPERATE, READ, SCOPES, Principal
from meingym_tasks.web.auth import PUBLIC_PATHS, client_address, route_path
from meingym_tasks.web.errors import ApiError

__all__ = ["ADMIN", "OPERATE", "PUBLIC", "READ", "actor", "check_route_scopes", "needs", "principal", "route_scope"]

#: Open to anyone: only the paths the middleware lets through without credentials (auth.PUBLIC_PATHS).
PUBLIC = "public"
#: Routes that are not FastAPI routes (no dependencies to declare with) and what they need.
OTHER_ROUTES = {"/openapi.json": READ, "/static": READ}


def principal(request: Request) -> Principal | None:
    found = getattr(request.state, "principal", None)
    return found if isinstance(found, Principal) else None


def actor(request: Request) -> audit.Actor:
    """Who acts in this request: the token's name, the interface (dashboard for /admin), the client address."""
    who = principal(request)
    via = audit.DASHBOARD if route_path(request.scope).startswith("/admin") else audit.API
    return audit.Actor(who.name if who else "unauthenticated", via, client_address(request.scope))


def needs(scope: str) -> Any:
    """The dependency that declares (and checks) the scope a route needs."""
    if scope not in (PUBLIC, *SCOPES):
        raise ValueError(f"unknown scope {scope!r}; allowed: {PUBLIC}, {', '.join(SCOPES)}")

    def check(request: Request) -> None:
        if scope == PUBLIC:
            return
        who = principal(request)
        if who is None:  # the middleware lets no one through without credentials; never reached
            raise ApiError(401, "authentication required")
        if who.may(scope):
            return
        message = (
            f"this needs the {scope} scope; the token {who.name!r} has {who.scope} "
            f"(`meingym-tasks tokens create NAME --scope {scope}` makes one that may)"
        )
        _record_refusal(request, scope, message)
        raise ApiError(403, message, missing_scope=scope)

    check.required_scope = scope  # type: ignore[attr-defined]
    return Depends(check)


def _record_refusal(request: Request, scope: str, message: str) -> None:
    from meingym_tasks.web.context import web_context

    route = request.scope.get("route")
    action = getattr(route, "name", None) or route_path(request.scope)
    target = ", ".join(str(v) for v in request.path_params.values()) or route_path(request.scope)
    with web_context(request).connection():
        audit.write(audit.Entry(actor(request), action, target, message, {"missing_scope": scope}, audit.REFUSED))


def route_scope(route: BaseRoute) -> str | None:
    """The scope ``route`` declares, or None when it declares none."""
    if isinstance(route, APIRoute):
        found = [
            getattr(dependency.dependency, "required_scope", None)
            for dependency in route.dependencies
            if getattr(dependency.dependency, "required_scope", None)
        ]
        return found[0] if len(found) == 1 else None
    path = getattr(route, "path", "")
    return OTHER_ROUTES.get(path)


def routes_of(app: FastAPI) -> Iterator[tuple[BaseRoute, str]]:
    """Every route with its full path, also those of included routers."""
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI >= 0.16x includes routers lazily
    except ImportError:  # pragma: no cover - older FastAPI: app.routes is already flat
        for route in app.routes:
            yield route, getattr(route, "path", "")
        return
    for context in iter_route_contexts(app.routes):
        yield context.original_route, context.path or ""


def check_route_scopes(app: FastAPI, describe: Callable[[str, str], None] | None = None) -> dict[str, str]:
    """Every route's scope by path and methods; raises RuntimeError naming any route without one.

    A route declared public must be one of :data:`PUBLIC_PATHS` (and the other
    way round), so the middleware and the declarations cannot disagree.
    """
    found: dict[str, str] = {}
    missing = []
    for route, path in routes_of(app):
        scope = route_scope(route)
        methods = ",".join(sorted(getattr(route, "methods", None) or {"GET"})) if not isinstance(route, Mount) else "*"
        key = f"{methods} {path}"
        if scope is None:
            missing.append(key)
            continue
        if (scope == PUBLIC) != (path in PUBLIC_PATHS):
            missing.append(f"{key} (declared {scope}, but {'not ' if path not in PUBLIC_PATHS else ''}a public path)")
            continue
        found[key] = scope
        if describe is not None:
            describe(key, scope)
    if missing:
        raise RuntimeError("routes without a declared scope (add dependencies=[needs(...)]): " + "; ".join(missing))
    return found
