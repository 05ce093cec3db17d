"""Per-user statistics, recomputed from the actions by the process-user-data job.

Sums run in the database in integer cents (:func:`scoring.cents_expression`), so
SQLite, which keeps NUMERIC values as REAL, adds exactly like PostgreSQL. The
streak needs local days, and time zone rules are not portable SQL, so it is
computed in Python from the user's action times, newest first, reading only as
far back as the streak goes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import peewee

from meingym_tasks.domain import scoring
from meingym_tasks.domain.models import Action, User, UserStats, to_utc_naive, write_transaction
from meingym_tasks.exceptions import UnknownUser

__all__ = ["current_streak", "recompute_user_stats"]

#: Action times read per query while following a streak back in time.
STREAK_PAGE = 500


def _money(cents: Any) -> Decimal:
    return Decimal(int(cents or 0)).scaleb(-2)


def recompute_user_stats(user_id: int, now: datetime, zone: ZoneInfo) -> dict[str, Any]:
    """Rewrite the :class:`UserStats` row of ``user_id`` from their actions, in one transaction.

    Windows are rolling (``now - 7 days < performed_at <= now``); unscored actions
    count towards ``actions_count`` but add nothing to the scores. Returns
    ``{"user_id", "actions_count", "total_score"}`` (the score as a string, exact).

    Raises:
        UnknownUser: no user has this id (a retry cannot help).
    """
    now = to_utc_naive(now)
    cents = scoring.cents_expression(Action.score)

    def window(days: int) -> peewee.Node:
        inside = (Action.performed_at > now - timedelta(days=days)) & (Action.performed_at <= now)
        return peewee.fn.SUM(peewee.Case(None, [(inside, cents)], peewee.SQL("0")))

    with write_transaction():
        if not User.select(User.id).where(User.id == user_id).exists():
            raise UnknownUser(user_id)
        count, total, last_7d, last_30d = (
            Action.select(peewee.fn.COUNT(Action.id), peewee.fn.SUM(cents), window(7), window(30))
            .where(Action.user == user_id)
            .scalar(as_tuple=True)
        )
        bests = (
            Action.select(Action.exercise, peewee.fn.MAX(cents))
            .where((Action.user == user_id) & Action.score.is_null(False))
            .group_by(Action.exercise)
            .tuples()
            .iterator()
        )
        personal_bests = {str(exercise_id): str(_money(best)) for exercise_id, best in bests}
        values = {
            UserStats.total_score: _money(total),
            UserStats.actions_count: int(count or 0),
            UserStats.score_7d: _money(last_7d),
            UserStats.score_30d: _money(last_30d),
            UserStats.personal_bests: personal_bests,
            UserStats.current_streak_days: current_streak(user_id, now, zone),
            UserStats.updated_at: now,
        }
        (
            UserStats.insert({UserStats.user: user_id, **values})
            .on_conflict(conflict_target=[UserStats.user], preserve=list(values))
            .execute()
        )
    return {"user_id": user_id, "actions_count": values[UserStats.actions_count], "total_score": str(_money(total))}


def current_streak(user_id: int, now: datetime, zone: ZoneInfo) -> int:
    """Consecutive local days (in ``zone``) with an action, ending today or yesterday.

    A streak still counts on the morning after the last workout: it only breaks
    once a whole local day passes without an action. Actions after ``now`` are ignored.
    """
    now = to_utc_naive(now)
    today = _local_day(now, zone)
    streak = 0
    expected: date | None = None  # the next (earlier) day the streak needs
    before = now + timedelta(microseconds=1)
    while True:
        page = [
            performed_at
            for (performed_at,) in Action.select(Action.performed_at)
            .where((Action.user == user_id) & (Action.performed_at < before))
            .order_by(Action.performed_at.desc())
            .limit(STREAK_PAGE)
            .tuples()
            .iterator()
        ]
        for performed_at in page:
            day = _local_day(performed_at, zone)
            if expected is None:
                if day < today - timedelta(days=1):
                    return 0
                streak, expected = 1, day - timedelta(days=1)
            elif day == expected:
                streak, expected = streak + 1, day - timedelta(days=1)
            elif day < expected:
                return streak
        if len(page) < STREAK_PAGE:
            return streak
        before = page[-1]


def _local_day(utc_naive: datetime, zone: ZoneInfo) -> date:
    return utc_naive.replace(tzinfo=UTC).astimezone(zone).date()
