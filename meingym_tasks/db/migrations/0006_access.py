"""Access: named tokens, dashboard sessions, failed-authentication counters, the audit trail.

A frozen copy of ``meingym_tasks/access/models.py`` as of this migration (see
0001 for why migrations never import the application models).
"""

from __future__ import annotations

from peewee import (
    BigAutoField,
    CharField,
    CompositeKey,
    Database,
    DateTimeField,
    DoubleField,
    IntegerField,
    Model,
    TextField,
)
from playhouse.migrate import SchemaMigrator


def _models(db: Database) -> list[type[Model]]:
    class AccessToken(Model):
        id = BigAutoField()
        name = CharField(max_length=40, unique=True)
        scope = CharField(max_length=12)
        secret_hash = CharField(max_length=64, unique=True)
        created_at = DateTimeField()
        created_by = CharField(max_length=200)
        last_used_at = DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "access_token"

    class AccessSession(Model):
        id = CharField(max_length=32, primary_key=True)
        secret_hash = CharField(max_length=64, unique=True)
        token_name = CharField(max_length=40, index=True)
        token_hash = CharField(max_length=64)
        created_at = DateTimeField()
        last_seen_at = DateTimeField()
        expires_at = DateTimeField(index=True)
        client = CharField(max_length=64, null=True)
        user_agent = CharField(max_length=200, null=True)

        class Meta:
            database = db
            table_name = "access_session"

    class ThrottleEntry(Model):
        kind = CharField(max_length=12)
        key = CharField(max_length=200)
        failures = IntegerField()
        last_failure_at = DoubleField()
        locked_until = DoubleField()

        class Meta:
            database = db
            table_name = "access_throttle"
            primary_key = CompositeKey("kind", "key")

    class AuditEntry(Model):
        id = BigAutoField()
        at = DateTimeField(index=True)
        actor = CharField(max_length=200)
        via = CharField(max_length=12)
        client = CharField(max_length=64, null=True)
        action = CharField(max_length=40)
        target = CharField(max_length=200, null=True)
        outcome = CharField(max_length=12)
        message = TextField(null=True)
        detail = TextField(null=True)

        class Meta:
            database = db
            table_name = "access_audit"
            indexes = ((("target", "id"), False), (("actor", "id"), False))

    return [AccessToken, AccessSession, ThrottleEntry, AuditEntry]


def up(migrator: SchemaMigrator, db: Database) -> None:
    db.create_tables(_models(db), safe=False)


def down(migrator: SchemaMigrator, db: Database) -> None:
    db.drop_tables(_models(db), safe=False)
