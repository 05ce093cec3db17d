"""The access layer on its own, on SQLite and PostgreSQL: the tables, digests, concurrent failures, retention."""

from __future__ import annotations

import stat
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import peewee
import pytest
from freezegun import freeze_time

from meingym_tasks import access
from meingym_tasks.access import audit, sessions, throttle, tokens
from meingym_tasks.access.errors import InvalidTokenRequest, TokenExists, UnknownToken
from meingym_tasks.access.models import AccessSession, AccessToken, AuditEntry, ThrottleEntry
from meingym_tasks.db.database import database, init_database
from meingym_tasks.settings import Settings

MODELS = [AccessToken, AccessSession, ThrottleEntry, AuditEntry]


@pytest.fixture
def broker_url(tmp_path: Path) -> str:
    """Retention runs in the housekeeping job: the broker does not matter here, the database does."""
    return f"sqlite:///{tmp_path / 'data' / 'queue.db'}"


NOW = datetime(2026, 11, 30, 12, 0, 0)
POLICY = throttle.ThrottlePolicy()


def test_the_migrated_schema_matches_the_access_models(db: peewee.Database) -> None:
    for model in MODELS:
        table = model._meta.table_name
        columns = {c.name: c.null for c in db.get_columns(table)}
        assert columns == {f.column_name: f.null for f in model._meta.sorted_fields}, table
        primary = ("_pkey", "sqlite_autoindex_")  # the primary key's own index, as PostgreSQL and SQLite name it
        indexes = {(tuple(i.columns), i.unique) for i in db.get_indexes(table) if not i.name.endswith(primary[0])}
        indexes -= {(tuple(i.columns), i.unique) for i in db.get_indexes(table) if i.name.startswith(primary[1])}
        wanted = {
            (tuple(f.column_name for f in index._expressions), bool(index._unique))
            for index in model._meta.fields_to_index()
        }
        assert indexes == wanted, table


def test_a_token_is_stored_as_its_digest_only(db: peewee.Database, database_url: str) -> None:
    token, listed = tokens.create("grafana", tokens.READ, created_by="ops@box")
    database.close()  # everything on disk

    row = AccessToken.get(AccessToken.name == "grafana")
    assert row.secret_hash == tokens.digest(token) and len(token) > 50
    assert tokens.identify(token) == tokens.Principal("grafana", "read")
    assert tokens.identify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert tokens.identify(token.replace("grafana", "grafanb", 1)) is None  # another name, never its secret
    assert "token" not in listed and listed["scope"] == "read" and listed["created_by"] == "ops@box"
    if database_url.startswith("sqlite"):
        files = Path(database_url.removeprefix("sqlite:///")).parent.glob("meingym.db*")
        secret = token.rsplit("_", 1)[-1].encode()
        assert all(secret not in path.read_bytes() for path in files)


@pytest.mark.parametrize(
    ("name", "scope", "error"),
    [
        ("Grafana", "read", InvalidTokenRequest),
        ("a_b", "read", InvalidTokenRequest),
        ("x" * 41, "read", InvalidTokenRequest),
        ("ok", "root", InvalidTokenRequest),
        ("admin", "read", TokenExists),
    ],
)
def test_bad_token_names_and_scopes_say_what_is_allowed(
    db: peewee.Database, name: str, scope: str, error: type[Exception]
) -> None:
    with pytest.raises(error, match=r"not allowed; expected|allowed: read, operate, admin|built-in"):
        tokens.create(name, scope, created_by="test")


def test_revoking_ends_the_tokens_sessions_and_an_unknown_name_is_named(db: peewee.Database) -> None:
    token, _ = tokens.create("viewer", tokens.READ, created_by="test")
    policy = sessions.SessionPolicy()
    secret, _ = sessions.start("viewer", tokens.digest(token), client="10.0.0.1", user_agent=None, policy=policy,
                               scope="read")  # fmt: skip
    admin_hash = tokens.digest("the-admin-token-0123")

    assert sessions.resolve(secret, admin_hash, policy) is not None
    assert tokens.revoke("viewer") == 1
    assert sessions.resolve(secret, admin_hash, policy) is None
    with pytest.raises(UnknownToken, match="no token named 'viewer'"):
        tokens.revoke("viewer")


def test_failures_counted_from_many_connections_at_once_are_all_counted(
    db: peewee.Database, make_settings: Callable[..., Settings], database_url: str
) -> None:
    settings = make_settings(DATABASE_URL=database_url)
    policy = throttle.ThrottlePolicy(max_failures=1000, name_failures=1000)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def fail_ten_times() -> None:
        init_database(settings)
        try:
            with database.connection_context():
                start.wait()
                for _ in range(10):
                    throttle.failed("10.0.0.1", "admin", policy, now=NOW)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=fail_ten_times) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    counts = {row.kind: row.failures for row in ThrottleEntry.select()}
    assert counts == {"address": 80, "token": 80}


def test_locks_double_up_to_the_cap_and_failures_are_forgotten_after_an_hour(db: peewee.Database) -> None:
    policy = throttle.ThrottlePolicy(max_failures=3, max_lock=20)
    at, locks = NOW, []
    for _ in range(9):  # each failure made once the previous lock is over, as the web only then checks one
        lockouts = throttle.failed("10.0.0.9", "admin", policy, now=at)
        seconds = next((lock.seconds for lock in lockouts if lock.kind == "address"), 0)
        locks.append(seconds)
        at += timedelta(seconds=seconds)

    assert locks == [0, 0, 1, 2, 4, 8, 16, 20, 20]
    last = at - timedelta(seconds=20)
    assert throttle.standing("10.0.0.9", "admin", policy, now=last).retry_after == 20
    later = last + timedelta(hours=1, seconds=30)
    assert throttle.standing("10.0.0.9", "admin", policy, now=later).retry_after is None
    assert throttle.failed("10.0.0.9", "admin", policy, now=later) == []  # counting again from one
    assert ThrottleEntry.get(ThrottleEntry.kind == "address").failures == 1


def test_a_running_lock_is_not_extended_and_is_reported_once(
    db: peewee.Database, caplog: pytest.LogCaptureFixture
) -> None:
    policy = throttle.ThrottlePolicy(max_failures=100, name_failures=3)
    reported = [throttle.failed(f"10.0.1.{n}", "viewer", policy, now=NOW) for n in range(10)]

    assert [len(lockouts) for lockouts in reported] == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    row = ThrottleEntry.get(ThrottleEntry.kind == "token")
    assert row.failures == 10 and row.locked_until == throttle.epoch(NOW) + 1
    assert len([r for r in caplog.records if "under attack" in r.getMessage()]) == 1
    after = throttle.failed("10.0.1.99", "viewer", policy, now=NOW + timedelta(seconds=2))
    assert [(lock.kind, lock.failures, lock.seconds) for lock in after] == [("token", 11, 256.0)]


def test_retention_prunes_old_audit_entries_expired_sessions_and_forgotten_failures_in_the_housekeeping_job(
    app_settings: Settings, db: peewee.Database
) -> None:
    from meingym_tasks.jobs.tasks import prune_actions_results

    actor = audit.Actor("ops", audit.CLI)
    with freeze_time(NOW) as clock:
        audit.record(actor, "cancel", "old-job")
        sessions.start("admin", "x" * 64, client=None, user_agent=None, policy=sessions.SessionPolicy(ttl=3600),
                       scope="admin")  # fmt: skip
        throttle.failed("10.0.0.1", "admin", POLICY)
        clock.tick(timedelta(days=89))
        audit.record(actor, "cancel", "recent-job")
        assert access.prune(app_settings) == 3  # the session (expired), the failure's two counters (forgotten)
        clock.tick(timedelta(days=2))
        prune_actions_results.call_local()

    assert [e.target for e in AuditEntry.select()] == ["recent-job"]
    assert AccessSession.select().count() == ThrottleEntry.select().count() == 0


def test_an_audit_retention_setting_is_read_and_bounded(make_settings: Callable[..., Settings]) -> None:
    assert make_settings().audit_retention_days == 90
    assert make_settings(MEINGYM_AUDIT_RETENTION_DAYS="7").audit_retention_days == 7
    with pytest.raises(Exception, match="MEINGYM_AUDIT_RETENTION_DAYS='0' is not allowed; expected a whole number"):
        make_settings(MEINGYM_AUDIT_RETENTION_DAYS="0")


def test_the_embedded_database_is_created_0600_in_a_0700_directory(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from meingym_tasks.db.migrate import migrate

    path = tmp_path / "private" / "meingym.db"
    bound = init_database(make_settings(DATABASE_URL=f"sqlite:///{path}"))
    try:
        migrate(bound)
        tokens.create("grafana", tokens.READ, created_by="test")  # writes: the -wal and -shm files appear
        made = sorted(p.name for p in path.parent.iterdir())
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
    finally:
        bound.close()

    assert made == ["meingym.db", "meingym.db-shm", "meingym.db-wal"]
    assert modes == {name: 0o600 for name in made}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_the_embedded_queue_is_created_0600_in_a_0700_directory_too(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """The SQLite broker's file holds job arguments and results (recipients' addresses)."""
    from meingym_tasks.queue import queues
    from meingym_tasks.queue.queues import users_queue

    path = tmp_path / "queue" / "queue.db"
    queues.configure(make_settings(MEINGYM_BROKER_URL=f"sqlite:///{path}"))
    try:
        users_queue.storage.enqueue(b"a message")  # a write: the -wal and -shm files appear
        made = sorted(p.name for p in path.parent.iterdir())
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
    finally:
        queues.reset()

    assert made == ["queue.db", "queue.db-shm", "queue.db-wal"]
    assert modes == {name: 0o600 for name in made}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_sqlite_path_that_cannot_be_made_fails_with_sqlites_own_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    from meingym_tasks.db.database import open_database

    db = open_database(f"sqlite:///{blocker}/meingym.db")  # making it 0600 is best effort: no error here

    with pytest.raises(peewee.OperationalError, match="unable to open database file"):
        db.connect()
