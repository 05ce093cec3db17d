"""The score formula: examples, validation, and Python == SQL on both databases."""

from __future__ import annotations

import itertools
import math
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction
from typing import Any

import peewee
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meingym_tasks.domain import scoring
from meingym_tasks.domain.models import Action, Exercise, User, utcnow
from meingym_tasks.domain.rescoring import rescore_actions
from meingym_tasks.domain.scoring import LIMITS, score
from meingym_tasks.exceptions import ValidationError

# --------------------------------------------------------------------------- examples


def test_strength_is_weight_times_reps_times_sets_times_difficulty_over_ten() -> None:
    assert score("strength", Decimal("1.50"), sets=3, reps=5, weight_kg=Decimal("100")) == Decimal("225.00")


def test_cardio_is_distance_per_hundred_metres_plus_minutes_times_difficulty() -> None:
    assert score("cardio", Decimal("1.00"), duration_s=1800, distance_m=5000) == Decimal("80.00")


def test_bodyweight_is_half_a_point_per_rep_times_difficulty() -> None:
    assert score("bodyweight", Decimal("2.00"), sets=3, reps=20) == Decimal("60.00")


def test_scores_have_two_decimal_places() -> None:
    assert str(score("bodyweight", Decimal("1.00"), sets=0, reps=0)) == "0.00"
    assert str(score("strength", Decimal("1.10"), sets=1, reps=1, weight_kg=Decimal("2.5"))) == "0.28"


def test_halves_round_up() -> None:
    # 1 x 1 x 0.5 x 0.01 = 0.005 exactly: half up gives 0.01 (half even would give 0.00)
    assert score("bodyweight", Decimal("0.01"), sets=1, reps=1) == Decimal("0.01")
    # 0.25 kg x 1 x 1 x 0.50 / 10 = 0.0125 -> 0.01
    assert score("strength", Decimal("0.50"), sets=1, reps=1, weight_kg=Decimal("0.25")) == Decimal("0.01")


def test_a_tie_behind_a_sixtieth_still_rounds_up() -> None:
    # 11 s / 60 x 0.30 is exactly 0.055; 28-digit Decimal arithmetic lands just below it.
    assert (Decimal(0) / 100 + Decimal(11) / 60) * Decimal("0.30") < Decimal("0.055")
    assert score("cardio", Decimal("0.30"), duration_s=11, distance_m=0) == Decimal("0.06")


def test_inputs_the_kind_does_not_use_are_ignored() -> None:
    assert score("cardio", Decimal("1.00"), sets=None, reps=-5, duration_s=60, distance_m=0) == Decimal("1.00")


def test_floats_and_ints_are_taken_at_their_decimal_value() -> None:
    assert score("strength", 1.1, sets=2, reps=3, weight_kg=12.5) == Decimal("8.25")
    assert score("strength", 1, sets=2, reps=3, weight_kg=12) == Decimal("7.20")


def test_the_limits_keep_integer_sql_arithmetic_exact() -> None:
    # The largest integer numerator N the SQL computes must leave room for 2N + Q in 64 bits,
    # the cents must be exact as a double, and the score must fit NUMERIC(14, 2).
    for kind in scoring.KINDS:
        largest = {name: LIMITS[name].maximum for name in scoring.required_inputs(kind)}
        cents = scoring.exact_score(kind, largest) * 100
        scaled = {name: int(value.scaleb(LIMITS[name].places)) for name, value in largest.items()}
        form = scoring.integer_form(kind)
        numerator = sum(multiplier * math.prod(scaled[f] for f in factors) for multiplier, factors in form.terms)
        assert Fraction(numerator, form.denominator) == cents, kind
        assert 2 * numerator + form.denominator < 2**63, kind
        assert cents < 2**53, kind
        assert cents / 100 < 10**12, kind


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kind", "inputs", "field", "allowed"),
    [
        ("strength", {"sets": 3, "reps": 5}, "weight_kg", "required for strength"),
        ("strength", {"sets": -1, "reps": 5, "weight_kg": 20}, "sets", "whole number from 0 to 1000"),
        ("bodyweight", {"sets": 3, "reps": -2}, "reps", "whole number from 0 to 10000"),
        ("bodyweight", {"sets": 2.5, "reps": 2}, "sets", "whole number"),
        ("strength", {"sets": 3, "reps": 5, "weight_kg": Decimal("-0.01")}, "weight_kg", "from 0 to 9999.99"),
        ("strength", {"sets": 3, "reps": 5, "weight_kg": Decimal("1.234")}, "weight_kg", "2 decimal places"),
        ("cardio", {"duration_s": 60}, "distance_m", "required for cardio"),
        ("cardio", {"duration_s": -60, "distance_m": 10}, "duration_s", "whole number from 0"),
        ("cardio", {"duration_s": 60, "distance_m": 10**8}, "distance_m", "to 10000000"),
        ("bodyweight", {"sets": True, "reps": 3}, "sets", "whole number"),
        ("bodyweight", {"sets": "3", "reps": 3}, "sets", "whole number"),
        ("bodyweight", {"sets": float("nan"), "reps": 3}, "sets", "whole number"),
    ],
)
def test_bad_inputs_raise_a_validation_error_naming_the_field(
    kind: str, inputs: dict[str, Any], field: str, allowed: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        score(kind, Decimal("1.00"), **inputs)

    assert field in str(raised.value)
    assert allowed in str(raised.value)


@pytest.mark.parametrize("difficulty", [None, 0, Decimal("-1"), Decimal("10.01"), Decimal("0.001")])
def test_difficulty_must_be_positive_with_two_places(difficulty: Any) -> None:
    with pytest.raises(ValidationError, match="difficulty"):
        score("bodyweight", difficulty, sets=1, reps=1)


def test_an_unknown_kind_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="kind 'yoga' is not allowed; expected one of strength, cardio"):
        score("yoga", Decimal("1.00"), sets=1, reps=1)


# --------------------------------------------------------------------------- Python agrees with a reference


def reference(kind: str, difficulty: Decimal, **inputs: int | Decimal) -> Decimal:
    """The formula as written in the docs, in 60-digit Decimals with one division at the end."""
    with localcontext() as ctx:
        ctx.prec = 60
        if kind == "strength":
            exact = inputs["weight_kg"] * inputs["reps"] * inputs["sets"] * difficulty / 10
        elif kind == "cardio":
            # (d / 100 + t / 60) x k == (3d + 5t) x k / 300: a tie stays exactly a tie
            exact = (3 * inputs["distance_m"] + 5 * inputs["duration_s"]) * difficulty / 300
        else:
            exact = inputs["reps"] * inputs["sets"] * Decimal("0.5") * difficulty
        return exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def decimals(name: str) -> st.SearchStrategy[Decimal]:
    limit = LIMITS[name]
    low = Decimal(1).scaleb(-limit.places) if limit.positive else Decimal(0)
    return st.decimals(min_value=low, max_value=limit.maximum, places=limit.places)


def integers(name: str) -> st.SearchStrategy[int]:
    # Small numbers make ties (x.xx5) likely; the full range checks the bounds.
    return st.one_of(st.integers(0, 12), st.integers(0, int(LIMITS[name].maximum)))


tie_prone_difficulties = st.sampled_from([Decimal(d) for d in ("0.01", "0.05", "0.30", "0.75", "1.25", "10.00")])

actions = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(scoring.KINDS),
        "difficulty": st.one_of(tie_prone_difficulties, decimals("difficulty")),
        "sets": integers("sets"),
        "reps": integers("reps"),
        "weight_kg": st.one_of(st.sampled_from([Decimal("0.25"), Decimal("2.50")]), decimals("weight_kg")),
        "duration_s": integers("duration_s"),
        "distance_m": integers("distance_m"),
    }
)


@given(actions)
def test_the_scorer_matches_the_written_formula(action: dict[str, Any]) -> None:
    inputs = {name: action[name] for name in scoring.required_inputs(action["kind"]) if name != "difficulty"}
    assert score(**action) == reference(action["kind"], action["difficulty"], **inputs)


@given(actions)
def test_exact_score_rounds_to_the_scorer(action: dict[str, Any]) -> None:
    exact = scoring.exact_score(action["kind"], action)
    assert Fraction(score(**action)) - exact <= Fraction(1, 200)
    assert exact - Fraction(score(**action)) < Fraction(1, 200)


# --------------------------------------------------------------------------- Python == SQL


_names = itertools.count()


def store(rows: list[dict[str, Any]]) -> tuple[int, int]:
    """Insert one exercise per row and the action; returns the action id range."""
    user, _ = User.get_or_create(email="scorer@example.com", defaults={"name": "Scorer"})
    ids = []
    for row in rows:
        exercise = Exercise.create(name=f"exercise {next(_names)}", kind=row["kind"], difficulty=row["difficulty"])
        needed = scoring.required_inputs(row["kind"])
        fields = {name: row[name] for name in ("sets", "reps", "weight_kg", "duration_s", "distance_m")}
        # What the kind does not use is stored as NULL, as the app would.
        fields = {name: (value if name in needed else None) for name, value in fields.items()}
        ids.append(Action.create(user=user, exercise=exercise, performed_at=utcnow(), **fields).id)
    return min(ids), max(ids)


def stored_and_python_scores(first: int, last: int) -> list[tuple[Decimal | None, Decimal]]:
    query = Action.select(Action, Exercise).join(Exercise).where(Action.id.between(first, last))
    return [(action.score, action.python_score()) for action in query]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(actions, min_size=1, max_size=20))
def test_the_database_computes_exactly_the_python_score(db: peewee.Database, rows: list[dict[str, Any]]) -> None:
    first, last = store(rows)

    assert rescore_actions(first, last, utcnow()) == len(rows)

    for stored, expected in stored_and_python_scores(first, last):
        assert stored == expected
        assert str(stored) == str(expected)  # same places, not just the same value


@pytest.mark.parametrize(
    "row",
    [
        {"kind": "cardio", "difficulty": Decimal("0.30"), "duration_s": 11, "distance_m": 0},
        {"kind": "bodyweight", "difficulty": Decimal("0.01"), "sets": 1, "reps": 1},
        {"kind": "strength", "difficulty": Decimal("0.50"), "sets": 1, "reps": 1, "weight_kg": Decimal("0.25")},
        {
            "kind": "strength",
            "difficulty": Decimal("10.00"),
            "sets": 1000,
            "reps": 10000,
            "weight_kg": Decimal("9999.99"),
        },
        {"kind": "cardio", "difficulty": Decimal("10.00"), "duration_s": 2678400, "distance_m": 10_000_000},
        {"kind": "cardio", "difficulty": Decimal("0.01"), "duration_s": 1, "distance_m": 1},
    ],
    ids=["sixtieth-tie", "half-cent", "quarter-cent", "largest-strength", "largest-cardio", "smallest-cardio"],
)
def test_ties_and_extremes_agree_on_both_databases(db: peewee.Database, row: dict[str, Any]) -> None:
    full = {"sets": None, "reps": None, "weight_kg": None, "duration_s": None, "distance_m": None, **row}
    first, last = store([full])

    rescore_actions(first, last, utcnow())

    [(stored, expected)] = stored_and_python_scores(first, last)
    assert stored == expected


def test_a_missing_input_gives_a_null_score_in_the_database(db: peewee.Database) -> None:
    first, last = store(
        [{"kind": "strength", "difficulty": Decimal("1.00"), "sets": 3, "reps": 5, "weight_kg": None,
          "duration_s": None, "distance_m": None}]
    )  # fmt: skip

    rescore_actions(first, last, utcnow())

    assert Action.get_by_id(first).score is None
