"""The MeinGym tables, as peewee models bound to :data:`meingym_tasks.database.database`.

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
  (see :mod:`meingym_tasks.scoring`).
* **CHECK constraints** hold the ranges :mod:`meingym_tasks.scoring` relies on:
  no negative counts or amounts, a difficulty above zero, only known exercise
  kinds, and upper bounds that keep the integer score arithmetic far from
  64-bit overflow.

The schema itself is created by ``migrations/0001_initial.py`` (a frozen copy of
these definitions), never by ``create_tables`` on these classes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import peewee

from meingym_tasks import scoring
from meingym_tasks.database import database
from meingym_tasks.exceptions import ValidationError

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


def utcnow() -> datetime:
    """The current time as the database stores it: naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_utc_naive(value: datetime) -> datetime:
    """``value`` as naive UTC; a naive value is assumed to be UTC already."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


@contextmanager
def write_transaction() -> Iterator[None]:
    """A transaction that will write, on the bound database.

    On SQLite it starts with ``BEGIN IMMEDIATE``: a deferred transaction that
    reads first and writes later can fail with "database is locked" when another
    process wrote in between, while an immediate one waits for the write lock
    (``busy_timeout``) up front.
    """
    bound = database.obj
    if isinstance(bound, peewee.SqliteDatabase) and not bound.in_transaction():
        with bound.atomic("IMMEDIATE"):
            yield
    else:
        with database.atomic():
            yield


class UTCDateTimeField(peewee.DateTimeField):
    """A ``DATETIME``/``TIMESTAMP`` column holding naive UTC (aware values are converted)."""

    def db_value(self, value: Any) -> Any:
        if isinstance(value, datetime):
            value = to_utc_naive(value)
        return super().db_value(value)


class FixedDecimalField(peewee.DecimalField):
    """``NUMERIC(max_digits, decimal_places)`` that neither rounds silently nor drifts.

    Writing a value with more decimal places than the column has raises
    :class:`ValidationError` (PostgreSQL would round it, SQLite would keep it:
    the two databases would disagree). Reading quantizes to the column's places,
    which makes SQLite's REAL storage read back as the exact decimal written.
    """

    def __init__(self, max_digits: int, decimal_places: int, **kwargs: Any) -> None:
        if max_digits > 15:
            raise ValueError("SQLite keeps NUMERIC as REAL: at most 15 significant digits are exact")
        super().__init__(max_digits=max_digits, decimal_places=decimal_places, **kwargs)
        self.quantum = Decimal(1).scaleb(-decimal_places)

    def db_value(self, value: Any) -> Any:
        if value is None or isinstance(value, peewee.Node):
            return value
        try:
            number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
            fixed = number.quantize(self.quantum) if number.is_finite() else None
        except (InvalidOperation, TypeError, ValueError):  # not a number, or too large to quantize
            fixed = None
        if fixed is None or fixed != number:
            raise ValidationError(
                f"{self.name} allows at most {self.decimal_places} decimal places and "
                f"{self.max_digits} digits, got {value!r}"
            )
        return fixed

    def python_value(self, value: Any) -> Decimal | None:
        if value is None:
            return None
        number = value if isinstance(value, Decimal) else Decimal(str(value))
        return number.quantize(self.quantum, rounding=ROUND_HALF_UP)


class JSONTextField(peewee.TextField):
    """JSON kept in a TEXT column (the same on both databases), keys sorted for stable diffs."""

    def db_value(self, value: Any) -> Any:
        if value is None or isinstance(value, peewee.Node):
            return value
        return json.dumps(value, sort_keys=True, separators=(",", ":"))

    def python_value(self, value: Any) -> Any:
        return None if value is None else json.loads(value)


def _check(column: str, low: int, high: Decimal, *, low_inclusive: bool = True) -> list[peewee.Node]:
    low_op = ">=" if low_inclusive else ">"
    return [peewee.Check(f"{column} {low_op} {low} AND {column} <= {high}")]


def _limit(name: str) -> scoring.Limit:
    return scoring.LIMITS[name]


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


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
    """The derived statistics of one user, rewritten by :mod:`meingym_tasks.aggregates`."""

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
