"""The CLI's side of access: tokens, sessions and the audit trail, its own actions audited, config check."""

from __future__ import annotations

import getpass
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import peewee
import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient

from meingym_tasks.access.models import AccessSession, AuditEntry
from meingym_tasks.cli.main import cli
from meingym_tasks.queue import queues
from meingym_tasks.queue.queues import users_queue
from meingym_tasks.settings import Settings
from meingym_tasks.web import WebSettings, create_app
from tests.helpers import run_due

ADMIN_TOKEN = "cli-access-test-admin-token-0123"
OPERATOR = f"{getpass.getuser()}@{socket.gethostname()}"


@pytest.fixture
def broker_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'queue.db'}"


@pytest.fixture
def run_cli(app_env: dict[str, str], db: peewee.Database) -> Iterator[Callable[..., Result]]:
    runner = CliRunner()

    def invoke(*args: str, **env: str) -> Result:
        return runner.invoke(cli, list(args), env={**app_env, **env}, catch_exceptions=False)

    yield invoke
    queues.reset()


def trail() -> list[tuple[str, str, str, str | None, str]]:
    return [(e.action, e.actor, e.via, e.target, e.outcome) for e in AuditEntry.select().order_by(AuditEntry.id)]


def test_tokens_are_created_once_listed_without_secrets_and_revoked(run_cli: Callable[..., Result]) -> None:
    created = run_cli("tokens", "create", "prometheus", "--scope", "read")
    listed = run_cli("tokens", "list")
    as_json = json.loads(run_cli("tokens", "list", "--json").output)
    revoked = run_cli("tokens", "revoke", "prometheus")
    again = run_cli("tokens", "revoke", "prometheus")

    token = created.stdout.strip()
    assert created.exit_code == 0 and token.startswith("mgt_prometheus_") and len(token) == len("mgt_prometheus_") + 43
    assert "this is the only time it is shown" in created.stderr
    assert listed.output.splitlines()[0].split() == ["NAME", "SCOPE", "CREATED", "BY", "LAST", "USED", "SESSIONS"]
    assert "prometheus  read" in listed.output and token not in listed.output
    assert as_json[0]["created_by"] == f"{OPERATOR} (cli)" and "token" not in as_json[0]
    assert revoked.output == "token 'prometheus' revoked, 0 session(s) ended\n"
    assert again.exit_code == 2 and "no token named 'prometheus'" in again.output
    assert trail() == [
        ("token.create", OPERATOR, "cli", "prometheus", "ok"),
        ("token.revoke", OPERATOR, "cli", "prometheus", "ok"),
        ("token.revoke", OPERATOR, "cli", "prometheus", "refused"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tokens", "create", "Grafana", "--scope", "read"], "token name 'Grafana' is not allowed; expected 1 to 40"),
        (["tokens", "create", "admin", "--scope", "read"], "taken by the built-in MEINGYM_ADMIN_TOKEN"),
        (["tokens", "create", "grafana", "--scope", "root"], "'root' is not one of 'read', 'operate', 'admin'"),
        (["tokens", "create", "grafana"], "Missing option '--scope'"),
        (["tokens", "revoke", "admin"], "the built-in admin token cannot be revoked here; change MEINGYM_ADMIN_TOKEN"),
        (["sessions", "revoke", "0123456789abcdef"], "no open session with id '0123456789abcdef'"),
    ],
)
def test_a_refused_token_or_session_request_is_one_line_and_exit_2(
    run_cli: Callable[..., Result], args: list[str], message: str
) -> None:
    result = run_cli(*args)

    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_an_unmigrated_database_says_to_migrate(make_env: Callable[..., dict[str, str]], tmp_path: Path) -> None:
    env = make_env(DATABASE_URL=f"sqlite:///{tmp_path / 'fresh' / 'meingym.db'}")

    result = CliRunner().invoke(cli, ["tokens", "list"], env=env)

    assert result.exit_code == 1
    assert result.output.startswith("Error: the database cannot be used: no such table: access_")
    assert result.output.rstrip().endswith("run `meingym-tasks db migrate`")


def test_a_token_made_on_the_cli_works_on_the_web_until_it_is_revoked(
    run_cli: Callable[..., Result], app_settings: Settings
) -> None:
    app = create_app(app_settings, WebSettings(admin_token=ADMIN_TOKEN))
    token = run_cli("tokens", "create", "deploy-bot", "--scope", "operate").stdout.strip()
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    browser = TestClient(app, follow_redirects=False)
    browser.post("/admin/login", data={"token": token})
    session_id = AccessSession.get().id

    sessions = run_cli("sessions", "list")
    before = api.post("/api/jobs", json={"action": "update-all-actions"}).status_code
    purge = api.post("/api/jobs/purge", json={}).status_code
    ended = run_cli("sessions", "revoke", session_id)
    browser_after = browser.get("/api/jobs").status_code
    run_cli("tokens", "revoke", "deploy-bot")
    after = api.get("/api/jobs").status_code

    assert f"{session_id}  deploy-bot" in sessions.output and "testclient" in sessions.output
    assert ended.output == f"session {session_id} of token 'deploy-bot' ended\n"
    assert (before, purge, browser_after, after) == (202, 403, 401, 401)


def test_the_clis_own_actions_are_audited_with_the_operator(run_cli: Callable[..., Result]) -> None:
    job = run_cli("trigger", "process-user-data", "--user-id", "31337").stdout.strip()
    run_due(users_queue)  # fails: no such user
    run_cli("retry", job)
    run_cli("cancel", job)
    run_cli("cancel", job)  # revoked already: refused
    late = run_cli("trigger", "send-welcome-email", "--user-id", "7", "--delay", "99999999")  # refused by the job
    run_cli("purge", "--state", "failed", "--yes")

    assert trail() == [
        ("trigger", OPERATOR, "cli", job, "ok"),
        ("retry", OPERATOR, "cli", job, "ok"),
        ("cancel", OPERATOR, "cli", job, "ok"),
        ("cancel", OPERATOR, "cli", job, "refused"),
        ("trigger", OPERATOR, "cli", "send-welcome-email", "refused"),
        ("purge", OPERATOR, "cli", "failed job records", "ok"),
    ]
    assert late.exit_code == 2 and users_queue.scheduled_count() == 0
    first = AuditEntry.select().order_by(AuditEntry.id).first()
    assert first.client is None and first.detail == {"arguments": {"user_id": 31337}, "deduplicated": False,
                                                      "job": "process-user-data"}  # fmt: skip


def test_audit_lists_filters_and_pages(run_cli: Callable[..., Result]) -> None:
    for name in ("one", "two", "three"):
        run_cli("tokens", "create", name, "--scope", "read")

    table = run_cli("audit")
    page = json.loads(run_cli("audit", "--limit", "2", "--json").output)
    rest = json.loads(run_cli("audit", "--limit", "2", "--before", str(page["next"]), "--json").output)
    only = run_cli("audit", "--target", "two")

    lines = table.output.splitlines()
    assert lines[0].split()[:4] == ["AT", "(UTC)", "ACTOR", "VIA"]
    assert [line.split()[6] for line in lines[1:]] == ["three", "two", "one"]
    assert [e["target"] for e in page["entries"] + rest["entries"]] == ["three", "two", "one"]
    assert rest["next"] is None and "more: add --before" in run_cli("audit", "--limit", "1").output
    assert len(only.output.splitlines()) == 2 and "token 'two' created with scope read" in only.output


# --------------------------------------------------------------------------- config check


def test_config_check_refuses_a_one_character_secret_key_and_warns_about_a_weak_one(
    make_env: Callable[..., dict[str, str]],
) -> None:
    short = CliRunner().invoke(cli, ["config", "check"], env=make_env(MEINGYM_SECRET_KEY="x"))
    weak = CliRunner().invoke(
        cli, ["config", "check", "--json"], env=make_env(MEINGYM_SECRET_KEY="aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    )
    strong = CliRunner().invoke(
        cli, ["config", "check", "--json"], env=make_env(MEINGYM_SECRET_KEY="Vq3x9-Lr0sT2mK8pZ1bN6cW4yH7dF5gJ0aE")
    )

    assert short.exit_code == 2
    assert short.output.startswith("Error: MEINGYM_SECRET_KEY (1 characters) is not allowed; expected at least 8")
    weak_warnings = json.loads(weak.stdout)["warnings"]
    assert any(w.startswith("MEINGYM_SECRET_KEY has 36 characters (1 different)") for w in weak_warnings)
    assert not any("MEINGYM_SECRET_KEY" in w for w in json.loads(strong.stdout)["warnings"])


def test_config_check_warns_about_data_others_can_read(make_env: Callable[..., dict[str, str]], tmp_path: Path) -> None:
    data = tmp_path / "shared"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "meingym.db").write_bytes(b"")
    (data / "meingym.db").chmod(0o644)
    env = make_env(MEINGYM_DATA_DIR=str(data))

    loose = json.loads(CliRunner().invoke(cli, ["config", "check", "--json"], env=env).stdout)["warnings"]
    data.chmod(0o700)
    (data / "meingym.db").chmod(0o600)
    tight = json.loads(CliRunner().invoke(cli, ["config", "check", "--json"], env=env).stdout)["warnings"]

    assert [w for w in loose if w.startswith("readable by other users")] == [
        f"readable by other users of this machine: {data} (0755), {data / 'meingym.db'} (0644); they hold "
        f"users' emails and names, job results and secrets: chmod 700 {data} and chmod 600 the files"
    ]
    assert not [w for w in tight if w.startswith("readable by other users")]
    assert os.stat(data).st_mode & 0o777 == 0o700


def test_config_check_warns_when_the_smtp_password_would_travel_in_clear(
    make_env: Callable[..., dict[str, str]],
) -> None:
    smtp = {"SMTP_HOST": "mail.example", "SMTP_USER": "meingym", "SMTP_PASSWORD": "pw"}

    clear = json.loads(CliRunner().invoke(cli, ["config", "check", "--json"], env=make_env(**smtp)).stdout)
    tls = json.loads(
        CliRunner().invoke(cli, ["config", "check", "--json"], env=make_env(**smtp, SMTP_STARTTLS="true")).stdout
    )

    [warning] = [w for w in clear["warnings"] if w.startswith("SMTP_USER")]
    assert warning.startswith("SMTP_USER is set without SMTP_STARTTLS: the password goes to mail.example unencrypted")
    assert not any("SMTP_USER" in w for w in tls["warnings"])
