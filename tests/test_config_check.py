"""``meingym-tasks config check`` against good and broken configurations, on real services."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import peewee
import pytest
from click.testing import CliRunner, Result

from meingym_tasks.cli.main import cli
from meingym_tasks.db.migrate import MIGRATIONS_DIR
from meingym_tasks.queue import queues
from tests.helpers import throwaway_postgres_database

EVERY_MIGRATION = sorted(path.stem for path in MIGRATIONS_DIR.glob("[0-9]*.py"))


@pytest.fixture
def check() -> Iterator[Callable[..., Result]]:
    """Run ``meingym-tasks config check ARGS`` in-process with exactly the given environment."""
    runner = CliRunner()

    def invoke(env: dict[str, str], *args: str) -> Result:
        return runner.invoke(cli, ["config", "check", *args], env=env, catch_exceptions=False)

    yield invoke
    queues.reset()


def test_a_good_configuration_passes_and_shows_settings_with_secrets_masked(
    check: Callable[..., Result], app_env: dict[str, str]
) -> None:
    result = check({**app_env, "SMTP_PASSWORD": "smtp-secret", "SMTP_USER": "mailer"})

    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    for name in ("broker", "database", "schema"):
        assert any(line.split()[:2] == ["ok", name] for line in lines), result.stdout
    assert "test-secret" not in result.output and "smtp-secret" not in result.output
    assert any(line.split() == ["secret_key", "***"] for line in lines)
    assert any(line.split() == ["smtp_password", "***"] for line in lines)
    assert any(line.split() == ["smtp_user", "mailer"] for line in lines)


def test_json_output(check: Callable[..., Result], app_env: dict[str, str]) -> None:
    result = check(app_env, "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert {name: check["ok"] for name, check in report["checks"].items()} == {
        "broker": True,
        "database": True,
        "schema": True,
    }
    assert report["checks"]["schema"]["pending"] == []
    assert report["settings"]["secret_key"] == "***"
    assert report["settings"]["broker_url"] == app_env["MEINGYM_BROKER_URL"]
    assert report["config_file"] is None


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MEINGYM_WORKERS", "lots", "Error: MEINGYM_WORKERS='lots' is not allowed; expected a whole number from 1"),
        ("MEINGYM_BROKER_URL", "amqp://rabbit/", "Error: MEINGYM_BROKER_URL='amqp://rabbit/' is not allowed"),
        ("MEINGYM_TIMEZONE", "Berlin", "Error: MEINGYM_TIMEZONE='Berlin' is not allowed; expected an IANA"),
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_a_bad_setting_exits_2_with_one_line(
    check: Callable[..., Result],
    make_env: Callable[..., dict[str, str]],
    variable: str,
    value: str,
    expected: str,
    as_json: bool,
) -> None:
    result = check(make_env(**{variable: value}), *(["--json"] if as_json else []))

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(expected)


def test_an_unreachable_redis_exits_1_naming_the_broker_and_the_reason(
    check: Callable[..., Result], make_env: Callable[..., dict[str, str]], db: peewee.Database, database_url: str
) -> None:
    env = make_env(MEINGYM_BROKER_URL="redis://:hunter2@127.0.0.1:1/0", DATABASE_URL=database_url)

    result = check(env)

    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [
        "Error: broker: redis at redis://:***@127.0.0.1:1/0 is not reachable: "
        "ConnectionError: Error 111 connecting to 127.0.0.1:1. Connection refused."
    ]
    assert "hunter2" not in result.output
    assert any(line.split()[:2] == ["ok", "database"] for line in result.stdout.splitlines())


def test_an_unreachable_postgresql_exits_1_and_skips_the_schema(
    check: Callable[..., Result], make_env: Callable[..., dict[str, str]]
) -> None:
    env = make_env(DATABASE_URL="postgresql://meingym:hunter2@127.0.0.1:1/meingym")

    result = check(env, "--json")

    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["checks"]["database"]["ok"] is False
    assert "127.0.0.1" in report["checks"]["database"]["detail"]
    assert "Connection refused" in report["checks"]["database"]["detail"]
    assert report["checks"]["schema"] == {"ok": None, "detail": "not checked: the database is not reachable"}
    assert "hunter2" not in result.output
    assert result.stderr.startswith("Error: database: postgresql://meingym:***@127.0.0.1:1/meingym is not reachable:")


@pytest.fixture(params=["sqlite", "postgres"])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database no migration has touched: a new SQLite path or a new, empty PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh' / 'meingym.db'}"
        return
    with throwaway_postgres_database("meingym_check") as url:
        yield url


def test_an_unmigrated_database_exits_1_naming_the_pending_migrations(
    check: Callable[..., Result], make_env: Callable[..., dict[str, str]], unmigrated_url: str, tmp_path: Path
) -> None:
    result = check(make_env(DATABASE_URL=unmigrated_url))

    assert result.exit_code == 1, result.output
    expected = (
        f"Error: schema: not migrated: {len(EVERY_MIGRATION)} migration(s) pending "
        f"({', '.join(EVERY_MIGRATION)}); run `meingym-tasks db migrate`"
    )
    assert result.stderr.splitlines() == [expected]
    assert not (tmp_path / "fresh").exists(), "a check creates no database"


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a firewall that drops, a hung server)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def test_a_broker_that_never_answers_fails_within_the_timeout(
    check: Callable[..., Result], make_env: Callable[..., dict[str, str]], silent_server: int
) -> None:
    env = make_env(MEINGYM_BROKER_URL=f"redis://127.0.0.1:{silent_server}/0")

    result = check(env, "--timeout", "1")

    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[0] == "Error: broker: no answer within 1 s"


def test_a_shared_broker_without_a_secret_key_warns(
    check: Callable[..., Result], app_env: dict[str, str], broker_url: str
) -> None:
    result = check({**app_env, "MEINGYM_SECRET_KEY": ""})

    assert result.exit_code == 0, result.output
    warned = [line for line in result.stdout.splitlines() if line.startswith("warning: MEINGYM_SECRET_KEY is unset")]
    assert len(warned) == (0 if broker_url.startswith("sqlite") else 1)


@pytest.mark.slow
@pytest.mark.parametrize("broker_url", ["redis"], indirect=True)
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_the_installed_command_reads_the_config_file_as_the_docs_run_it(
    app_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "meingym-tasks.env"
    config.write_text("".join(f"{key}={value}\n" for key, value in app_env.items()))
    command = [str(Path(sys.executable).parent / "meingym-tasks"), "--config", str(config), "config", "check"]

    good = subprocess.run(command, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    broken = subprocess.run(
        command, env={"PATH": "/usr/bin:/bin", "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nothing"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.splitlines()[0] == f"configuration: {config}, overridden by the environment"
    assert broken.returncode == 1  # the environment wins over the file
    assert broken.stderr.startswith("Error: database: postgresql://postgres@127.0.0.1:1/nothing is not reachable")
