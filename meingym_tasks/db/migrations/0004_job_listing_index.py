"""List top-level jobs newest first without sorting: index (parent_id, enqueued_at, job_id).

``list_jobs`` leaves a run's batches out (``parent_id IS NULL``); with only an
index on ``parent_id``, SQLite used it and then sorted every top-level record
(53 ms at 100,000 records). This index serves the filter and the order (0.3 ms)
and replaces the single-column one.
"""

from __future__ import annotations

from peewee import Database
from playhouse.migrate import SchemaMigrator


def up(migrator: SchemaMigrator, db: Database) -> None:
    db.execute_sql("DROP INDEX IF EXISTS jobrecord_parent_id")
    migrator.migrate(migrator.add_index("job_record", ("parent_id", "enqueued_at", "job_id"), False))


def down(migrator: SchemaMigrator, db: Database) -> None:
    migrator.migrate(migrator.drop_index("job_record", "job_record_parent_id_enqueued_at_job_id"))
    db.execute_sql("CREATE INDEX jobrecord_parent_id ON job_record (parent_id)")
