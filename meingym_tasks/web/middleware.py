"""Security headers on every response, HEAD wherever GET is allowed, a limit on request bodies (pure ASGI)."""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from meingym_tasks.web.auth import ASGIApp, Message, Receive, Scope, Send, route_path

#: Scripts and styles only from this origin: no inline script, no eval, nothing from elsewhere.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: Swagger UI (React) sets style attributes, so /docs alone allows inline *styles*; scripts stay 'self' only.
DOCS_CSP = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}


def security_headers(path: str, headers: MutableHeaders) -> None:
    """Set the security headers for an answer on ``path`` (the route's path inside the app)."""
    headers["Content-Security-Policy"] = DOCS_CSP if path == "/docs" else CSP
    for name, value in SECURITY_HEADERS.items():
        headers[name] = value
    if "cache-control" not in headers:
        # Pages and API answers show live, private data; packaged assets revalidate by ETag.
        static = path.startswith(("/static/", "/docs/assets/"))
        headers["Cache-Control"] = "private, no-cache" if static else "no-store"


class SecurityHeadersMiddleware:
    """CSP, framing, sniffing, referrer and caching headers on every HTTP response.

    Starlette's ServerErrorMiddleware sits outside every middleware, so its 500
    answers would miss them: ``errors.py`` sets them on those too.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                security_headers(path, MutableHeaders(scope=message))
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HeadMiddleware:
    """HEAD wherever GET is allowed (RFC 9110): run the GET, send its status and headers, drop the body.

    FastAPI's routes answer HEAD with 405; Starlette's own routes add HEAD by
    themselves. A path without GET still answers HEAD with its 405 and ``Allow``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a body grows past the limit; FastAPI passes HTTPExceptions through."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large; at most {limit} bytes are accepted")


class BodySizeLimitMiddleware:
    """Refuse bodies over ``limit`` bytes: by Content-Length up front, or while a chunked body streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = {"message": f"request body too large; at most {self.limit} bytes are accepted"}
        await JSONResponse(body, status_code=413, headers={"Connection": "close"})(scope, receive, send)
