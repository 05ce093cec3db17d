"""A user's statistics are recomputed from their actions: sums, windows, bests, streaks."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import peewee
import pytest

from meingym_tasks.domain.aggregates import STREAK_PAGE, recompute_user_stats
from meingym_tasks.domain.models import Action, Exercise, User, UserStats
from meingym_tasks.exceptions import UnknownUser

NOW = datetime(2024, 6, 10, 12, 0)  # naive UTC: 14:00 in Berlin
BERLIN = ZoneInfo("Europe/Berlin")
UTC = ZoneInfo("UTC")


@pytest.fixture
def run(db: peewee.Database) -> Exercise:
    return Exercise.create(name="Running", kind="cardio", difficulty=Decimal("1.00"))


def did(user: User, exercise: Exercise, at: datetime, score: str | None = "1.00") -> None:
    Action.create(user=user, exercise=exercise, performed_at=at, score=None if score is None else Decimal(score))


def berlin(day: int, hour: int = 8) -> datetime:
    """A local Berlin time in June 2024 (UTC+2), as the naive UTC the database stores."""
    return datetime(2024, 6, day, hour, tzinfo=BERLIN).astimezone(UTC).replace(tzinfo=None)


def stats(user: User) -> UserStats:
    return UserStats.get(UserStats.user == user)


def test_an_unknown_user_is_a_permanent_error(db: peewee.Database) -> None:
    with pytest.raises(UnknownUser) as raised:
        recompute_user_stats(4242, NOW, BERLIN)

    assert raised.value.user_id == 4242
    assert UserStats.select().count() == 0


def test_a_user_without_actions_gets_a_zero_row(user: User) -> None:
    summary = recompute_user_stats(user.id, NOW, BERLIN)

    assert summary == {"user_id": user.id, "actions_count": 0, "total_score": "0.00"}
    row = stats(user)
    assert (row.total_score, row.score_7d, row.score_30d) == (Decimal("0.00"),) * 3
    assert (row.actions_count, row.current_streak_days, row.personal_bests) == (0, 0, {})
    assert row.updated_at == NOW


def test_totals_are_exact_sums_of_the_scores(user: User, squat: Exercise) -> None:
    for n in range(10):
        did(user, squat, NOW - timedelta(hours=n), "0.10")
    did(user, squat, NOW, "0.20")
    did(user, squat, NOW, "999999999999.99")

    summary = recompute_user_stats(user.id, NOW, BERLIN)

    assert summary["total_score"] == "1000000000001.19"
    assert json.loads(json.dumps(summary)) == summary
    assert stats(user).total_score == Decimal("1000000000001.19")


def test_windows_roll_back_seven_and_thirty_days_from_now(user: User, squat: Exercise) -> None:
    did(user, squat, NOW - timedelta(days=1), "1.00")
    did(user, squat, NOW - timedelta(days=7) + timedelta(seconds=1), "2.00")
    did(user, squat, NOW - timedelta(days=7), "4.00")
    did(user, squat, NOW - timedelta(days=20), "8.00")
    did(user, squat, NOW - timedelta(days=30, seconds=1), "16.00")
    did(user, squat, NOW + timedelta(hours=1), "32.00")  # logged for the future: in the total only

    recompute_user_stats(user.id, NOW, BERLIN)

    row = stats(user)
    assert row.score_7d == Decimal("3.00")
    assert row.score_30d == Decimal("15.00")
    assert row.total_score == Decimal("63.00")
    assert row.actions_count == 6


def test_unscored_actions_count_but_add_nothing(user: User, squat: Exercise) -> None:
    did(user, squat, NOW, "5.50")
    did(user, squat, NOW, None)

    assert recompute_user_stats(user.id, NOW, BERLIN) == {"user_id": user.id, "actions_count": 2, "total_score": "5.50"}


def test_personal_bests_are_the_best_score_per_exercise(user: User, squat: Exercise, run: Exercise) -> None:
    other = User.create(email="bob@example.com", name="Bob")
    did(user, squat, NOW, "120.50")
    did(user, squat, NOW, "99.99")
    did(user, run, NOW, "7.00")
    did(user, run, NOW, None)
    did(other, run, NOW, "500.00")

    recompute_user_stats(user.id, NOW, BERLIN)

    assert stats(user).personal_bests == {str(squat.id): "120.50", str(run.id): "7.00"}


def test_only_that_users_actions_count(user: User, squat: Exercise) -> None:
    other = User.create(email="bob@example.com", name="Bob")
    did(other, squat, NOW, "10.00")

    assert recompute_user_stats(user.id, NOW, BERLIN)["actions_count"] == 0


def test_recomputing_rewrites_the_one_row(user: User, squat: Exercise) -> None:
    recompute_user_stats(user.id, NOW, BERLIN)
    did(user, squat, NOW, "3.00")

    recompute_user_stats(user.id, NOW + timedelta(minutes=5), BERLIN)

    assert UserStats.select().count() == 1
    assert stats(user).total_score == Decimal("3.00")
    assert stats(user).updated_at == NOW + timedelta(minutes=5)


@pytest.mark.parametrize(
    ("days", "streak"),
    [
        ([10, 9, 8], 3),
        ([9, 8], 2),  # ending yesterday still counts
        ([8, 7, 6], 0),  # a whole day without training breaks it
        ([10, 9, 7, 6], 2),
        ([10, 10, 10], 1),
        ([], 0),
    ],
)
def test_the_streak_counts_consecutive_local_days(user: User, squat: Exercise, days: list[int], streak: int) -> None:
    for day in days:
        did(user, squat, berlin(day))

    recompute_user_stats(user.id, NOW, BERLIN)

    assert stats(user).current_streak_days == streak


def test_the_streak_uses_local_days_in_the_given_zone(user: User, squat: Exercise) -> None:
    did(user, squat, datetime(2024, 6, 9, 22, 30))  # 00:30 on the 10th in Berlin
    did(user, squat, datetime(2024, 6, 9, 10, 0))

    recompute_user_stats(user.id, NOW, BERLIN)
    assert stats(user).current_streak_days == 2

    recompute_user_stats(user.id, NOW, UTC)
    assert stats(user).current_streak_days == 1


def test_future_actions_do_not_start_a_streak(user: User, squat: Exercise) -> None:
    did(user, squat, NOW + timedelta(days=1))

    recompute_user_stats(user.id, NOW, BERLIN)

    assert stats(user).current_streak_days == 0


def test_a_long_streak_is_followed_back_past_one_page_of_actions(user: User, squat: Exercise) -> None:
    days = STREAK_PAGE  # three actions a day: the streak spans three pages
    rows = [
        {"user": user, "exercise": squat, "performed_at": NOW - timedelta(days=d, hours=h), "score": Decimal("1.00")}
        for d in range(days)
        for h in (0, 1, 2)
    ]
    with Action._meta.database.atomic():
        for start in range(0, len(rows), 200):
            Action.insert_many(rows[start : start + 200]).execute()

    recompute_user_stats(user.id, NOW, BERLIN)

    assert stats(user).current_streak_days == days
