"""``meingym-tasks config check``: is this machine ready to run the services?

Loads nothing itself: it gets the :class:`Settings` the services would load and
asks, in order, whether the broker answers (a trivial call through each queue's
storage), whether the database answers (``SELECT 1``) and whether its schema is
current (:func:`meingym_tasks.db.migrate.pending`). Each check runs under a time
limit, so a firewalled host gives an answer instead of a hang. A check writes
nothing the services would not (the PostgreSQL broker creates its tables on first
use, as a consumer would); a SQLite file that does not exist yet is reported, not
created.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from meingym_tasks.names import QUEUES
from meingym_tasks.settings import GOOD_SECRET_KEY_LENGTH, Settings, is_sentinel_url, mask_url

__all__ = ["Check", "Report", "check_broker", "check_database", "run_checks"]

BROKER, DATABASE, SCHEMA = "broker", "database", "schema"


@dataclasses.dataclass(frozen=True)
class Check:
    """The outcome of one check: ``ok`` True/False, or None when it could not run."""

    name: str
    ok: bool | None
    detail: str
    data: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, **self.data}


@dataclasses.dataclass(frozen=True)
class Report:
    """Every check, the masked settings and warnings that do not fail the check."""

    settings: dict[str, str]
    checks: list[Check]
    warnings: list[str]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if check.ok is False]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "settings": self.settings,
            "checks": {check.name: check.as_dict() for check in self.checks},
            "warnings": self.warnings,
        }


def run_checks(settings: Settings, timeout: float = 10.0) -> Report:
    """Check broker, database and schema for ``settings``; the schema only if the database answered."""
    broker = _limited(BROKER, timeout, lambda: check_broker(settings))
    database = _limited(DATABASE, timeout, lambda: check_database(settings))
    if database.ok:
        schema = _limited(SCHEMA, timeout, lambda: check_schema(settings))
    else:
        schema = Check(SCHEMA, None, "not checked: the database is not reachable")
    return Report(settings.masked(), [broker, database, schema], _warnings(settings))


def check_broker(settings: Settings) -> Check:
    """A trivial call through each queue's storage: the number of pending jobs.

    The queues are built here, as the consumers build theirs, rather than
    borrowed from :mod:`meingym_tasks.queue.queues`: a check that hangs past its time
    limit must not leave the process's own queues bound or closed under anyone.
    """
    from meingym_tasks.queue.app import MeinGymHuey

    where = f"{settings.broker} at {mask_url(settings.broker_url)}"
    sqlite_file = _sqlite_path(settings.broker_url)
    if sqlite_file is not None and not sqlite_file.exists():
        return Check(BROKER, True, f"{where}: the file does not exist yet; the first consumer creates it")
    pending: dict[str, int] = {}
    for name in QUEUES:
        queue = MeinGymHuey(name)
        queue.configure(settings)
        try:
            pending[name] = queue.pending_count()
        except Exception as exc:  # whatever the client raises, the answer is "not reachable, because ..."
            return Check(BROKER, False, f"{where} is not reachable: {_reason(exc)}")
        finally:
            queue.close()
    counts = ", ".join(f"{name} {count}" for name, count in pending.items())
    data: dict[str, Any] = {"pending": pending}
    if is_sentinel_url(settings.broker_url):
        primary, data["sentinel"] = _sentinel_view(settings.broker_url)
        where = f"{where}: primary {primary}"
    return Check(BROKER, True, f"{where} answers; pending jobs: {counts}", data)


def _sentinel_view(url: str) -> tuple[str, dict[str, Any]]:
    """Which primary the sentinels name now, and how many of the sentinels answer (fewer: a warning sign)."""
    from meingym_tasks.queue.brokers.redis import sentinel_pool

    pool = sentinel_pool(url)
    try:
        host, port = pool.get_master_address()
        sentinels = pool.sentinel_manager.sentinels
        answering = 0
        for sentinel in sentinels:
            try:
                answering += bool(sentinel.ping())
            except Exception:  # one sentinel down is what Sentinel is for; count it, go on
                pass
            finally:
                sentinel.close()
    finally:
        pool.disconnect()
    primary = f"{host}:{port} ({answering} of {len(sentinels)} sentinels answer)"
    return primary, {"primary": f"{host}:{port}", "sentinels": len(sentinels), "sentinels_answering": answering}


def check_database(settings: Settings) -> Check:
    """``SELECT 1`` on the project database."""
    where = mask_url(settings.database_url)
    sqlite_file = _sqlite_path(settings.database_url)
    if sqlite_file is not None and not sqlite_file.exists():
        return Check(DATABASE, True, f"{where}: the file does not exist yet; `meingym-tasks db migrate` creates it")
    db = _open(settings)
    try:
        db.connect(reuse_if_open=True)
        db.execute_sql("SELECT 1")
    except Exception as exc:
        return Check(DATABASE, False, f"{where} is not reachable: {_reason(exc)}")
    finally:
        if not db.is_closed():
            db.close()
    return Check(DATABASE, True, f"{where} answers")


def check_schema(settings: Settings) -> Check:
    """The schema is current when no migration is pending."""
    from meingym_tasks.db.migrate import MIGRATIONS_DIR, pending

    sqlite_file = _sqlite_path(settings.database_url)
    if sqlite_file is not None and not sqlite_file.exists():
        names = sorted(path.stem for path in MIGRATIONS_DIR.glob("[0-9]*.py"))
    else:
        db = _open(settings)
        try:
            names = pending(db)
        except Exception as exc:
            return Check(SCHEMA, False, f"cannot read the applied migrations: {_reason(exc)}")
        finally:
            if not db.is_closed():
                db.close()
    if names:
        return Check(
            SCHEMA,
            False,
            f"not migrated: {len(names)} migration(s) pending ({', '.join(names)}); run `meingym-tasks db migrate`",
            {"pending": names},
        )
    return Check(SCHEMA, True, "current (no migration pending)", {"pending": []})


def _open(settings: Settings) -> Any:
    # Its own connection, not the shared proxy: a check leaves no binding behind.
    from meingym_tasks.db.database import open_database

    return open_database(settings.database_url)


def _sqlite_path(url: str) -> Path | None:
    if urlsplit(url).scheme != "sqlite" or not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :]
    return None if path in ("", ":memory:") else Path(path)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())  # one line: psycopg's messages span several
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _limited(name: str, timeout: float, check: Callable[[], Check]) -> Check:
    """Run ``check`` in a daemon thread; no answer within ``timeout`` seconds is a failure.

    The thread is left behind when it hangs (a connect to a silent host); the
    command exits soon after, which ends it.
    """
    outcome: list[Check] = []

    def run() -> None:
        try:
            outcome.append(check())
        except Exception as exc:  # reported as this check's failure, not as a traceback
            outcome.append(Check(name, False, _reason(exc)))

    thread = threading.Thread(target=run, name=f"check-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if outcome:
        return outcome[0]
    return Check(name, False, f"no answer within {timeout:g} s")


def _warnings(settings: Settings) -> list[str]:
    warnings = []
    if settings.broker != "sqlite" and not settings.secret_key:
        warnings.append(
            "MEINGYM_SECRET_KEY is unset: this machine signs jobs with its own "
            f"{settings.data_dir / 'secret.key'}; every machine sharing the broker needs the same key"
        )
    key = settings.secret_key
    if key is not None and (len(key) < GOOD_SECRET_KEY_LENGTH or len(set(key)) < 5):
        warnings.append(
            f"MEINGYM_SECRET_KEY has {len(key)} characters ({len(set(key))} different): a weak key lets anyone who "
            f"can write to the broker forge jobs; use {GOOD_SECRET_KEY_LENGTH} or more random ones, such as "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    if settings.smtp_host and settings.smtp_user and not settings.smtp_starttls:
        warnings.append(
            f"SMTP_USER is set without SMTP_STARTTLS: the password goes to {settings.smtp_host} unencrypted "
            "(if the server offers AUTH without TLS); set SMTP_STARTTLS=true"
        )
    exposed = _readable_by_others(settings)
    if exposed:
        warnings.append(
            "readable by other users of this machine: "
            + ", ".join(f"{path} ({mode:04o})" for path, mode in exposed)
            + f"; they hold users' emails and names, job results and secrets: chmod 700 {settings.data_dir} "
            "and chmod 600 the files"
        )
    return warnings


def _readable_by_others(settings: Settings) -> list[tuple[Path, int]]:
    """The data directory and the embedded files and secrets in it that group or others may read."""
    candidates = [settings.data_dir, settings.data_dir / "secret.key", settings.data_dir / "admin.token"]
    for url in (settings.database_url, settings.broker_url):
        sqlite_file = _sqlite_path(url)
        if sqlite_file is not None:
            candidates += [sqlite_file, Path(f"{sqlite_file}-wal"), Path(f"{sqlite_file}-shm")]
    found = []
    for path in dict.fromkeys(candidates):
        try:
            mode = path.stat().st_mode & 0o777
        except OSError:  # not there (yet): nothing to read
            continue
        if mode & 0o077:
            found.append((path, mode))
    return found
