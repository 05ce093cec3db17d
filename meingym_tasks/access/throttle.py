"""Failed authentication, counted per client address and per token name, in the database.

Every web worker (and every machine behind one proxy) shares the counters, so
``uvicorn --workers 4`` does not give an attacker four times the attempts.

* An **address** may fail :attr:`ThrottlePolicy.max_failures` times; each
  further failure locks it for ``first_lock`` seconds, doubling up to
  ``max_lock``. While locked, every attempt from it is refused with 429 and
  ``Retry-After`` *without being checked*, so a right guess made during a lock
  is worth nothing.
* A **token name** (the ``<name>`` of ``mgt_<name>_...``; ``admin`` for a bare
  token) that collects ``name_failures`` failures, from any addresses, is under
  attack and locked the same way; while it is, addresses that have failed
  before are refused for it. Addresses with a clean record (its owner's) still
  get in: a distributed guesser cannot lock a token's owner out. A running lock
  is never extended: each lock is one log line, however many failures it sees.
* Failures are forgotten ``memory`` seconds after the last one, and only
  then: a success does not reset them, or anyone holding one valid token
  could alternate guesses with successes and never be locked. A success is
  never delayed: the checks are one indexed read, and nothing sleeps.

Each failure is one statement (an upsert of both rows with ``RETURNING``), so
concurrent failures from several workers are all counted.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from datetime import UTC, datetime

import peewee

from meingym_tasks.access.models import ThrottleEntry
from meingym_tasks.clock import utcnow
from meingym_tasks.db.database import database
from meingym_tasks.db.fields import write_transaction

logger = logging.getLogger("meingym_tasks.access")

ADDRESS = "address"
TOKEN = "token"
KEY_LENGTH = 200


@dataclasses.dataclass(frozen=True)
class ThrottlePolicy:
    """How many failures are free and how long the locks after them last (seconds)."""

    max_failures: int = 5
    name_failures: int = 20
    first_lock: float = 1.0
    max_lock: float = 900.0
    memory: float = 3600.0

    def lock_after(self, failures: int, free: int) -> float:
        """Seconds of lock after the ``failures``-th failure (0 while still free)."""
        if failures < free:
            return 0.0
        return min(self.max_lock, self.first_lock * 2 ** min(failures - free, 30))


@dataclasses.dataclass(frozen=True)
class Standing:
    """What the counters say before a credential is checked."""

    #: Seconds until the client may try again; None: check the credential.
    retry_after: int | None = None
    #: Why it is refused (for the answer and the log): ``address 10.0.0.7`` or ``token 'grafana'``.
    reason: str = ""
    #: Whether the address has failures on record (within ``memory``).
    address_failed: bool = False


@dataclasses.dataclass(frozen=True)
class Lockout:
    """A lock that a failure started: which address or token name, after how many failures, for how long."""

    kind: str
    key: str
    failures: int
    seconds: float


def epoch(now: datetime) -> float:
    return now.replace(tzinfo=UTC).timestamp()


def standing(address: str, name: str, policy: ThrottlePolicy, now: datetime | None = None) -> Standing:
    """May ``address`` try a credential for token ``name`` now? One indexed read of at most two rows."""
    at = epoch(now or utcnow())
    rows = {
        row.kind: row
        for row in ThrottleEntry.select().where(
            ((ThrottleEntry.kind == ADDRESS) & (ThrottleEntry.key == address[:KEY_LENGTH]))
            | ((ThrottleEntry.kind == TOKEN) & (ThrottleEntry.key == name[:KEY_LENGTH]))
        )
    }
    mine, token = rows.get(ADDRESS), rows.get(TOKEN)
    failed_before = mine is not None and mine.failures > 0 and mine.last_failure_at >= at - policy.memory
    if mine is not None and mine.locked_until > at:
        return Standing(math.ceil(mine.locked_until - at), f"address {address}", failed_before)
    if token is not None and token.locked_until > at and failed_before:
        return Standing(math.ceil(token.locked_until - at), f"token {name!r}", failed_before)
    return Standing(None, "", failed_before)


def failed(address: str, name: str, policy: ThrottlePolicy, now: datetime | None = None) -> list[Lockout]:
    """Count a failure against ``address`` and ``name``; returns (and logs) the locks it started."""
    at = epoch(now or utcnow())
    keys = [(ADDRESS, address[:KEY_LENGTH], policy.max_failures), (TOKEN, name[:KEY_LENGTH], policy.name_failures)]
    param = database.param
    values = ", ".join(f"({param}, {param}, 1, {param}, {param})" for _ in keys)
    params: list[object] = []
    for kind, key, free in keys:
        params += [kind, key, at, at + policy.lock_after(1, free) if policy.lock_after(1, free) else 0.0]
    with write_transaction():
        cursor = database.execute_sql(_upsert_sql(values, policy), params)
        returned = cursor.fetchall()
    allowed = {kind: number for kind, _, number in keys}
    lockouts = []
    for kind, key, failures, locked_until in returned:
        seconds = policy.lock_after(int(failures), allowed[kind])
        # A lock still running is kept, not extended: only a lock this failure started is reported.
        if seconds and abs(locked_until - (at + seconds)) < 1e-3:
            lockout = Lockout(kind, key, int(failures), seconds)
            lockouts.append(lockout)
            _log(lockout)
    return lockouts


def locked(now: datetime | None = None) -> dict[str, int]:
    """How many addresses and token names are locked now (for /metrics)."""
    at = epoch(now or utcnow())
    query = ThrottleEntry.select(ThrottleEntry.kind, peewee.fn.COUNT(ThrottleEntry.key))
    query = query.where(ThrottleEntry.locked_until > at).group_by(ThrottleEntry.kind)
    found: dict[str, int] = {kind: int(n) for kind, n in query.tuples().iterator()}
    return {ADDRESS: int(found.get(ADDRESS, 0)), TOKEN: int(found.get(TOKEN, 0))}


def prune(now: datetime | None = None, policy: ThrottlePolicy | None = None) -> int:
    """Delete counters whose failures are forgotten and whose lock has ended."""
    policy = policy or ThrottlePolicy()
    at = epoch(now or utcnow())
    return int(
        ThrottleEntry.delete()
        .where(ThrottleEntry.last_failure_at < at - policy.memory, ThrottleEntry.locked_until <= at)
        .execute()
    )


def _upsert_sql(values: str, policy: ThrottlePolicy) -> str:
    """One statement for both rows: a forgotten count starts again at 1, a count past the free ones locks.

    A lock that is still running stays as it is (failures from other addresses keep
    counting for a token name, but do not start one lock, and one log line, each).

    The policy's numbers are ours (never request data), so they are written into the SQL as literals.
    """
    postgres = isinstance(database.obj, peewee.PostgresqlDatabase)
    least = "LEAST" if postgres else "MIN"
    one = "CAST(1 AS BIGINT)"
    count = (
        f"(CASE WHEN access_throttle.last_failure_at < excluded.last_failure_at - {float(policy.memory)!r} "
        "THEN 1 ELSE access_throttle.failures + 1 END)"
    )
    free = (
        f"(CASE WHEN access_throttle.kind = '{ADDRESS}' THEN {int(policy.max_failures)} "
        f"ELSE {int(policy.name_failures)} END)"
    )
    lock = (
        f"(CASE WHEN {count} >= {free} THEN excluded.last_failure_at + "
        f"{least}({float(policy.max_lock)!r}, {float(policy.first_lock)!r} * "
        f"({one} << CAST({least}({count} - {free}, 30) AS INTEGER))) ELSE 0 END)"
    )
    return (
        "INSERT INTO access_throttle (kind, key, failures, last_failure_at, locked_until) "
        f"VALUES {values} "
        f"ON CONFLICT (kind, key) DO UPDATE SET failures = {count}, "
        "locked_until = CASE WHEN access_throttle.locked_until > excluded.last_failure_at "
        f"THEN access_throttle.locked_until ELSE {lock} END, "
        "last_failure_at = excluded.last_failure_at "
        "RETURNING kind, key, failures, locked_until"
    )


def _log(lockout: Lockout) -> None:
    if lockout.kind == ADDRESS:
        logger.warning(
            "authentication: address %s locked out for %g s after %d failed attempts",
            lockout.key,
            lockout.seconds,
            lockout.failures,
        )
    else:
        logger.warning(
            "authentication: token %r is under attack (%d failed attempts); addresses that failed are "
            "refused for it for %g s",
            lockout.key,
            lockout.failures,
            lockout.seconds,
        )
