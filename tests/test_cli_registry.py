"""The registry commands of the CLI: status, jobs, retry, cancel, purge, queues."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import peewee
import pytest
from click.testing import CliRunner, Result

from meingym_tasks.cli.main import cli
from meingym_tasks.domain.models import User
from meingym_tasks.queue import queues
from meingym_tasks.queue.queues import users_queue
from tests.helpers import run_due

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def run_cli(app_env: dict[str, str], db: peewee.Database) -> Iterator[Callable[..., Result]]:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(cli, list(args), env=app_env, catch_exceptions=False)

    yield invoke
    queues.reset()


def trigger(run_cli: Callable[..., Result], *args: str) -> str:
    result = run_cli("trigger", *args)
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_status_shows_a_failed_job_with_its_traceback(run_cli: Callable[..., Result]) -> None:
    job_id = trigger(run_cli, "process-user-data", "--user-id", "31337")
    run_due(users_queue)

    shown = run_cli("status", job_id)
    as_json = json.loads(run_cli("status", job_id, "--json").output)

    assert shown.exit_code == 0
    assert "state:     failed" in shown.output
    assert "attempts:  1 of 3" in shown.output
    assert "error:     UnknownUser: user 31337 does not exist" in shown.output
    assert "Traceback (most recent call last)" in shown.output
    assert as_json["failed_attempts"][0]["error"] == "UnknownUser: user 31337 does not exist"


def test_jobs_lists_newest_first_and_filters(run_cli: Callable[..., Result]) -> None:
    user = User.create(email="jonas@example.org", name="Jonas")
    ok = trigger(run_cli, "process-user-data", "--user-id", str(user.id))
    bad = trigger(run_cli, "process-user-data", "--user-id", "999999")
    run_due(users_queue)

    table = run_cli("jobs").output.splitlines()
    failed = json.loads(run_cli("jobs", "--state", "failed", "--json").output)

    assert table[0].split() == ["JOB", "ID", "QUEUE", "NAME", "STATE", "TRIES", "ENQUEUED", "PROGRESS"]
    assert [line.split()[0] for line in table[1:]] == [bad, ok]
    assert [j["job_id"] for j in failed["jobs"]] == [bad]


def test_retry_and_cancel_change_the_record(run_cli: Callable[..., Result]) -> None:
    user = User.create(email="mia@example.org", name="Mia")
    job_id = trigger(run_cli, "process-user-data", "--user-id", str(user.id), "--delay", "600")

    cancelled = run_cli("cancel", job_id)
    retried = run_cli("retry", job_id)

    assert cancelled.output.strip() == f"{job_id}: revoked"
    assert retried.output.strip() == f"{job_id}: queued (attempt 1 next)"
    run_due(users_queue)
    assert json.loads(run_cli("status", job_id, "--json").output)["state"] == "complete"


def test_purge_deletes_finished_records(run_cli: Callable[..., Result]) -> None:
    trigger(run_cli, "process-user-data", "--user-id", "999999")
    run_due(users_queue)

    result = run_cli("purge", "--state", "failed", "--yes")

    assert result.output.strip() == "deleted 1 failed job records"
    assert json.loads(run_cli("jobs", "--json").output)["jobs"] == []


def test_queues_shows_pending_work_per_queue(run_cli: Callable[..., Result]) -> None:
    trigger(run_cli, "process-user-data", "--user-id", "5")

    overview = json.loads(run_cli("queues", "--json").output)
    text = run_cli("queues").output

    assert overview["users-processing"]["pending"] == 1
    assert overview["actions-processing"]["pending"] == 0
    assert "users-processing: 1 pending, 0 scheduled, 0 running" in text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["status", UNKNOWN_ID], f"no job with id '{UNKNOWN_ID}'"),
        (["status", "nope"], "is not a job id; expected a UUID"),
        (["retry", UNKNOWN_ID], f"no job with id '{UNKNOWN_ID}'"),
        (["cancel", UNKNOWN_ID], f"no job with id '{UNKNOWN_ID}'"),
        (["result", UNKNOWN_ID], f"no job with id '{UNKNOWN_ID}'"),
        (["jobs", "--state", "done"], "'done' is not one of 'scheduled', 'queued', 'running'"),
        (["jobs", "--queue", "emails"], "'emails' is not one of 'actions', 'users'"),
        (["jobs", "--before", "garbage"], "cursor 'garbage' is not valid"),
        (["purge", "--state", "running", "--yes"], "'running' is not one of 'complete', 'failed'"),
        (["purge", "--older-than", "yesterday", "--yes"], "'yesterday' is not a duration"),
    ],
)
def test_unknown_ids_states_and_values_exit_2_listing_what_is_allowed(
    run_cli: Callable[..., Result], args: list[str], expected: str
) -> None:
    result = run_cli(*args)

    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output


def test_a_job_that_cannot_be_retried_says_why(run_cli: Callable[..., Result]) -> None:
    job_id = trigger(run_cli, "process-user-data", "--user-id", "5")

    result = run_cli("retry", job_id)

    assert result.exit_code == 2
    assert f"job {job_id} is queued; only failed, revoked, expired, interrupted jobs can be retried" in result.output


def test_every_command_has_help_with_an_example() -> None:
    runner = CliRunner()
    for name in ("trigger", "result", "status", "jobs", "retry", "cancel", "purge", "queues", "worker"):
        shown = runner.invoke(cli, [name, "--help"])
        assert shown.exit_code == 0
        assert "meingym-tasks " + name in shown.output, name
