"""The initial MeinGym schema: users, exercises, actions, user stats, sent emails.

Loaded from its path by ``playhouse.migrations.Runner`` (see
``meingym_tasks/migrate.py``), not imported as part of the package. The models
below are a frozen copy of ``meingym_tasks/models.py`` as of this migration,
deliberately independent of it: later edits to the application models must come
with a new migration, never with a change here. Times are naive UTC; numbers are
fixed-point NUMERIC; the CHECK constraints are the ranges scoring relies on.
"""

from __future__ import annotations

from peewee import (
    BigAutoField,
    CharField,
    Check,
    Database,
    DateTimeField,
    DecimalField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)
from playhouse.migrate import SchemaMigrator


def _models(db: Database) -> list[type[Model]]:
    class User(Model):
        email = CharField(max_length=254, unique=True)
        name = CharField(max_length=200)
        created = DateTimeField()

        class Meta:
            database = db
            table_name = "user"

    class Exercise(Model):
        name = CharField(max_length=100, unique=True)
        kind = CharField(max_length=16, constraints=[Check("kind IN ('strength', 'cardio', 'bodyweight')")])
        difficulty = DecimalField(
            max_digits=4, decimal_places=2, constraints=[Check("difficulty > 0 AND difficulty <= 10.00")]
        )

        class Meta:
            database = db
            table_name = "exercise"

    class Action(Model):
        id = BigAutoField()
        user = ForeignKeyField(User, on_delete="CASCADE", index=False)
        exercise = ForeignKeyField(Exercise, on_delete="RESTRICT")
        performed_at = DateTimeField()
        sets = IntegerField(null=True, constraints=[Check("sets >= 0 AND sets <= 1000")])
        reps = IntegerField(null=True, constraints=[Check("reps >= 0 AND reps <= 10000")])
        weight_kg = DecimalField(
            max_digits=6,
            decimal_places=2,
            null=True,
            constraints=[Check("weight_kg >= 0 AND weight_kg <= 9999.99")],
        )
        duration_s = IntegerField(null=True, constraints=[Check("duration_s >= 0 AND duration_s <= 2678400")])
        distance_m = IntegerField(null=True, constraints=[Check("distance_m >= 0 AND distance_m <= 10000000")])
        score = DecimalField(max_digits=14, decimal_places=2, null=True)
        scored_at = DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "action"
            indexes = ((("user", "performed_at"), False),)

    class UserStats(Model):
        user = ForeignKeyField(User, unique=True, on_delete="CASCADE")
        total_score = DecimalField(max_digits=15, decimal_places=2)
        actions_count = IntegerField()
        score_7d = DecimalField(max_digits=15, decimal_places=2)
        score_30d = DecimalField(max_digits=15, decimal_places=2)
        personal_bests = TextField()
        current_streak_days = IntegerField()
        updated_at = DateTimeField()

        class Meta:
            database = db
            table_name = "user_stats"

    class SentEmail(Model):
        job_id = CharField(max_length=255, unique=True)
        user = ForeignKeyField(User, on_delete="CASCADE")
        kind = CharField(max_length=64)
        recipient = CharField(max_length=254)
        sent_at = DateTimeField()
        message_id = CharField(max_length=255)

        class Meta:
            database = db
            table_name = "sent_email"

    return [User, Exercise, Action, UserStats, SentEmail]


def up(migrator: SchemaMigrator, db: Database) -> None:
    db.create_tables(_models(db), safe=False)


def down(migrator: SchemaMigrator, db: Database) -> None:
    db.drop_tables(_models(db), safe=False)
