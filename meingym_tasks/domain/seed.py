"""Demo data: a fixed exercise catalogue, users and a lot of actions, quickly.

Used to try the jobs on realistic volumes (``seed_demo_data(1_000, 1_000_000)``).
Everything is drawn from ``random.Random(seed)``, so a seed gives the same data
(relative to ``now``) every time. Rows go in with multi-row ``INSERT``s
(``insert_many``) in chunks small enough for SQLite's bound-variable limit, one
transaction per batch; nothing is saved row by row. Scores stay NULL: computing
them is the update job's work.
"""

from __future__ import annotations

import itertools
import random
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import peewee

from meingym_tasks.domain.models import Action, Exercise, User, to_utc_naive, utcnow, write_transaction
from meingym_tasks.exceptions import ValidationError

__all__ = ["EXERCISES", "seed_demo_data"]

#: name, kind, difficulty
EXERCISES: tuple[tuple[str, str, Decimal], ...] = (
    ("Back Squat", "strength", Decimal("1.50")),
    ("Bench Press", "strength", Decimal("1.20")),
    ("Deadlift", "strength", Decimal("1.60")),
    ("Overhead Press", "strength", Decimal("1.30")),
    ("Barbell Row", "strength", Decimal("1.10")),
    ("Running", "cardio", Decimal("1.00")),
    ("Cycling", "cardio", Decimal("0.60")),
    ("Rowing", "cardio", Decimal("1.10")),
    ("Swimming", "cardio", Decimal("1.40")),
    ("Push-up", "bodyweight", Decimal("1.00")),
    ("Pull-up", "bodyweight", Decimal("2.00")),
    ("Burpee", "bodyweight", Decimal("1.75")),
)

FIRST_NAMES = ("Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hannah", "Jonas", "Lea", "Lukas", "Mia")
LAST_NAMES = ("Bauer", "Becker", "Fischer", "Hoffmann", "Koch", "Meyer", "Müller", "Schmidt", "Schulz", "Wagner")

#: Rows per transaction.
BATCH = 10_000
#: Bound variables per statement: SQLite before 3.32 allowed only 999, later 32766.
MAX_VARIABLES = 999 if sqlite3.sqlite_version_info < (3, 32, 0) else 32_766
SPREAD = timedelta(days=90)
#: Barbell weights: 2.50 kg to 199.75 kg in 0.25 kg steps.
WEIGHTS = tuple(Decimal(quarters * 25).scaleb(-2) for quarters in range(10, 800))

_ACTION_FIELDS = (
    Action.user,
    Action.exercise,
    Action.performed_at,
    Action.sets,
    Action.reps,
    Action.weight_kg,
    Action.duration_s,
    Action.distance_m,
)


def seed_demo_data(users: int, actions: int, seed: int = 0, now: datetime | None = None) -> dict[str, int]:
    """Create the exercise catalogue (if missing), ``users`` users and ``actions`` actions.

    Actions are spread over the 90 days before ``now`` (default: the current time)
    across the new users, or across the existing users when ``users`` is 0.
    Seeding again adds more users with fresh e-mail addresses. Returns the counts
    created: ``{"exercises": ..., "users": ..., "actions": ...}``.
    """
    if users < 0 or actions < 0:
        raise ValidationError(f"users and actions must be 0 or more, got users={users}, actions={actions}")
    now = utcnow() if now is None else to_utc_naive(now)
    rng = random.Random(seed)

    exercises_created = _ensure_exercises()
    catalogue = list(Exercise.select(Exercise.id, Exercise.kind).order_by(Exercise.name).tuples().iterator())
    user_ids = _create_users(users, rng, now) if users else _existing_user_ids()
    if actions and not user_ids:
        raise ValidationError("actions need users: pass users >= 1 or create users first")

    insert_actions = _BulkInsert(Action, _ACTION_FIELDS)
    created = 0
    while created < actions:
        size = min(BATCH, actions - created)
        insert_actions(_action_rows(rng, now, user_ids, catalogue, size))
        created += size
    return {"exercises": exercises_created, "users": users, "actions": created}


def _ensure_exercises() -> int:
    existing = {name for (name,) in Exercise.select(Exercise.name).tuples().iterator()}
    missing = [row for row in EXERCISES if row[0] not in existing]
    if missing:
        with write_transaction():
            Exercise.insert_many(
                missing, fields=[Exercise.name, Exercise.kind, Exercise.difficulty]
            ).on_conflict_ignore().execute()
    return len(missing)


def _create_users(count: int, rng: random.Random, now: datetime) -> list[int]:
    # Numbering continues after the highest id, so a second seeding never reuses an e-mail.
    offset = User.select(peewee.fn.MAX(User.id)).scalar() or 0
    rows = []
    for number in range(offset + 1, offset + count + 1):
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        created = now - SPREAD - timedelta(seconds=rng.randrange(365 * 86400))
        rows.append((f"demo{number}@meingym.example", name, created))
    insert_users = _BulkInsert(User, (User.email, User.name, User.created))
    for batch in _chunks(rows, BATCH):
        insert_users(batch)
    emails = {row[0] for row in rows}
    new = User.select(User.id, User.email).where(User.id > offset).order_by(User.id).tuples().iterator()
    return [user_id for user_id, email in new if email in emails]


def _existing_user_ids() -> list[int]:
    return [user_id for (user_id,) in User.select(User.id).order_by(User.id).tuples().iterator()]


def _action_rows(
    rng: random.Random, now: datetime, user_ids: Sequence[int], catalogue: Sequence[tuple[int, str]], count: int
) -> list[tuple[Any, ...]]:
    """``count`` random action rows (plain ``rng.random()`` draws: a million rows is the point)."""
    draw = rng.random
    earliest = now - SPREAD
    seconds = int(SPREAD.total_seconds())
    n_users, n_exercises, n_weights = len(user_ids), len(catalogue), len(WEIGHTS)
    rows: list[tuple[Any, ...]] = []
    for _ in range(count):
        exercise_id, kind = catalogue[int(draw() * n_exercises)]
        user_id = user_ids[int(draw() * n_users)]
        performed_at = earliest + timedelta(seconds=int(draw() * seconds) + 1)
        if kind == "strength":
            sets, reps = 1 + int(draw() * 6), 1 + int(draw() * 15)
            weight = WEIGHTS[int(draw() * n_weights)]
            rows.append((user_id, exercise_id, performed_at, sets, reps, weight, None, None))
        elif kind == "cardio":
            minutes = 5 + int(draw() * 116)
            metres = minutes * (80 + int(draw() * 321))
            rows.append((user_id, exercise_id, performed_at, None, None, None, minutes * 60, metres))
        else:
            sets, reps = 1 + int(draw() * 5), 5 + int(draw() * 36)
            rows.append((user_id, exercise_id, performed_at, sets, reps, None, None, None))
    return rows


class _BulkInsert:
    """Insert rows of ``model`` as multi-row INSERTs within the bound-variable limit.

    Peewee renders each ``insert_many`` statement value by value and converts each
    value through its field, which costs more than SQLite takes to insert the
    rows. So the rows must already hold database values (ints, 2-place Decimals,
    naive UTC datetimes, None): each statement shape (chunk size) is rendered
    once by peewee, its converted parameters compared with ours, and reused.
    """

    def __init__(self, model: type[peewee.Model], fields: Sequence[peewee.Field]) -> None:
        self.model = model
        self.fields = list(fields)
        self.per_statement = max(1, MAX_VARIABLES // len(self.fields))
        self.statements: dict[int, str] = {}

    def __call__(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """``rows`` in one transaction."""
        db = self.model._meta.database
        with write_transaction():
            for chunk in _chunks(rows, self.per_statement):
                params = list(itertools.chain.from_iterable(chunk))
                db.execute_sql(self._statement(chunk, params), params)

    def _statement(self, chunk: Sequence[tuple[Any, ...]], params: list[Any]) -> str:
        sql = self.statements.get(len(chunk))
        if sql is None:
            sql, rendered = self.model.insert_many(chunk, fields=self.fields).as_rowcount().sql()
            if list(rendered) != params:
                raise RuntimeError(f"peewee rendered {self.model.__name__}.insert_many() unlike expected")
            self.statements[len(chunk)] = sql
        return sql


def _chunks(rows: Sequence[tuple[Any, ...]], size: int) -> Iterator[Sequence[tuple[Any, ...]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
