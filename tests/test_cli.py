"""The click CLI: triggers, results, database commands and its error messages."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import peewee
import pytest
from click.testing import CliRunner, Result

from meingym_tasks.cli.main import cli
from meingym_tasks.domain.seed import seed_demo_data
from meingym_tasks.queue import queues
from tests.helpers import running_consumers


@pytest.fixture
def run_cli(app_env: dict[str, str]) -> Iterator[Callable[..., Result]]:
    runner = CliRunner()

    def invoke(*args: str, **env: str) -> Result:
        return runner.invoke(cli, list(args), env={**app_env, **env}, catch_exceptions=False)

    yield invoke
    queues.reset()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["trigger", "update-everything"],
            "unknown job 'update-everything'; allowed: update-all-actions, process-user-data, send-welcome-email",
        ),
        (["trigger", "process-user-data"], "Missing option '--user-id'. Allowed: a whole number from 1 to"),
        (["trigger", "process-user-data", "--user-id", "seven"], "'seven' is not a valid integer"),
        (["trigger", "process-user-data", "--user-id", "²"], "'²' is not a valid integer"),
        (["trigger", "send-welcome-email", "--user-id", "0"], "0 is not in the range 1<=x<="),
        (["trigger", "update-all-actions", "--user-id", "3"], "update-all-actions has no option --user-id"),
        (["trigger", "update-all-actions", "--delay", "-5"], "-5.0 is not in the range x>=0"),
        (["trigger", "update-all-actions", "--eta", "tomorrow"], "'tomorrow' is not an ISO-8601 time"),
        (["trigger", "update-all-actions", "--eta", "2001-01-01T03:00"], "'--eta': 2001-01-01T03:00:00+01:00 is more"),
        (["trigger", "update-all-actions", "--delay", "1", "--eta", "2030-01-01"], "give delay or eta, not both"),
        (["result", "not-a-job-id"], "is not a job id; expected a UUID"),
        (["worker", "emails"], "'emails' is not one of 'actions', 'users', 'all'"),
    ],
)
def test_bad_input_names_the_problem_and_exits_2(
    run_cli: Callable[..., Result], args: list[str], expected: str
) -> None:
    result = run_cli(*args)

    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output


def test_trigger_help_lists_every_public_job_with_its_description_and_parameters(
    run_cli: Callable[..., Result],
) -> None:
    listed = run_cli("trigger", "--help")
    one = run_cli("trigger", "send-welcome-email", "--help")

    text = " ".join(listed.output.split())  # as read, whatever the terminal's width
    assert listed.exit_code == one.exit_code == 0
    assert "update-all-actions Recompute every action's score" in text
    assert "process-user-data Recompute one user's aggregates from their actions." in text
    assert "send-welcome-email Send the welcome email to one user, once per job." in text
    assert text.count(f"Options: --user-id (a whole number from 1 to {2**63 - 1}).") == 2
    assert "--user-id INTEGER RANGE The user's id. Allowed: a whole number from 1 to" in " ".join(one.output.split())
    assert "Runs on users-processing." in one.output


def test_a_bad_setting_is_one_line_and_exit_2(run_cli: Callable[..., Result]) -> None:
    result = run_cli("trigger", "update-all-actions", MEINGYM_TIMEZONE="Berlin/Mitte")

    assert result.exit_code == 2
    assert result.output.strip() == (
        "Error: MEINGYM_TIMEZONE='Berlin/Mitte' is not allowed; expected an IANA time zone name "
        "such as Europe/Berlin or UTC"
    )


def test_trigger_prints_the_job_id_and_result_shows_it_pending(run_cli: Callable[..., Result]) -> None:
    triggered = run_cli("trigger", "process-user-data", "--user-id", "7")
    job_id = triggered.output.strip()

    shown = run_cli("result", job_id, "--json")

    assert triggered.exit_code == 0
    assert shown.exit_code == 0
    assert f'"job_id": "{job_id}"' in shown.output and '"status": "pending"' in shown.output


def test_a_second_trigger_of_the_update_names_the_run_in_progress(run_cli: Callable[..., Result]) -> None:
    first = run_cli("trigger", "update-all-actions", "--json")
    second = run_cli("trigger", "update-all-actions", "--json")

    assert json.loads(first.output)["deduplicated"] is False
    assert json.loads(second.output)["deduplicated"] is True
    assert json.loads(first.output)["job_id"] == json.loads(second.output)["job_id"]


def test_waiting_on_a_queue_no_consumer_serves_says_so_at_once_and_still_waits(
    run_cli: Callable[..., Result], db: peewee.Database
) -> None:
    from meingym_tasks.clock import utcnow
    from meingym_tasks.registry.models import ConsumerRecord

    alone = run_cli("trigger", "process-user-data", "--user-id", "7", "--wait", "--timeout", "0.2")
    ConsumerRecord.create(
        consumer_id="cli-test:1:users-processing", queue="users-processing", host="cli-test", pid=1, workers=1,
        worker_type="thread", started_at=utcnow(), last_seen_at=utcnow(),
    )  # fmt: skip
    served = run_cli("trigger", "process-user-data", "--user-id", "8", "--wait", "--timeout", "0.2")

    warning = "Warning: no consumer of users-processing is alive; the job waits until one starts"
    assert alone.stderr.splitlines()[0].startswith(warning)
    assert "meingym-tasks worker users" in alone.stderr
    assert alone.exit_code == 1 and "status: pending" in alone.stdout  # it waited (until --timeout)
    assert warning not in served.stderr and served.exit_code == 1


def test_db_migrate_is_a_no_op_on_a_current_schema(run_cli: Callable[..., Result], db: peewee.Database) -> None:
    result = run_cli("db", "migrate")

    assert result.exit_code == 0
    assert result.output.strip() == "schema is current"


def test_db_seed_reports_what_it_created(run_cli: Callable[..., Result], db: peewee.Database) -> None:
    result = run_cli("db", "seed", "--users", "4", "--actions", "40", "--seed", "3")

    assert result.exit_code == 0, result.output
    assert "users: 4" in result.output and "actions: 40" in result.output


@pytest.mark.slow
def test_trigger_wait_as_a_real_process_against_running_consumers(
    app_env: dict[str, str], db: peewee.Database, tmp_path: Path
) -> None:
    seed_demo_data(users=2, actions=50, seed=1)
    env = {**app_env, "PATH": str(Path(sys.executable).parent)}

    with running_consumers(env, tmp_path / "logs"):
        done = subprocess.run(
            [sys.executable, "-m", "meingym_tasks", "trigger", "update-all-actions", "--wait", "--timeout", "120"],
            env={**env, "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=180,
        )

    assert done.returncode == 0, done.stderr
    assert "status: complete" in done.stdout
    assert "'actions_scored': 50" in done.stdout
