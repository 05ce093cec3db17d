"""Demo data: the counts asked for, the same data for the same seed, safe to run twice."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import peewee
import pytest

from meingym_tasks.domain import seed as seeding
from meingym_tasks.domain.models import Action, Exercise, User
from meingym_tasks.domain.rescoring import action_id_bounds, rescore_actions
from meingym_tasks.domain.seed import EXERCISES, seed_demo_data
from meingym_tasks.exceptions import ValidationError

NOW = datetime(2024, 6, 10, 12, 0)


def snapshot() -> list[tuple[Any, ...]]:
    """Everything seeded, without the ids (sequences differ between runs and databases)."""
    users = [(u.email, u.name, u.created) for u in User.select().order_by(User.email)]
    actions = [
        (a.user.email, a.exercise.name, a.performed_at, a.sets, a.reps, a.weight_kg, a.duration_s, a.distance_m)
        for a in Action.select(Action, User, Exercise).join_from(Action, User).join_from(Action, Exercise)
    ]
    return [*users, *sorted(actions, key=repr)]


def wipe() -> None:
    Action.delete().execute()
    User.delete().execute()


def test_it_creates_what_was_asked_for(db: peewee.Database) -> None:
    assert seed_demo_data(users=3, actions=50, seed=1, now=NOW) == {"exercises": 12, "users": 3, "actions": 50}

    assert User.select().count() == 3
    assert Action.select().count() == 50
    assert {e.kind for e in Exercise.select()} == {"strength", "cardio", "bodyweight"}
    assert Action.select().where(Action.score.is_null(False)).count() == 0  # the update job scores them


def test_actions_spread_over_the_last_ninety_days(db: peewee.Database) -> None:
    seed_demo_data(users=2, actions=300, seed=2, now=NOW)

    first, last = Action.select(peewee.fn.MIN(Action.performed_at), peewee.fn.MAX(Action.performed_at)).scalar(
        as_tuple=True
    )
    assert NOW - timedelta(days=90) < first < NOW - timedelta(days=80)
    assert NOW - timedelta(days=10) < last <= NOW
    assert Action.select(Action.user).distinct().count() == 2


def test_the_same_seed_gives_the_same_data(db: peewee.Database) -> None:
    seed_demo_data(users=4, actions=200, seed=7, now=NOW)
    first = snapshot()
    wipe()

    seed_demo_data(users=4, actions=200, seed=7, now=NOW)

    assert snapshot() == first


def test_another_seed_gives_other_data(db: peewee.Database) -> None:
    seed_demo_data(users=4, actions=200, seed=7, now=NOW)
    first = snapshot()
    wipe()

    seed_demo_data(users=4, actions=200, seed=8, now=NOW)

    assert snapshot() != first


def test_seeding_twice_adds_users_with_new_emails(db: peewee.Database) -> None:
    seed_demo_data(users=3, actions=10, seed=1, now=NOW)

    again = seed_demo_data(users=3, actions=10, seed=1, now=NOW)

    assert again == {"exercises": 0, "users": 3, "actions": 10}
    assert User.select(User.email).distinct().count() == 6
    assert Exercise.select().count() == len(EXERCISES)


def test_without_new_users_actions_go_to_existing_ones(db: peewee.Database) -> None:
    seed_demo_data(users=2, actions=0, seed=1, now=NOW)

    assert seed_demo_data(users=0, actions=20, seed=1, now=NOW)["actions"] == 20
    assert User.select().count() == 2


def test_actions_need_a_user(db: peewee.Database) -> None:
    with pytest.raises(ValidationError, match="actions need users"):
        seed_demo_data(users=0, actions=5, seed=1, now=NOW)


def test_several_statements_and_batches_fit_the_variable_limit(db: peewee.Database) -> None:
    per_statement = seeding.MAX_VARIABLES // 8
    count = seeding.BATCH + per_statement + 7  # two transactions, full and partial statements

    seed_demo_data(users=5, actions=count, seed=3, now=NOW)

    assert Action.select().count() == count


def test_seeded_actions_can_all_be_scored(db: peewee.Database) -> None:
    seed_demo_data(users=3, actions=300, seed=4, now=NOW)
    bounds = action_id_bounds()
    assert bounds is not None

    assert rescore_actions(*bounds, NOW) == 300
    assert Action.select().where(Action.score.is_null()).count() == 0
