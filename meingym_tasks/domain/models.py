"""The MeinGym tables, as peewee models bound to :data:`meingym_tasks.db.database.database`.

Conventions every table follows, so that SQLite and PostgreSQL store the same values:

* **Times are timezone-naive UTC.** SQLite has no time zone type and a naive
  ``TIMESTAMP`` is what PostgreSQL compares cheaply, so the database only ever
  holds UTC wall-clock times. :class:`UTCDateTimeField` converts aware datetimes
  to naive UTC on the way in; naive datetimes are taken to be UTC already.
  Local days (streaks) are computed in Python with the configured zone.
* **Numbers are fixed point.** Scores, weights and difficulties are ``NUMERIC``
  (:class:`FixedDecimalField`), never floats. PostgreSQL stores them exactly;
  SQLite gives ``NUMERIC`` columns numeric affinity and keeps non-integral
  values as REAL, so every such column has at most 15 significant digits
  (a double round-trips 15 digits) and the field quantizes what it reads back
  to its decimal places. Arithmetic on them in SQL goes through integers
  (see :mod:`meingym_tasks.domain.scoring`).
* **CHECK constraints** hold the ranges :mod:`meingym_tasks.domain.scoring` relies on:
  no negative counts or amounts, a difficulty above zero, only known exercise
  kinds, and upper bounds that keep the integer score arithmetic far from
  64-bit overflow.

The schema itself is created by ``migrations/0001_initial.py`` (a frozen copy of
these definitions), never by ``create_tables`` on these classes.
"""

from __future__ import annotations

from decimal import Decimal

import peewee

from meingym_tasks.clock import utcnow
from meingym_tasks.db.fields import (
    BaseModel,
    FixedDecimalField,
    JSONTextField,
    UTCDateTimeField,
    to_utc_naive,
    write_transaction,
)
from meingym_tasks.domain import scoring

__all__ = [
    "MODELS",
    "Action",
    "BaseModel",
    "Exercise",
    "FixedDecimalField",
    "JSONTextField",
    "SentEmail",
    "UTCDateTimeField",
    "User",
    "UserStats",
    "to_utc_naive",
    "utcnow",
    "write_transaction",
]


def _check(column: str, low: int, high: Decimal, *, low_inclusive: bool = True) -> list[peewee.Node]:
    low_op = ">=" if low_inclusive else ">"
    return [peewee.Check(f"{column} {low_op} {low} AND {column} <= {high}")]


def _limit(name: str) -> scoring.Limit:
    return scoring.LIMITS[name]


class User(BaseModel):
    id = peewee.AutoField()
    email = peewee.CharField(max_length=254, unique=True)
    name = peewee.CharField(max_length=200)
    created = UTCDateTimeField(default=utcnow)


_KINDS_SQL = ", ".join(f"'{kind}'" for kind in scoring.KINDS)


class Exercise(BaseModel):
    id = peewee.AutoField()
    name = peewee.CharField(max_length=100, unique=True)
    kind = peewee.CharField(max_length=16, constraints=[peewee.Check(f"kind IN ({_KINDS_SQL})")])
    difficulty = FixedDecimalField(
        4,
        2,
        constraints=_check("difficulty", 0, _limit("difficulty").maximum, low_inclusive=False),
    )


class Action(BaseModel):
    """One logged training action; ``score`` is NULL until the update job has scored it."""

    id = peewee.BigAutoField()  # the table that grows: BIGSERIAL on PostgreSQL
    user = peewee.ForeignKeyField(User, backref="actions", on_delete="CASCADE", index=False)
    exercise = peewee.ForeignKeyField(Exercise, backref="actions", on_delete="RESTRICT")
    performed_at = UTCDateTimeField()
    sets = peewee.IntegerField(null=True, constraints=_check("sets", 0, _limit("sets").maximum))
    reps = peewee.IntegerField(null=True, constraints=_check("reps", 0, _limit("reps").maximum))
    weight_kg = FixedDecimalField(6, 2, null=True, constraints=_check("weight_kg", 0, _limit("weight_kg").maximum))
    duration_s = peewee.IntegerField(null=True, constraints=_check("duration_s", 0, _limit("duration_s").maximum))
    distance_m = peewee.IntegerField(null=True, constraints=_check("distance_m", 0, _limit("distance_m").maximum))
    score = FixedDecimalField(14, 2, null=True)
    scored_at = UTCDateTimeField(null=True)

    def python_score(self) -> Decimal:
        """This action's score by the Python scorer (the update job computes it in SQL)."""
        exercise = self.exercise
        return scoring.score(
            exercise.kind,
            exercise.difficulty,
            self.sets,
            self.reps,
            self.weight_kg,
            self.duration_s,
            self.distance_m,
        )

    class Meta:
        # Per-user history and windows (7/30 days, streaks) scan by user, then time;
        # the leading user_id also serves the foreign key, hence index=False above.
        indexes = ((("user", "performed_at"), False),)


class UserStats(BaseModel):
    """The derived statistics of one user, rewritten by :mod:`meingym_tasks.domain.aggregates`."""

    id = peewee.AutoField()
    user = peewee.ForeignKeyField(User, backref="stats", unique=True, on_delete="CASCADE")
    total_score = FixedDecimalField(15, 2, default=Decimal("0.00"))
    actions_count = peewee.IntegerField(default=0)
    score_7d = FixedDecimalField(15, 2, default=Decimal("0.00"))
    score_30d = FixedDecimalField(15, 2, default=Decimal("0.00"))
    #: ``{"<exercise id>": "<best score>"}``; scores as strings to stay exact.
    personal_bests = JSONTextField(default=dict)
    current_streak_days = peewee.IntegerField(default=0)
    updated_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "user_stats"


class SentEmail(BaseModel):
    """Proof that the job ``job_id`` sent its email, so a retry does not send it twice."""

    id = peewee.AutoField()
    job_id = peewee.CharField(max_length=255, unique=True)
    user = peewee.ForeignKeyField(User, backref="sent_emails", on_delete="CASCADE")
    kind = peewee.CharField(max_length=64)
    recipient = peewee.CharField(max_length=254)
    sent_at = UTCDateTimeField(default=utcnow)
    message_id = peewee.CharField(max_length=255)

    class Meta:
        table_name = "sent_email"


MODELS: tuple[type[BaseModel], ...] = (User, Exercise, Action, UserStats, SentEmail)
