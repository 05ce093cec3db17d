"""The audit trail: every state-changing action, from the API, the dashboard and the CLI.

An entry says who (``actor``: a token's name, or ``user@host`` for the CLI),
through what (``via``: api, dashboard, cli) and from where (``client``: the
address the web service saw), when, what (``action``), on what (``target``: a
job id, a queue, a token or session) and how it ended (``outcome``: ``ok``,
``refused`` for a request the rules turned down, ``failed`` for an error, or
``locked`` for an authentication lockout), with a message and details.

Interfaces record their actions with :func:`recorded` around the action or
:func:`record` after it; the job functions themselves stay actor-free.
Entries are kept ``MEINGYM_AUDIT_RETENTION_DAYS`` days (:func:`prune`).
"""

from __future__ import annotations

import dataclasses
import getpass
import logging
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from meingym_tasks.access.models import AuditEntry
from meingym_tasks.clock import utcnow
from meingym_tasks.db.fields import write_transaction
from meingym_tasks.settings import Settings

logger = logging.getLogger("meingym_tasks.access")

API, DASHBOARD, CLI = "api", "dashboard", "cli"
OK, REFUSED, FAILED, LOCKED = "ok", "refused", "failed", "locked"
MESSAGE_LENGTH = 1000
MAX_PAGE = 500


@dataclasses.dataclass(frozen=True)
class Actor:
    """Who acts: a token's name (or ``user@host`` on the CLI), the interface, and the client address."""

    name: str
    via: str
    client: str | None = None


def cli_actor() -> Actor:
    """The operator at this shell: ``user@host``, and who ran ``sudo`` when that is how they got here."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (a container)
        user = f"uid {os.getuid()}"
    sudo = os.environ.get("SUDO_USER")
    who = f"{sudo} as {user}" if sudo and sudo != user else user
    return Actor(f"{who}@{socket.gethostname()}", CLI)


@dataclasses.dataclass
class Entry:
    """An entry being written: :func:`recorded` hands it out so the action can fill in what it learns."""

    actor: Actor
    action: str
    target: str | None
    message: str | None = None
    detail: dict[str, Any] | None = None
    outcome: str = OK
    #: Written by :meth:`write_now` (in the action's own transaction): :func:`recorded` writes it no more.
    written: bool = False

    def write_now(self) -> None:
        """Write the ``ok`` entry now, in the caller's transaction: it commits (or not) with the action."""
        AuditEntry.insert(self.row(utcnow())).execute()
        self.written = True

    def row(self, now: datetime) -> dict[str, Any]:
        return {
            "at": now,
            "actor": self.actor.name[:200],
            "via": self.actor.via,
            "client": self.actor.client[:64] if self.actor.client else None,
            "action": self.action,
            "target": self.target[:200] if self.target else None,
            "outcome": self.outcome,
            "message": self.message[:MESSAGE_LENGTH] if self.message else None,
            "detail": self.detail,
        }


def record(
    actor: Actor,
    action: str,
    target: str | None,
    outcome: str = OK,
    message: str | None = None,
    detail: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    """Write one entry (in the caller's transaction, if there is one)."""
    entry = Entry(actor, action, target, message, detail, outcome)
    AuditEntry.insert(entry.row(now or utcnow())).execute()


def record_many(entries: Iterable[Entry], now: datetime | None = None) -> None:
    """Write several entries in one statement (retry-all: one per job, so each job's page shows it)."""
    rows = [entry.row(now or utcnow()) for entry in entries]
    if rows:
        AuditEntry.insert_many(rows).execute()


def outcome_of(error: BaseException, refusals: tuple[type[BaseException], ...]) -> str:
    return REFUSED if isinstance(error, refusals) else FAILED


@contextmanager
def recorded(
    actor: Actor,
    action: str,
    target: str | None,
    *,
    refusals: tuple[type[BaseException], ...] = (),
    describe: Callable[[BaseException], str] = str,
) -> Iterator[Entry]:
    """Record the action done in the block: ``ok`` when it ends, ``refused`` or ``failed`` when it raises.

    The block may change ``entry.target``, ``message`` and ``detail``. The entry
    is written after the block, in its own transaction, unless the block wrote it
    inside the action's transaction (:meth:`Entry.write_now`); an error raised by
    the block is recorded (after its transaction rolled back) and re-raised. When
    the entry itself cannot be written (the database is down), that is logged and
    the action's own outcome stands.
    """
    entry = Entry(actor, action, target)
    try:
        yield entry
    except BaseException as exc:
        if isinstance(exc, Exception):
            entry.outcome = outcome_of(exc, refusals)
            entry.message = describe(exc)
            write(entry)
        raise
    if not entry.written:
        write(entry)


def write(entry: Entry) -> None:
    """Write ``entry`` in its own transaction; when it cannot be written, log that (the action stands)."""
    try:
        with write_transaction():
            record(entry.actor, entry.action, entry.target, entry.outcome, entry.message, entry.detail)
    except Exception as exc:  # one line, no traceback: the CLI prints it, the web logs it
        reason = " ".join(str(exc).split())
        logger.error(
            "audit: could not record %s of %s by %s (%s): %s: %s",
            entry.action,
            entry.target,
            entry.actor.name,
            entry.outcome,
            type(exc).__name__,
            reason,
        )


def entries(
    *,
    target: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    limit: int = 50,
    before: int | None = None,
) -> dict[str, Any]:
    """Entries newest first, filtered; ``next`` is the ``before`` of the next page (None on the last)."""
    query = AuditEntry.select()
    if target is not None:
        query = query.where(AuditEntry.target == target)
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    rows = list(query.order_by(AuditEntry.id.desc()).limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    return {"entries": [as_dict(row) for row in rows], "next": rows[-1].id if more else None}


def as_dict(row: AuditEntry) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at.replace(tzinfo=UTC).isoformat(),
        "actor": row.actor,
        "via": row.via,
        "client": row.client,
        "action": row.action,
        "target": row.target,
        "outcome": row.outcome,
        "message": row.message,
        "detail": row.detail,
    }


def prune(settings: Settings, now: datetime | None = None) -> int:
    """Delete entries older than the retention (``MEINGYM_AUDIT_RETENTION_DAYS``)."""
    cutoff = (now or utcnow()) - timedelta(days=settings.audit_retention_days)
    return int(AuditEntry.delete().where(AuditEntry.at < cutoff).execute())
