"""Who may use the web service: one admin token, as a Bearer header or a signed session cookie.

Every request passes :class:`AuthMiddleware`, which denies by default: only
the paths in :data:`PUBLIC_PATHS` answer without credentials, so a route added
later is protected without anyone remembering to protect it.

* API clients send ``Authorization: Bearer <token>``, compared in constant time.
* The dashboard's login page takes the same token and sets a session cookie:
  signed (itsdangerous, with a key derived from the token, so changing the
  token ends every session), HttpOnly, SameSite=Strict, Secure behind HTTPS,
  expiring after ``MEINGYM_WEB_SESSION_TTL``.
* A state-changing request made with the cookie must carry the session's CSRF
  token (form field ``csrf_token`` or header ``X-CSRF-Token``) and must not
  come from another site (``Sec-Fetch-Site``). Bearer requests need neither:
  a browser never adds that header on its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import html
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from meingym_tasks.queue.keys import load_or_create_secret
from meingym_tasks.settings import Settings
from meingym_tasks.web.config import WebSettings, check_token

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SESSION_COOKIE = "meingym_session"
FLASH_COOKIE = "meingym_flash"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
LOGIN_PATH = "/admin/login"

#: The only paths that answer without the token: probes, and what the login page needs to be shown.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", LOGIN_PATH, "/static/meingym.css", "/static/login.js"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: ``Sec-Fetch-Site`` values of requests a page of this site (or the user, typing a URL) made.
SAME_SITE_FETCH = frozenset({"same-origin", "none"})


def token_file(settings: Settings) -> Path:
    return settings.data_dir / "admin.token"


def admin_token(settings: Settings, web: WebSettings) -> tuple[str, str]:
    """The admin token and where it came from: ``MEINGYM_ADMIN_TOKEN``, or generated once into the data dir."""
    if web.admin_token:
        return web.admin_token, "MEINGYM_ADMIN_TOKEN"
    path = token_file(settings)
    token = load_or_create_secret(path)  # created with mode 0600, never overwritten
    return check_token(str(path), token), str(path)


def tokens_equal(given: str, expected: str) -> bool:
    """Constant-time comparison (of digests, so neither the length nor the content leaks through timing)."""
    a = hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest()
    b = hashlib.sha256(expected.encode("utf-8")).digest()
    return hmac.compare_digest(a, b)


@dataclasses.dataclass(frozen=True)
class Session:
    """A logged-in dashboard user: just the CSRF token bound to this login."""

    csrf: str


class Authenticator:
    """Checks the admin token and issues and reads the signed cookies."""

    def __init__(self, token: str, session_ttl: int) -> None:
        self._token = token
        self.session_ttl = session_ttl
        key = hmac.new(token.encode(), b"meingym-tasks web cookies", hashlib.sha256).hexdigest()
        self._sessions = URLSafeTimedSerializer(key, salt="meingym-tasks.session")
        self._flashes = URLSafeTimedSerializer(key, salt="meingym-tasks.flash")

    def check_token(self, given: str) -> bool:
        return tokens_equal(given, self._token)

    def new_session(self) -> tuple[str, Session]:
        session = Session(csrf=secrets.token_urlsafe(32))
        return self._sessions.dumps({"csrf": session.csrf}), session

    def read_session(self, value: str | None) -> Session | None:
        if not value:
            return None
        try:
            data = self._sessions.loads(value, max_age=self.session_ttl)
        except BadSignature:  # also SignatureExpired
            return None
        csrf = data.get("csrf") if isinstance(data, dict) else None
        return Session(csrf=csrf) if isinstance(csrf, str) and csrf else None

    def dump_flash(self, kind: str, text: str) -> str:
        return self._flashes.dumps({"kind": kind, "text": text})

    def read_flash(self, value: str | None) -> dict[str, str] | None:
        if not value:
            return None
        try:
            data = self._flashes.loads(value, max_age=300)
        except BadSignature:
            return None
        if isinstance(data, dict) and isinstance(data.get("kind"), str) and isinstance(data.get("text"), str):
            return {"kind": data["kind"], "text": data["text"]}
        return None


def route_path(scope: Scope) -> str:
    """The path inside this app, also when a host application mounted it under a prefix."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path


def wants_html(path: str, headers: Headers) -> bool:
    return path.startswith("/admin") or path == "/docs" or "text/html" in headers.get("accept", "")


class AuthMiddleware:
    """Deny every request without valid credentials, except :data:`PUBLIC_PATHS`; enforce CSRF for cookies."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator, max_body_bytes: int) -> None:
        self.app = app
        self.auth = authenticator
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if path in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        state = scope.setdefault("state", {})
        authorization = headers.get("authorization")
        if authorization is not None:
            scheme, _, given = authorization.partition(" ")
            if scheme.lower() != "bearer" or not self.auth.check_token(given.strip()):
                await _unauthorized(scope, receive, send, "invalid_token")
                return
            state["auth"] = "bearer"
            await self.app(scope, receive, send)
            return
        session = self.auth.read_session(_cookie(headers, SESSION_COOKIE))
        if session is None:
            if wants_html(path, headers) and (scope["method"] in SAFE_METHODS or path.startswith("/admin/")):
                # A page, or a dashboard form posted after the session ended: log in first (nothing was done).
                root = scope.get("root_path", "")
                target = path if scope["method"] in SAFE_METHODS else "/admin/jobs"
                if scope["method"] in SAFE_METHODS and scope.get("query_string"):
                    target += "?" + scope["query_string"].decode("latin-1")
                response: Response = RedirectResponse(f"{root}{LOGIN_PATH}?next={quote(target)}", status_code=303)
                await response(scope, receive, send)
            else:
                await _unauthorized(scope, receive, send, None)
            return
        state["auth"] = "session"
        state["session"] = session
        if scope["method"] not in SAFE_METHODS:
            if headers.get("sec-fetch-site", "same-origin") not in SAME_SITE_FETCH:
                await _forbidden(scope, receive, send, path, "cross-site request refused")
                return
            verified, receive = await self._csrf_ok(scope, receive, headers, session)
            if not verified:
                await _forbidden(
                    scope, receive, send, path, "CSRF token missing or wrong; reload the page and try again"
                )
                return
        await self.app(scope, receive, send)

    async def _csrf_ok(
        self, scope: Scope, receive: Receive, headers: Headers, session: Session
    ) -> tuple[bool, Receive]:
        """Check the header, or the form field of an urlencoded body (which is then replayed to the app)."""
        given = headers.get(CSRF_HEADER)
        if given is not None:
            return tokens_equal(given, session.csrf), receive
        if headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return False, receive
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return False, receive
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:  # the size limit outside usually stopped it already
                return False, receive
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        fields = parse_qs(body.decode("latin-1"), keep_blank_values=True)
        values = fields.get(CSRF_FIELD, [])
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return len(values) == 1 and tokens_equal(values[0], session.csrf), replay


def _cookie(headers: Headers, name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


async def _unauthorized(scope: Scope, receive: Receive, send: Send, error: str | None) -> None:
    challenge = 'Bearer realm="meingym-tasks"' + (f', error="{error}"' if error else "")
    message = (
        "the token is not valid"
        if error
        else "authentication required: send 'Authorization: Bearer <token>' or log in at /admin/login"
    )
    response = JSONResponse({"message": message}, status_code=401, headers={"WWW-Authenticate": challenge})
    await response(scope, receive, send)


async def _forbidden(scope: Scope, receive: Receive, send: Send, path: str, message: str) -> None:
    response: Response
    if path.startswith("/admin/"):  # a dashboard form: a page saying what to do, not JSON
        back = html.escape(scope.get("root_path", "") + "/admin/jobs")
        page = f"<!doctype html><title>Refused</title><h1>Refused</h1><p>{html.escape(message)}.</p>"
        response = HTMLResponse(page + f'<p><a href="{back}">Back to the jobs</a></p>', status_code=403)
    else:
        response = JSONResponse({"message": message}, status_code=403)
    await response(scope, receive, send)
