"""The tables refuse what scoring cannot handle and give back exactly what was stored."""

from __future__ import annotations

import random
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import peewee
import pytest

from meingym_tasks.domain.models import Action, Exercise, SentEmail, User, UserStats
from meingym_tasks.exceptions import ValidationError

NOW = datetime(2024, 6, 1, 12, 0)


def refused(db: peewee.Database, create: Any) -> bool:
    """True when the database rejects the row (CHECK, NOT NULL, UNIQUE or numeric overflow)."""
    try:
        with db.atomic():
            create()
    except (peewee.IntegrityError, peewee.DataError):
        return True
    return False


@pytest.mark.parametrize(
    "values",
    [
        {"sets": -1},
        {"reps": -1},
        {"weight_kg": Decimal("-0.01")},
        {"duration_s": -1},
        {"distance_m": -1},
        {"sets": 1001},
        {"reps": 10_001},
        {"weight_kg": Decimal("10000.00")},
        {"duration_s": 31 * 86400 + 1},
        {"distance_m": 10_000_001},
    ],
    ids=lambda values: "-".join(f"{k}={v}" for k, v in values.items()),
)
def test_out_of_range_action_numbers_are_refused(
    db: peewee.Database, user: User, squat: Exercise, values: dict[str, Any]
) -> None:
    assert refused(db, lambda: Action.create(user=user, exercise=squat, performed_at=NOW, **values))
    assert Action.select().count() == 0


def test_zero_and_the_largest_allowed_numbers_are_stored(db: peewee.Database, user: User, squat: Exercise) -> None:
    Action.create(user=user, exercise=squat, performed_at=NOW, sets=0, reps=0, weight_kg=0, duration_s=0, distance_m=0)
    Action.create(
        user=user,
        exercise=squat,
        performed_at=NOW,
        sets=1000,
        reps=10_000,
        weight_kg=Decimal("9999.99"),
        duration_s=31 * 86400,
        distance_m=10_000_000,
    )
    assert Action.select().count() == 2


@pytest.mark.parametrize(
    ("kind", "difficulty"),
    [
        ("strength", Decimal("0")),
        ("strength", Decimal("-1.00")),
        ("strength", Decimal("10.01")),
        ("yoga", Decimal("1")),
    ],
)
def test_bad_exercises_are_refused(db: peewee.Database, kind: str, difficulty: Decimal) -> None:
    assert refused(db, lambda: Exercise.create(name="Anything", kind=kind, difficulty=difficulty))
    assert Exercise.select().count() == 0


def test_emails_exercise_names_stats_rows_and_email_markers_are_unique(
    db: peewee.Database, user: User, squat: Exercise
) -> None:
    UserStats.create(user=user)
    SentEmail.create(job_id="job-1", user=user, kind="welcome", recipient=user.email, message_id="<1@x>")

    assert refused(db, lambda: User.create(email="ada@example.com", name="Ada again"))
    assert refused(db, lambda: Exercise.create(name="Back Squat", kind="cardio", difficulty=1))
    assert refused(db, lambda: UserStats.create(user=user))
    assert refused(
        db, lambda: SentEmail.create(job_id="job-1", user=user, kind="welcome", recipient="x", message_id="<2@x>")
    )


def test_decimals_read_back_exactly_with_their_places(db: peewee.Database, user: User, squat: Exercise) -> None:
    rng = random.Random(5)
    weights = [Decimal(rng.randrange(0, 1_000_000)).scaleb(-2) for _ in range(300)]
    scores = [Decimal(rng.randrange(0, 10**14)).scaleb(-2) for _ in range(300)]
    edges = [Decimal("0.00"), Decimal("0.01"), Decimal("0.10"), Decimal("9999.99")]
    score_edges = [Decimal("999999999999.99"), Decimal("0.29"), Decimal("0.57"), Decimal("0.01")]
    weights, scores = weights + edges, scores + score_edges
    rows = [
        {"user": user, "exercise": squat, "performed_at": NOW, "weight_kg": w, "score": s}
        for w, s in zip(weights, scores, strict=True)
    ]
    Action.insert_many(rows).execute()

    stored = [(a.weight_kg, a.score) for a in Action.select().order_by(Action.id)]

    assert stored == list(zip(weights, scores, strict=True))
    assert [str(w) for w, _ in stored] == [str(w) for w in weights]
    assert [str(s) for _, s in stored] == [str(s) for s in scores]


def test_too_many_decimal_places_are_refused_before_reaching_the_database(
    db: peewee.Database, user: User, squat: Exercise
) -> None:
    with pytest.raises(ValidationError, match="weight_kg allows at most 2 decimal places"):
        Action.create(user=user, exercise=squat, performed_at=NOW, weight_kg=Decimal("12.345"))


def test_times_are_stored_as_naive_utc(db: peewee.Database, user: User, squat: Exercise) -> None:
    berlin_noon = datetime(2024, 6, 1, 12, 0, tzinfo=ZoneInfo("Europe/Berlin"))

    action = Action.create(user=user, exercise=squat, performed_at=berlin_noon)

    assert Action.get_by_id(action.id).performed_at == datetime(2024, 6, 1, 10, 0)


def test_personal_bests_are_json(db: peewee.Database, user: User) -> None:
    UserStats.create(user=user, personal_bests={"3": "120.50", "1": "7.00"})

    assert UserStats.get(UserStats.user == user).personal_bests == {"1": "7.00", "3": "120.50"}
