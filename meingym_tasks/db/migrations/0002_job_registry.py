"""The job registry: a record per job, its failed attempts, and consumer heartbeats.

A frozen copy of ``meingym_tasks/registry/models.py`` as of this migration
(see 0001 for why migrations never import the application models).
"""

from __future__ import annotations

from peewee import (
    BigAutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    Database,
    DateTimeField,
    IntegerField,
    Model,
    TextField,
)
from playhouse.migrate import SchemaMigrator


def _models(db: Database) -> list[type[Model]]:
    class JobRecord(Model):
        job_id = CharField(max_length=36, primary_key=True)
        queue = CharField(max_length=40)
        name = CharField(max_length=80)
        parent_id = CharField(max_length=36, null=True, index=True)
        arguments = TextField()
        state = CharField(max_length=12)
        attempts = IntegerField(default=0)
        max_attempts = IntegerField(default=1)
        enqueued_at = DateTimeField()
        scheduled_for = DateTimeField(null=True)
        started_at = DateTimeField(null=True)
        finished_at = DateTimeField(null=True)
        next_attempt_at = DateTimeField(null=True)
        consumer = CharField(max_length=200, null=True)
        progress_done = BigIntegerField(null=True)
        progress_total = BigIntegerField(null=True)
        progress_message = CharField(max_length=200, null=True)
        result = TextField(null=True)
        error = TextField(null=True)
        cancel_requested = BooleanField(default=False)
        updated_at = DateTimeField()

        class Meta:
            database = db
            table_name = "job_record"
            indexes = (
                (("enqueued_at", "job_id"), False),
                (("state", "enqueued_at", "job_id"), False),
                (("queue", "state", "enqueued_at", "job_id"), False),
                (("name", "enqueued_at", "job_id"), False),
                (("state", "finished_at"), False),
            )

    class JobAttempt(Model):
        id = BigAutoField()
        job_id = CharField(max_length=36, index=True)
        attempt = IntegerField()
        error = TextField()
        traceback = TextField()
        consumer = CharField(max_length=200, null=True)
        failed_at = DateTimeField()

        class Meta:
            database = db
            table_name = "job_attempt"

    class ConsumerRecord(Model):
        consumer_id = CharField(max_length=200, primary_key=True)
        queue = CharField(max_length=40)
        host = CharField(max_length=120)
        pid = IntegerField()
        workers = IntegerField()
        worker_type = CharField(max_length=12)
        started_at = DateTimeField()
        last_seen_at = DateTimeField(index=True)

        class Meta:
            database = db
            table_name = "job_consumer"

    return [JobRecord, JobAttempt, ConsumerRecord]


def up(migrator: SchemaMigrator, db: Database) -> None:
    db.create_tables(_models(db), safe=False)


def down(migrator: SchemaMigrator, db: Database) -> None:
    db.drop_tables(_models(db), safe=False)
