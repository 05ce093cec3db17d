"""Dashboard sessions kept in the database: a row per login, refused the moment it is gone.

The cookie holds 256 random bits; the row holds their digest, the token the
user logged in with (as a digest: revoking or changing that token ends the
session at once), when it started and was last seen, the client address and
user agent. A session ends on logout, when its token is revoked, when someone
revokes it from the sessions list, after ``idle`` seconds without a request, and
``ttl`` seconds after login whatever happens. The CSRF token is derived from
the cookie's secret, so nothing else is stored.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from meingym_tasks.access.errors import UnknownSession
from meingym_tasks.access.models import AccessSession
from meingym_tasks.access.tokens import ADMIN, Principal, digest, same_digest, scope_of_digest
from meingym_tasks.clock import utcnow

#: ``last_seen_at`` is written at most this often (the dashboard polls every 2 s).
TOUCH_EVERY = timedelta(seconds=30)
USER_AGENT_LENGTH = 200


@dataclasses.dataclass(frozen=True)
class SessionPolicy:
    """How long a session lasts: ``ttl`` seconds after login at most, ``idle`` seconds without a request."""

    ttl: int = 12 * 3600
    idle: int = 30 * 60


def csrf_of(secret: str) -> str:
    """The CSRF token of the session whose cookie holds ``secret``."""
    mac = hmac.new(secret.encode("utf-8", "surrogateescape"), b"meingym-tasks csrf", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def start(
    name: str,
    token_hash: str,
    *,
    client: str | None,
    user_agent: str | None,
    policy: SessionPolicy,
    scope: str,
    now: datetime | None = None,
) -> tuple[str, Principal]:
    """A new session for the token ``name`` (digest ``token_hash``): the cookie's secret and who it is."""
    now = now or utcnow()
    secret = secrets.token_urlsafe(32)
    session_id = secrets.token_hex(8)
    AccessSession.create(
        id=session_id,
        secret_hash=digest(secret),
        token_name=name,
        token_hash=token_hash,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=policy.ttl),
        client=client,
        user_agent=(user_agent or "")[:USER_AGENT_LENGTH] or None,
    )
    return secret, Principal(name, scope, session_id=session_id, csrf=csrf_of(secret))


def resolve(secret: str, admin_hash: str, policy: SessionPolicy, now: datetime | None = None) -> Principal | None:
    """Who the cookie ``secret`` logs in as, or None: unknown, ended, timed out, or its token revoked.

    One indexed read; a write only to end a timed-out session or, every
    :data:`TOUCH_EVERY`, to note that the session is in use.
    """
    now = now or utcnow()
    row = AccessSession.select().where(AccessSession.secret_hash == digest(secret)).first()
    if row is None:
        return None
    idle_since = now - timedelta(seconds=policy.idle)
    too_old = row.created_at + timedelta(seconds=policy.ttl)
    if row.last_seen_at < idle_since or now >= min(row.expires_at, too_old):
        AccessSession.delete().where(AccessSession.id == row.id).execute()
        return None
    if same_digest(row.token_hash, admin_hash):
        scope = ADMIN
    else:
        stored = scope_of_digest(row.token_hash)
        if stored is None:  # its token was revoked (or the admin token changed)
            AccessSession.delete().where(AccessSession.id == row.id).execute()
            return None
        scope = stored[1]
    if row.last_seen_at < now - TOUCH_EVERY:
        AccessSession.update(last_seen_at=now).where(AccessSession.id == row.id).execute()
    return Principal(row.token_name, scope, session_id=row.id, csrf=csrf_of(secret))


def end(session_id: str) -> dict[str, Any]:
    """End the session ``session_id`` (logout or revoke); returns what it was."""
    row = AccessSession.get_or_none(AccessSession.id == session_id)
    if row is None or not AccessSession.delete().where(AccessSession.id == session_id).execute():
        raise UnknownSession(f"no open session with id {session_id!r}")
    return _listed(row)


def listed(now: datetime | None = None, policy: SessionPolicy | None = None) -> list[dict[str, Any]]:
    """Open sessions, newest first (those past their timeouts are left out; retention deletes them)."""
    now = now or utcnow()
    query = AccessSession.select().where(AccessSession.expires_at > now)
    if policy is not None:
        query = query.where(
            AccessSession.last_seen_at >= now - timedelta(seconds=policy.idle),
            AccessSession.created_at > now - timedelta(seconds=policy.ttl),
        )
    return [_listed(row) for row in query.order_by(AccessSession.created_at.desc())]


def prune(now: datetime | None = None) -> int:
    """Delete sessions past their absolute expiry (idle ones are deleted when next presented, or then)."""
    return int(AccessSession.delete().where(AccessSession.expires_at <= (now or utcnow())).execute())


def _listed(row: AccessSession) -> dict[str, Any]:
    def iso(value: datetime) -> str:
        return value.replace(tzinfo=UTC).isoformat()

    return {
        "id": row.id,
        "token": row.token_name,
        "created_at": iso(row.created_at),
        "last_seen_at": iso(row.last_seen_at),
        "expires_at": iso(row.expires_at),
        "client": row.client,
        "user_agent": row.user_agent,
    }
