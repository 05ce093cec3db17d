"""Who is asking: a named token (Bearer header) or a dashboard session (cookie), checked against the database.

Every request passes :class:`AuthMiddleware`, which denies by default: only
the paths in :data:`PUBLIC_PATHS` answer without credentials, so a route added
later is protected without anyone remembering to protect it. What a caller may
do once known is the route's scope (``permissions.py``).

* API clients send ``Authorization: Bearer <token>``: the built-in admin token
  (compared digest to digest in constant time) or a stored one (looked up by
  its SHA-256 digest, :mod:`meingym_tasks.access.tokens`).
* The dashboard's login page takes the same tokens and starts a server-side
  session (:mod:`meingym_tasks.access.sessions`): the cookie holds only a
  random secret, HttpOnly, SameSite=Strict, Secure behind HTTPS. Logout,
  revoking the session or its token, and the idle and absolute timeouts end it
  at once, in every worker.
* A state-changing request made with the cookie must carry the session's CSRF
  token (form field ``csrf_token`` or header ``X-CSRF-Token``) and must not
  come from another site (``Sec-Fetch-Site``). Bearer requests need neither:
  a browser never adds that header on its own.
* Failed tokens are counted per client address and per token name
  (:mod:`meingym_tasks.access.throttle`); past the free ones, attempts are
  refused with 429 and ``Retry-After`` without being checked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import html
import logging
import re
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import anyio.to_thread
import peewee
from itsdangerous import BadSignature, URLSafeTimedSerializer
from playhouse.pool import MaxConnectionsExceeded
from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from meingym_tasks.access import audit, sessions, throttle, tokens
from meingym_tasks.access.tokens import Principal
from meingym_tasks.db.database import database, init_database
from meingym_tasks.queue.keys import load_or_create_secret
from meingym_tasks.settings import Settings
from meingym_tasks.web.config import WebSettings, check_token

logger = logging.getLogger("meingym_tasks.web")

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
#: A session cookie is 32 random bytes, URL-safe base64: anything else is not looked up.
SESSION_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")
#: The database cannot be reached: 503 (the request did nothing).
DATABASE_ERRORS: tuple[type[Exception], ...] = (peewee.OperationalError, peewee.InterfaceError, MaxConnectionsExceeded)


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


def client_address(scope: Scope) -> str:
    """The client's address as the server saw it (uvicorn puts a trusted proxy's X-Forwarded-For there)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


@dataclasses.dataclass(frozen=True)
class Refusal:
    """Credentials not accepted: 401 (wrong) or 429 (too many failures; ``retry_after`` seconds)."""

    status: int
    message: str
    retry_after: int | None = None


class Gate:
    """Checks tokens and sessions against the database, counts failures, records logins and lockouts.

    Its methods are synchronous (peewee) and open their own connection; the
    middleware runs them in a worker thread.
    """

    def __init__(self, settings: Settings, web: WebSettings, admin: str, metrics: Any = None) -> None:
        self.settings = settings
        self.session_ttl = web.session_ttl
        self.session_policy = sessions.SessionPolicy(ttl=web.session_ttl, idle=web.session_idle)
        self.throttle_policy = throttle.ThrottlePolicy(
            max_failures=web.auth_max_failures, name_failures=4 * web.auth_max_failures, max_lock=web.auth_lockout_max
        )
        self.metrics = metrics
        self._admin_hash = tokens.digest(admin)
        key = hmac.new(admin.encode(), b"meingym-tasks web cookies", hashlib.sha256).hexdigest()
        self._flashes = URLSafeTimedSerializer(key, salt="meingym-tasks.flash")

    @contextmanager
    def connection(self) -> Iterator[None]:
        init_database(self.settings, pooled=True)
        with database.connection_context():
            yield

    # -- credentials -----------------------------------------------------------------------------

    def bearer(self, given: str | None, client: str) -> Principal | Refusal:
        """The principal of a Bearer token (``None``: a malformed header, a failure all the same)."""
        with self.connection():
            return self._check(given, client, "bearer")

    def session(self, secret: str | None) -> Principal | None:
        """The principal of a session cookie, or None (no cookie, unknown, ended, timed out, token revoked)."""
        if not secret or not SESSION_SECRET.fullmatch(secret):
            return None
        with self.connection():
            return sessions.resolve(secret, self._admin_hash, self.session_policy)

    def login(self, given: str, client: str, user_agent: str | None) -> tuple[str, Principal] | Refusal:
        """Check a token typed into the login form; on success a new session: its cookie secret and principal."""
        with self.connection():
            found = self._check(given, client, "login")
            if isinstance(found, Refusal):
                return found
            secret, principal = sessions.start(
                found.name,
                tokens.digest(given),
                client=client,
                user_agent=user_agent,
                policy=self.session_policy,
                scope=found.scope,
            )
            audit.record(
                audit.Actor(found.name, audit.DASHBOARD, client),
                "login",
                f"session {principal.session_id}",
                message=f"logged in with scope {found.scope}",
                detail={"user_agent": (user_agent or "")[: sessions.USER_AGENT_LENGTH]},
            )
            return secret, principal

    def logout(self, principal: Principal, client: str) -> None:
        if principal.session_id is None:
            return
        with (
            self.connection(),
            audit.recorded(
                audit.Actor(principal.name, audit.DASHBOARD, client),
                "logout",
                f"session {principal.session_id}",
                refusals=(LookupError,),
            ),
        ):
            sessions.end(principal.session_id)

    def _check(self, given: str | None, client: str, via: str) -> Principal | Refusal:
        """Throttle, then the token: the admin token in memory, a stored one by its digest."""
        claimed = tokens.name_in(given or "")
        standing = throttle.standing(client, claimed, self.throttle_policy)
        if standing.retry_after is not None:
            return Refusal(
                429,
                f"too many failed attempts ({standing.reason}); try again in {standing.retry_after} s",
                standing.retry_after,
            )
        principal = self._identify(given) if given else None
        if principal is not None:  # a success resets nothing: else a read token could launder guesses
            return principal
        lockouts = throttle.failed(client, claimed, self.throttle_policy)
        if self.metrics is not None:
            self.metrics.auth_failed(via, [lockout.kind for lockout in lockouts])
        for lockout in lockouts:
            target = f"address {lockout.key}" if lockout.kind == throttle.ADDRESS else f"token {lockout.key}"
            audit.record(
                audit.Actor("unauthenticated", audit.API if via == "bearer" else audit.DASHBOARD, client),
                "lockout",
                target,
                audit.LOCKED,
                message=f"{lockout.failures} failed attempts; locked for {lockout.seconds:g} s",
            )
        return Refusal(401, "the token is not valid")

    def _identify(self, given: str) -> Principal | None:
        if tokens.same_digest(tokens.digest(given), self._admin_hash):
            return Principal(tokens.BUILTIN_NAME, tokens.ADMIN)
        if not given.startswith(tokens.PREFIX):
            return None
        return tokens.identify(given)

    # -- one-time messages -----------------------------------------------------------------------

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
    """Deny every request without valid credentials, except :data:`PUBLIC_PATHS`; enforce CSRF for cookies.

    The principal goes to ``request.state.principal``; the routes' scope checks read it.
    """

    def __init__(self, app: ASGIApp, gate: Gate, max_body_bytes: int) -> None:
        self.app = app
        self.gate = gate
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
        try:
            await self._authenticated(scope, receive, send, path, headers, state)
        except DATABASE_ERRORS as exc:  # raised before the app ran: nothing was done
            logger.warning("authentication: database unavailable: %s", exc)
            reason = " ".join(str(exc).split()) or type(exc).__name__
            body = {"message": f"the database is unavailable: {reason}"}
            await JSONResponse(body, status_code=503, headers={"Retry-After": "5"})(scope, receive, send)

    async def _authenticated(
        self, scope: Scope, receive: Receive, send: Send, path: str, headers: Headers, state: dict[str, Any]
    ) -> None:
        authorization = headers.get("authorization")
        if authorization is not None:
            scheme, _, given = authorization.partition(" ")
            token = given.strip() if scheme.lower() == "bearer" else None
            found = await anyio.to_thread.run_sync(self.gate.bearer, token, client_address(scope))
            if isinstance(found, Refusal):
                await _refuse(scope, receive, send, found)
                return
            state["auth"] = "bearer"
            state["principal"] = found
            await self.app(scope, receive, send)
            return
        secret = _cookie(headers, SESSION_COOKIE)
        principal = await anyio.to_thread.run_sync(self.gate.session, secret) if secret else None
        if principal is None:
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
        state["principal"] = principal
        if scope["method"] not in SAFE_METHODS:
            if headers.get("sec-fetch-site", "same-origin") not in SAME_SITE_FETCH:
                await _forbidden(scope, receive, send, path, "cross-site request refused")
                return
            verified, receive = await self._csrf_ok(scope, receive, headers, principal.csrf or "")
            if not verified:
                await _forbidden(
                    scope, receive, send, path, "CSRF token missing or wrong; reload the page and try again"
                )
                return
        await self.app(scope, receive, send)

    async def _csrf_ok(self, scope: Scope, receive: Receive, headers: Headers, csrf: str) -> tuple[bool, Receive]:
        """Check the header, or the form field of an urlencoded body (which is then replayed to the app)."""
        given = headers.get(CSRF_HEADER)
        if given is not None:
            return bool(csrf) and tokens_equal(given, csrf), receive
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

        return len(values) == 1 and bool(csrf) and tokens_equal(values[0], csrf), replay


def _cookie(headers: Headers, name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


async def _refuse(scope: Scope, receive: Receive, send: Send, refusal: Refusal) -> None:
    if refusal.status == 429:
        headers = {"Retry-After": str(refusal.retry_after or 1)}
        await JSONResponse({"message": refusal.message}, status_code=429, headers=headers)(scope, receive, send)
        return
    await _unauthorized(scope, receive, send, "invalid_token")


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
