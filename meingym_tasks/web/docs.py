"""``/docs``: Swagger UI from a packaged copy, so the page works on a closed network.

FastAPI's own docs page loads Swagger UI from a CDN and starts it with an
inline script; both break here (no internet, and a CSP without inline
scripts). This page serves the files of the ``swagger-ui-bundle-v2`` package
(Swagger UI 5, which reads OpenAPI 3.1) and starts Swagger UI from
``static/docs.js``. Like every page, it needs a token (read scope: the
dashboard's session); "Try it out" sends the session's CSRF token with each
request.
"""

from __future__ import annotations

import functools

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from meingym_tasks.web.errors import ApiError
from meingym_tasks.web.permissions import READ, needs

router = APIRouter(include_in_schema=False, dependencies=[needs(READ)])

#: The only files served from the Swagger UI package.
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}


def swagger_ui_path() -> object:
    """The packaged Swagger UI directory (an importlib.resources Traversable)."""
    try:
        from swagger_ui_bundle import swagger_ui_path as path
    except ImportError:  # pragma: no cover - a dependency of the package
        raise ApiError(
            503, "Swagger UI is not installed; pip install swagger-ui-bundle-v2 (a dependency of meingym-tasks)"
        ) from None
    return path


@router.get("/docs", name="docs")
def docs(request: Request) -> HTMLResponse:
    from meingym_tasks.web.dashboard import render

    swagger_ui_path()
    return render(request, "docs.html", page_name="docs")


@router.get("/docs/assets/{name}", name="docs_asset")
def docs_asset(name: str) -> Response:
    if name not in ASSETS:
        raise ApiError(404, f"no docs asset {name!r}")
    # The files change only with the package version: let the browser keep them for a day.
    return Response(_read(name), media_type=ASSETS[name], headers={"Cache-Control": "private, max-age=86400"})


@functools.lru_cache(maxsize=len(ASSETS))
def _read(name: str) -> bytes:
    return (swagger_ui_path() / name).read_bytes()  # type: ignore[operator, no-any-return]
