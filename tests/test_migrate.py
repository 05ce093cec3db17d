"""Migrations apply once, report what is pending, and build the schema the models describe."""

from __future__ import annotations

from pathlib import Path

import peewee
from playhouse.migrations import Runner

from meingym_tasks.db.migrate import MIGRATIONS_DIR, migrate, pending
from meingym_tasks.domain.models import MODELS

ALL = [
    "0001_initial",
    "0002_job_registry",
    "0003_reliability",
    "0004_job_listing_index",
    "0005_job_counts",
    "0006_access",
]


def test_a_migrated_database_has_nothing_pending(db: peewee.Database) -> None:
    assert pending(db) == []
    assert migrate(db) == []
    assert migrate(db) == []


def test_a_fresh_database_gets_every_migration_once(tmp_path: Path) -> None:
    fresh = peewee.SqliteDatabase(str(tmp_path / "fresh.db"), pragmas={"foreign_keys": 1})

    assert pending(fresh) == ALL
    assert migrate(fresh) == ALL
    assert pending(fresh) == []
    assert migrate(fresh) == []
    assert {"user", "exercise", "action", "user_stats", "sent_email", "job_record", "job_attempt"} <= set(
        fresh.get_tables()
    )
    fresh.close()


def test_every_migration_can_be_reverted(tmp_path: Path) -> None:
    fresh = peewee.SqliteDatabase(str(tmp_path / "fresh.db"))
    migrate(fresh)
    runner = Runner(fresh, str(MIGRATIONS_DIR))

    assert runner.down() == ["0006_access"]
    assert runner.down() == ["0005_job_counts"]
    assert runner.down() == ["0004_job_listing_index"]
    assert runner.down() == ["0003_reliability"]
    assert runner.down() == ["0002_job_registry"]
    assert runner.down() == ["0001_initial"]
    assert fresh.get_tables() == ["schema_migration"]
    assert pending(fresh) == ALL
    fresh.close()


def test_migrations_ship_as_files_not_as_a_package() -> None:
    assert (MIGRATIONS_DIR / "0001_initial.py").is_file()
    assert not (MIGRATIONS_DIR / "__init__.py").exists()


def test_the_migrated_schema_matches_the_models(db: peewee.Database) -> None:
    for model in MODELS:
        table = model._meta.table_name
        columns = {c.name: c.null for c in db.get_columns(table)}
        expected = {f.column_name: f.null for f in model._meta.sorted_fields}
        assert columns == expected, table

        indexes = {(tuple(i.columns), i.unique) for i in db.get_indexes(table) if not i.name.endswith("_pkey")}
        wanted = {
            (tuple(f.column_name for f in index._expressions), bool(index._unique))
            for index in model._meta.fields_to_index()
        }
        assert indexes == wanted, table

        foreign_keys = {(fk.column, fk.dest_table) for fk in db.get_foreign_keys(table)}
        assert foreign_keys == {(f.column_name, f.rel_model._meta.table_name) for f in model._meta.refs}, table
