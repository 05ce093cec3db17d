"""Rescoring is one set-based UPDATE per id range, idempotent, and only touches its range."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import peewee
import pytest
from playhouse.test_utils import assert_query_count, count_queries

from meingym_tasks.domain.models import Action, Exercise, User
from meingym_tasks.domain.rescoring import action_id_bounds, rescore_actions

NOW = datetime(2024, 6, 1, 3, 0)


@pytest.fixture
def user(db: peewee.Database) -> User:
    return User.create(email="ada@example.com", name="Ada")


@pytest.fixture
def exercises(db: peewee.Database) -> dict[str, Exercise]:
    return {
        "strength": Exercise.create(name="Deadlift", kind="strength", difficulty=Decimal("1.60")),
        "cardio": Exercise.create(name="Running", kind="cardio", difficulty=Decimal("1.00")),
        "bodyweight": Exercise.create(name="Pull-up", kind="bodyweight", difficulty=Decimal("2.00")),
    }


NUMBERS: dict[str, Callable[[int], dict[str, Any]]] = {
    "strength": lambda n: {"sets": 3, "reps": 5 + n % 4, "weight_kg": Decimal("102.50")},
    "cardio": lambda n: {"duration_s": 1500 + n, "distance_m": 5000 + 7 * n},
    "bodyweight": lambda n: {"sets": 4, "reps": 8 + n % 5},
}


def add_actions(user: User, exercises: dict[str, Exercise], count: int) -> list[int]:
    """``count`` actions cycling through the three kinds; returns their ids."""
    rows = []
    for n in range(count):
        kind = ("strength", "cardio", "bodyweight")[n % 3]
        numbers = NUMBERS[kind](n)
        row = dict.fromkeys(("sets", "reps", "weight_kg", "duration_s", "distance_m"), None) | numbers
        rows.append({"user": user, "exercise": exercises[kind], "performed_at": NOW - timedelta(hours=n), **row})
    with Action._meta.database.atomic():
        Action.insert_many(rows).execute()
    return [a.id for a in Action.select(Action.id).order_by(Action.id)]


def scores() -> dict[int, Decimal | None]:
    return {a.id: a.score for a in Action.select(Action.id, Action.score)}


def test_bounds_are_none_without_actions(db: peewee.Database) -> None:
    assert action_id_bounds() is None


def test_bounds_are_the_smallest_and_largest_id(user: User, exercises: dict[str, Exercise]) -> None:
    ids = add_actions(user, exercises, 5)
    Action.delete().where(Action.id == ids[0]).execute()

    assert action_id_bounds() == (ids[1], ids[-1])


def test_rescoring_scores_every_action_in_the_range(user: User, exercises: dict[str, Exercise]) -> None:
    ids = add_actions(user, exercises, 3)

    assert rescore_actions(ids[0], ids[-1], NOW) == 3

    assert [scores()[i] for i in ids] == [Decimal("246.00"), Decimal("75.09"), Decimal("40.00")]
    assert {a.scored_at for a in Action.select()} == {NOW}


def test_actions_outside_the_range_are_left_alone(user: User, exercises: dict[str, Exercise]) -> None:
    ids = add_actions(user, exercises, 10)

    assert rescore_actions(ids[2], ids[5], NOW) == 4

    untouched = Action.select().where(Action.score.is_null() & Action.scored_at.is_null()).count()
    assert untouched == 6


def test_an_empty_or_inverted_range_updates_nothing(user: User, exercises: dict[str, Exercise]) -> None:
    ids = add_actions(user, exercises, 3)

    assert rescore_actions(ids[-1] + 1, ids[-1] + 100, NOW) == 0
    assert rescore_actions(ids[-1], ids[0], NOW) == 0
    assert set(scores().values()) == {None}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_bounds_are_read_from_the_ends_of_the_primary_key_not_by_a_scan(
    user: User, exercises: dict[str, Exercise]
) -> None:
    """SQLite reads min() or max() from an index only for a query with just one of them.

    (PostgreSQL plans both from the index in one query; the two queries cost it nothing.)
    """
    add_actions(user, exercises, 30)
    with count_queries() as counter:
        action_id_bounds()

    database = Action._meta.database
    plans = [
        " ".join(row[-1] for row in database.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall())
        for sql, params in (record.msg for record in counter.get_queries())
    ]
    assert len(plans) == 2
    assert all(plan.startswith("SEARCH ") for plan in plans), plans  # both in one query: "SCAN t1"


@pytest.mark.parametrize("size", [1, 30, 300])
def test_rescoring_is_one_query_whatever_the_range_size(user: User, exercises: dict[str, Exercise], size: int) -> None:
    ids = add_actions(user, exercises, size)

    with assert_query_count(1):
        rescore_actions(ids[0], ids[-1], NOW)

    assert None not in scores().values()


def test_the_query_is_a_single_update_with_a_subquery(user: User, exercises: dict[str, Exercise]) -> None:
    ids = add_actions(user, exercises, 6)

    with count_queries() as counter:
        rescore_actions(ids[0], ids[-1], NOW)

    [(sql, _params)] = [record.msg for record in counter.get_queries()]
    assert sql.startswith('UPDATE "action" SET "score" = (SELECT CASE')


def test_rescoring_twice_stores_the_same_scores(user: User, exercises: dict[str, Exercise]) -> None:
    ids = add_actions(user, exercises, 30)
    rescore_actions(ids[0], ids[-1], NOW)
    first = scores()

    rescore_actions(ids[0], ids[-1], NOW + timedelta(days=1))

    assert scores() == first
    assert {a.scored_at for a in Action.select()} == {NOW + timedelta(days=1)}


def test_a_changed_difficulty_is_picked_up(user: User, exercises: dict[str, Exercise]) -> None:
    ids = add_actions(user, exercises, 3)
    rescore_actions(ids[0], ids[-1], NOW)
    Exercise.update(difficulty=Decimal("3.20")).where(Exercise.kind == "strength").execute()

    rescore_actions(ids[0], ids[-1], NOW)

    assert scores()[ids[0]] == Decimal("492.00")


def test_an_aware_now_is_stored_as_naive_utc(user: User, exercises: dict[str, Exercise]) -> None:
    ids = add_actions(user, exercises, 1)

    rescore_actions(ids[0], ids[0], datetime(2024, 6, 1, 5, 0, tzinfo=ZoneInfo("Europe/Berlin")))

    assert Action.get_by_id(ids[0]).scored_at == NOW
