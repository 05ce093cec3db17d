"""Column types and the base model shared by the domain's and the registry's tables.

Times are stored as naive UTC, JSON as sorted text, decimals exactly: the same
on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import peewee

from meingym_tasks.db.database import database
from meingym_tasks.exceptions import ValidationError

__all__ = [
    "BaseModel",
    "FixedDecimalField",
    "JSONTextField",
    "UTCDateTimeField",
    "to_utc_naive",
    "write_transaction",
]


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


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False
