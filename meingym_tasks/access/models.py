"""The access tables (migration 0006): tokens, sessions, throttle counters, audit entries.

No secret is stored in clear: a token and a session cookie are kept as their
SHA-256 digests (both are 256-bit random values, so a plain digest is enough;
there is nothing to brute-force). Times are naive UTC, except the throttle's,
which are epoch seconds so that one SQL statement can do the arithmetic on
SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import peewee

from meingym_tasks.db.fields import BaseModel, JSONTextField, UTCDateTimeField


class AccessToken(BaseModel):
    """A named token and its scope; the built-in admin token (``MEINGYM_ADMIN_TOKEN``) is not a row."""

    id = peewee.BigAutoField()
    name = peewee.CharField(max_length=40, unique=True)
    scope = peewee.CharField(max_length=12)
    secret_hash = peewee.CharField(max_length=64, unique=True)
    created_at = UTCDateTimeField()
    created_by = peewee.CharField(max_length=200)
    last_used_at = UTCDateTimeField(null=True)

    class Meta:
        table_name = "access_token"


class AccessSession(BaseModel):
    """A dashboard login. ``id`` is shown and used to revoke it; the cookie holds the secret behind ``secret_hash``."""

    id = peewee.CharField(max_length=32, primary_key=True)
    secret_hash = peewee.CharField(max_length=64, unique=True)
    token_name = peewee.CharField(max_length=40, index=True)
    #: Digest of the token that logged in: the session lives only as long as that token does.
    token_hash = peewee.CharField(max_length=64)
    created_at = UTCDateTimeField()
    last_seen_at = UTCDateTimeField()
    expires_at = UTCDateTimeField(index=True)
    client = peewee.CharField(max_length=64, null=True)
    user_agent = peewee.CharField(max_length=200, null=True)

    class Meta:
        table_name = "access_session"


class ThrottleEntry(BaseModel):
    """Recent failed authentication of one client address (``kind='address'``) or token name (``'token'``)."""

    kind = peewee.CharField(max_length=12)
    key = peewee.CharField(max_length=200)
    failures = peewee.IntegerField()
    last_failure_at = peewee.DoubleField()  # epoch seconds
    locked_until = peewee.DoubleField()  # epoch seconds; 0: not locked

    class Meta:
        table_name = "access_throttle"
        primary_key = peewee.CompositeKey("kind", "key")


class AuditEntry(BaseModel):
    """One state-changing action: who (``actor``, ``via``, ``client``), when, what, on what, and how it ended."""

    id = peewee.BigAutoField()
    at = UTCDateTimeField(index=True)
    actor = peewee.CharField(max_length=200)
    via = peewee.CharField(max_length=12)
    client = peewee.CharField(max_length=64, null=True)
    action = peewee.CharField(max_length=40)
    target = peewee.CharField(max_length=200, null=True)
    outcome = peewee.CharField(max_length=12)
    message = peewee.TextField(null=True)
    detail = JSONTextField(null=True)

    class Meta:
        table_name = "access_audit"
        indexes = ((("target", "id"), False), (("actor", "id"), False))
