"""Named tokens with one scope each: ``read`` < ``operate`` < ``admin``.

A token reads ``mgt_<name>_<secret>``: the name (so that throttling and logs
can say which token was tried without ever showing the secret), then 256 random
bits. Only its SHA-256 digest is stored; a presented token is hashed and looked
up by that digest, and the built-in admin token (``MEINGYM_ADMIN_TOKEN``, name
``admin``) is compared digest to digest with :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import peewee

from meingym_tasks.access.errors import InvalidTokenRequest, TokenExists, UnknownToken
from meingym_tasks.access.models import AccessSession, AccessToken
from meingym_tasks.clock import utcnow
from meingym_tasks.db.fields import write_transaction

READ = "read"
OPERATE = "operate"
ADMIN = "admin"
#: Each scope includes the ones before it.
SCOPES = (READ, OPERATE, ADMIN)
#: What each scope adds, in the words the CLI, the API and the docs use.
SCOPE_HELP = {
    READ: "read: every GET route, /metrics, the dashboard read-only",
    OPERATE: "operate: read, and trigger, retry and cancel jobs",
    ADMIN: "admin: operate, and purge records, manage tokens and sessions, read the audit trail",
}

#: The name of the built-in token (``MEINGYM_ADMIN_TOKEN`` or ``<data dir>/admin.token``).
BUILTIN_NAME = "admin"
PREFIX = "mgt_"
NAME_RULE = "1 to 40 lower-case letters, digits or '-', starting with a letter or digit"
NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
#: How often a token's ``last_used_at`` is written at most (a write per request would cost more than the lookup).
TOUCH_EVERY = timedelta(minutes=1)


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who a request acts as: a token's name and scope, and the session when it came with a cookie."""

    name: str
    scope: str
    session_id: str | None = None
    csrf: str | None = None

    def may(self, needed: str) -> bool:
        return grants(self.scope, needed)


def grants(held: str, needed: str) -> bool:
    """Whether scope ``held`` includes ``needed`` (admin includes operate includes read)."""
    return held in SCOPES and SCOPES.index(held) >= SCOPES.index(needed)


def digest(secret: str) -> str:
    """The stored form of a token or session secret (undecodable text is just another wrong value)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))


def name_in(token: str) -> str:
    """The token name a presented token claims (for throttling and logs); a bare token claims ``admin``."""
    if token.startswith(PREFIX):
        name, sep, _ = token[len(PREFIX) :].partition("_")
        if sep and NAME.fullmatch(name):
            return name
    return BUILTIN_NAME


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise InvalidTokenRequest(f"token name {name!r} is not allowed; expected {NAME_RULE}")
    if name == BUILTIN_NAME:
        raise TokenExists(f"token name {name!r} is taken by the built-in MEINGYM_ADMIN_TOKEN; choose another name")
    return name


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise InvalidTokenRequest(f"scope {scope!r} is not allowed; allowed: {', '.join(SCOPES)}")
    return scope


def create(name: str, scope: str, created_by: str, now: datetime | None = None) -> tuple[str, dict[str, Any]]:
    """A new token: returns the token itself (shown once, never stored) and its listing entry."""
    check_name(name)
    check_scope(scope)
    token = f"{PREFIX}{name}_{secrets.token_urlsafe(32)}"
    try:
        with write_transaction():
            row = AccessToken.create(
                name=name, scope=scope, secret_hash=digest(token), created_at=now or utcnow(), created_by=created_by
            )
    except peewee.IntegrityError:
        raise TokenExists(f"a token named {name!r} exists already; revoke it first or choose another name") from None
    return token, _listed(row, 0)


def identify(token: str, now: datetime | None = None) -> Principal | None:
    """The stored token ``token`` is, or None; notes when it was last used (at most once a minute)."""
    row = AccessToken.select().where(AccessToken.secret_hash == digest(token)).first()
    if row is None or row.name != name_in(token):
        return None
    now = now or utcnow()
    if row.last_used_at is None or row.last_used_at < now - TOUCH_EVERY:
        AccessToken.update(last_used_at=now).where(AccessToken.id == row.id).execute()
    return Principal(row.name, row.scope)


def scope_of_digest(token_hash: str) -> tuple[str, str] | None:
    """``(name, scope)`` of the stored token with this digest, or None when it was revoked."""
    row = AccessToken.select(AccessToken.name, AccessToken.scope).where(AccessToken.secret_hash == token_hash).first()
    return None if row is None else (row.name, row.scope)


def listed() -> list[dict[str, Any]]:
    """Every stored token (never its secret), with its number of open sessions, by name."""
    query = AccessSession.select(AccessSession.token_name, peewee.fn.COUNT(AccessSession.id))
    sessions: dict[str, int] = {
        name: int(n) for name, n in query.group_by(AccessSession.token_name).tuples().iterator()
    }
    return [_listed(row, sessions.get(row.name, 0)) for row in AccessToken.select().order_by(AccessToken.name)]


def revoke(name: str) -> int:
    """Delete the token ``name`` and end its sessions; returns how many sessions ended."""
    if name == BUILTIN_NAME:
        raise InvalidTokenRequest(
            "the built-in admin token cannot be revoked here; change MEINGYM_ADMIN_TOKEN (or delete "
            "<data dir>/admin.token) and restart the web service: that ends its sessions too"
        )
    with write_transaction():
        removed = AccessToken.delete().where(AccessToken.name == name).execute()
        if not removed:
            raise UnknownToken(f"no token named {name!r}")
        return int(AccessSession.delete().where(AccessSession.token_name == name).execute())


def _listed(row: AccessToken, sessions: int) -> dict[str, Any]:
    return {
        "name": row.name,
        "scope": row.scope,
        "created_at": _iso(row.created_at),
        "created_by": row.created_by,
        "last_used_at": _iso(row.last_used_at),
        "sessions": sessions,
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=UTC).isoformat()
