"""Reliability: how often a job was recovered from a dead consumer, and the dead-letter list.

A frozen copy of the models as of this migration (see 0001).
"""

from __future__ import annotations

from peewee import BigAutoField, CharField, Database, DateTimeField, IntegerField, Model, TextField
from playhouse.migrate import SchemaMigrator


def _dead_letter(db: Database) -> type[Model]:
    class DeadLetter(Model):
        id = BigAutoField()
        queue = CharField(max_length=40)
        reason = TextField()
        payload = TextField()
        size = IntegerField()
        consumer = CharField(max_length=200, null=True)
        received_at = DateTimeField(index=True)

        class Meta:
            database = db
            table_name = "job_dead_letter"

    return DeadLetter


def up(migrator: SchemaMigrator, db: Database) -> None:
    migrator.migrate(migrator.add_column("job_record", "recoveries", IntegerField(default=0)))
    db.create_tables([_dead_letter(db)], safe=False)


def down(migrator: SchemaMigrator, db: Database) -> None:
    db.drop_tables([_dead_letter(db)], safe=False)
    migrator.migrate(migrator.drop_column("job_record", "recoveries"))
