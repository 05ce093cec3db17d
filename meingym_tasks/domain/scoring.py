"""How an action is scored: one formula, evaluated in Python and compiled to SQL.

The formula, per exercise kind (``difficulty`` is the exercise's factor)::

    strength   = weight_kg x reps x sets x difficulty / 10
    cardio     = (distance_m / 100 + duration_s / 60) x difficulty
    bodyweight = reps x sets x 0.5 x difficulty

rounded to 2 decimal places, half up (``ROUND_HALF_UP``), from the exact value.

It is written down once, in :data:`FORMULAS`, as a sum of terms
``coefficient x product of inputs``. :func:`score` walks those terms in Python;
:func:`score_expression` walks the same terms to build the peewee expression the
update job runs inside the database. They agree exactly, on both databases,
because neither ever rounds before the final step:

* **Python** evaluates with :class:`fractions.Fraction`. Plain ``Decimal``
  arithmetic is *not* exact here: ``duration_s / 60`` has no finite decimal
  expansion, so Decimal would round it at 28 digits and could tip a tie (11 s at
  difficulty 0.30 is exactly 0.055 points, which must become 0.06, while
  ``Decimal(11) / 60 * Decimal("0.30")`` is 0.054999...). The exact value is
  rounded once, half up, to cents.
* **SQL** computes in 64-bit integers. Every input is fixed point with known
  decimal places (:data:`LIMITS`), so it becomes an integer first:
  ``CAST(ROUND(weight_kg * 100) AS BIGINT)`` is exact on PostgreSQL (NUMERIC)
  and on SQLite, where a NUMERIC value may be a REAL within an ulp of
  ``w / 100``: with ``w < 10**6`` the error after ``* 100`` is below ``1e-9``,
  far from the 0.5 that ROUND would need to go wrong. The score in cents is
  then ``N / Q`` for an integer ``N`` (a sum of integer products) and a constant
  ``Q`` (the common denominator of the coefficients), and half-up rounding of a
  non-negative rational is the integer division ``(2N + Q) / (2Q)``, which
  both databases truncate identically. Finally ``cents / 100.0`` is exact
  NUMERIC division on PostgreSQL and one correctly rounded IEEE division on
  SQLite, which :class:`~meingym_tasks.domain.models.FixedDecimalField` reads back as
  the exact 2-place decimal.
* **Bounds** (:data:`LIMITS`, enforced by CHECK constraints) keep ``2N + Q``
  below ``2.1e16``, far inside 64 bits (SQLite would silently switch to REAL
  on overflow), cents below ``2**53``, and every score inside ``NUMERIC(14, 2)``.

A NULL input needed by the kind makes the SQL score NULL, where :func:`score`
raises :class:`~meingym_tasks.exceptions.ValidationError` naming the field.
This module does no I/O; it only builds peewee expression objects.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from fractions import Fraction

import peewee

from meingym_tasks.exceptions import ValidationError

__all__ = [
    "FORMULAS",
    "INPUTS",
    "KINDS",
    "LIMITS",
    "IntegerForm",
    "Limit",
    "Term",
    "cents_expression",
    "exact_score",
    "integer_form",
    "required_inputs",
    "score",
    "score_expression",
]

KINDS = ("strength", "cardio", "bodyweight")

Number = int | float | Decimal


@dataclasses.dataclass(frozen=True)
class Limit:
    """The allowed values of one input: ``0 <= x <= maximum`` (``0 < x`` if ``positive``)."""

    places: int
    maximum: Decimal
    positive: bool = False

    def describe(self) -> str:
        lower = "greater than 0" if self.positive else "from 0"
        if self.places == 0:
            return f"a whole number {lower} to {self.maximum}"
        return f"a number {lower} to {self.maximum} with at most {self.places} decimal places"


#: The inputs of the formula, their fixed-point places and ranges; the CHECK
#: constraints in :mod:`meingym_tasks.domain.models` are built from these.
LIMITS: dict[str, Limit] = {
    "sets": Limit(0, Decimal(1_000)),
    "reps": Limit(0, Decimal(10_000)),
    "weight_kg": Limit(2, Decimal("9999.99")),
    "duration_s": Limit(0, Decimal(31 * 24 * 3600)),
    "distance_m": Limit(0, Decimal(10_000_000)),
    "difficulty": Limit(2, Decimal("10.00"), positive=True),
}
INPUTS = tuple(LIMITS)


@dataclasses.dataclass(frozen=True)
class Term:
    """``coefficient x factor_1 x factor_2 x ...``, the factors named as in :data:`LIMITS`."""

    coefficient: Fraction
    factors: tuple[str, ...]


#: The one definition of the score: per kind, a sum of terms.
FORMULAS: dict[str, tuple[Term, ...]] = {
    "strength": (Term(Fraction(1, 10), ("weight_kg", "reps", "sets", "difficulty")),),
    "cardio": (
        Term(Fraction(1, 100), ("distance_m", "difficulty")),
        Term(Fraction(1, 60), ("duration_s", "difficulty")),
    ),
    "bodyweight": (Term(Fraction(1, 2), ("reps", "sets", "difficulty")),),
}


def required_inputs(kind: str) -> tuple[str, ...]:
    """The inputs the formula of ``kind`` uses, in :data:`INPUTS` order."""
    used = {factor for term in FORMULAS[_known_kind(kind)] for factor in term.factors}
    return tuple(name for name in INPUTS if name in used)


# --------------------------------------------------------------------------- Python


def score(
    kind: str,
    difficulty: Number | None,
    sets: Number | None = None,
    reps: Number | None = None,
    weight_kg: Number | None = None,
    duration_s: Number | None = None,
    distance_m: Number | None = None,
) -> Decimal:
    """The score of one action, e.g. ``Decimal("123.45")``.

    Inputs the kind does not use are ignored (a run has no reps). Raises
    :class:`ValidationError` for an unknown kind and for a used input that is
    missing, negative, too large or too precise, naming the field and the
    allowed values.
    """
    values = {
        "difficulty": difficulty,
        "sets": sets,
        "reps": reps,
        "weight_kg": weight_kg,
        "duration_s": duration_s,
        "distance_m": distance_m,
    }
    exact = exact_score(kind, values)
    cents = math.floor(exact * 100 + Fraction(1, 2))  # half up; exact >= 0
    return Decimal(cents).scaleb(-2)


def exact_score(kind: str, values: Mapping[str, Number | None]) -> Fraction:
    """The unrounded score as an exact fraction (validated like :func:`score`)."""
    kind = _known_kind(kind)
    checked = {name: _checked(kind, name, values.get(name)) for name in required_inputs(kind)}
    terms = (term.coefficient * math.prod(checked[f] for f in term.factors) for term in FORMULAS[kind])
    return sum(terms, start=Fraction(0))


def _known_kind(kind: str) -> str:
    if kind not in FORMULAS:
        raise ValidationError(f"kind {kind!r} is not allowed; expected one of {', '.join(KINDS)}")
    return kind


def _checked(kind: str, name: str, value: Number | None) -> Fraction:
    limit = LIMITS[name]
    allowed = f"{name} must be {limit.describe()}"
    if value is None:
        raise ValidationError(f"{name} is required for {kind} exercises; {allowed}")
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValidationError(f"{allowed}, got {value!r}")
    try:
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, ValueError):
        raise ValidationError(f"{allowed}, got {value!r}") from None
    if not number.is_finite():
        raise ValidationError(f"{allowed}, got {value!r}")
    too_small = number <= 0 if limit.positive else number < 0
    if too_small or number > limit.maximum or number != round(number, limit.places):
        raise ValidationError(f"{allowed}, got {value!r}")
    return Fraction(number)


# --------------------------------------------------------------------------- SQL


def _literal(value: int | str) -> peewee.SQL:
    # Constants are inlined so no driver turns them into floats or typed parameters.
    return peewee.SQL(str(value))


def _as_integer(column: peewee.Node, places: int) -> peewee.Node:
    """The fixed-point ``column`` scaled to an exact BIGINT (see the module docstring)."""
    if places == 0:
        return peewee.Cast(column, "BIGINT")
    return peewee.Cast(peewee.fn.ROUND(column * _literal(10**places)), "BIGINT")


def _product(nodes: list[peewee.Node]) -> peewee.Node:
    return functools.reduce(operator.mul, nodes)


@dataclasses.dataclass(frozen=True)
class IntegerForm:
    """A kind's score in cents as ``sum(multiplier x product of inputs) / denominator``.

    The inputs are the integers ``input x 10**places``; the multipliers and the
    denominator are integers derived from :data:`FORMULAS`.
    """

    terms: tuple[tuple[int, tuple[str, ...]], ...]
    denominator: int


def integer_form(kind: str) -> IntegerForm:
    """The integer arithmetic the SQL of ``kind`` does (see :class:`IntegerForm`)."""
    # cents = sum over terms of 100 x coefficient / 10**places x (product of integer inputs)
    ratios = [
        term.coefficient * 100 / 10 ** sum(LIMITS[factor].places for factor in term.factors)
        for term in FORMULAS[_known_kind(kind)]
    ]
    denominator = math.lcm(*(ratio.denominator for ratio in ratios))
    terms = tuple((int(ratio * denominator), term.factors) for term, ratio in zip(FORMULAS[kind], ratios, strict=True))
    return IntegerForm(terms, denominator)


def _kind_cents(kind: str, integers: Mapping[str, peewee.Node]) -> peewee.Node:
    """Half-up cents of ``kind`` as integer SQL: ``(2N + Q) / (2Q)``, truncating division."""
    form = integer_form(kind)
    products = [
        _product(([_literal(multiplier)] if multiplier != 1 else []) + [integers[f] for f in factors])
        for multiplier, factors in form.terms
    ]
    total = functools.reduce(operator.add, products)
    if form.denominator == 1:
        return total
    return (_literal(2) * total + _literal(form.denominator)) / _literal(2 * form.denominator)


def score_expression(columns: Mapping[str, peewee.Node], kind: peewee.Node) -> peewee.Node:
    """The SQL computing :func:`score` for a row, equal to it to the cent on both databases.

    Args:
        columns: an expression for each name in :data:`INPUTS` (action columns
            and the exercise's ``difficulty``).
        kind: an expression for the exercise kind; unknown kinds give NULL.
    """
    integers = {name: _as_integer(columns[name], LIMITS[name].places) for name in INPUTS}
    cases = [(_quoted(kind_name), _kind_cents(kind_name, integers) / _literal("100.0")) for kind_name in KINDS]
    return peewee.Case(kind, cases)


def cents_expression(column: peewee.Node) -> peewee.Node:
    """A 2-place NUMERIC column as exact integer cents, for sums SQLite would do in floats."""
    return _as_integer(column, 2)


def _quoted(kind: str) -> peewee.SQL:
    assert kind.isidentifier()
    return peewee.SQL(f"'{kind}'")
