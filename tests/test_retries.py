"""Default job options: 3 attempts in total, 5 s then 15 s apart; permanent errors are not retried."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import peewee
import pytest
from freezegun import freeze_time

from meingym_tasks.db.database import database
from meingym_tasks.domain.models import User
from meingym_tasks.jobs import job_result, schedule_user_processing, schedule_welcome_email
from meingym_tasks.queue import queues
from meingym_tasks.queue.queues import users_queue
from meingym_tasks.settings import Settings
from tests.helpers import free_port, run_due


def test_a_transient_error_is_retried_after_5_then_15_seconds_and_fails_after_3_attempts(
    app_env: dict[str, str], db: peewee.Database
) -> None:
    queues.configure(Settings.from_env({**app_env, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(free_port())}))
    user = User.create(email="lea@example.org", name="Lea")
    try:
        with freeze_time("2026-11-29 10:00:00") as clock:
            job_id = schedule_welcome_email(user.id)["job_id"]

            assert run_due(users_queue) == 1  # attempt 1: the SMTP server refuses the connection
            assert job_result(job_id)["status"] == "pending"  # a retry is pending, not a failure yet
            clock.tick(4.9)
            assert run_due(users_queue) == 0
            clock.tick(0.1)
            assert run_due(users_queue) == 1  # attempt 2, 5 s later
            clock.tick(14.9)
            assert run_due(users_queue) == 0
            clock.tick(0.1)
            assert run_due(users_queue) == 1  # attempt 3, 15 s after attempt 2
            clock.tick(3600)
            assert run_due(users_queue) == 0  # no fourth attempt

            outcome = job_result(job_id)
    finally:
        queues.reset()

    assert outcome["status"] == "failed"
    assert outcome["error"].startswith("ConnectionRefusedError")
    assert outcome["retryable"] is True
    assert "Traceback" in outcome["traceback"]


def test_an_unknown_user_fails_at_once_without_retry(app_settings: Settings, db: peewee.Database) -> None:
    with freeze_time("2026-11-29 10:00:00") as clock:
        job_id = schedule_user_processing(999)["job_id"]

        assert run_due(users_queue) == 1
        clock.tick(3600)
        assert run_due(users_queue) == 0

        outcome = job_result(job_id)

    assert outcome["status"] == "failed"
    assert outcome["error"] == "UnknownUser: user 999 does not exist"
    assert outcome["retryable"] is False
    assert users_queue.scheduled_count() == 0


@pytest.fixture
def job_with_bad_sql() -> Iterator[Any]:
    """A job (registered for this test only) whose SQL PostgreSQL refuses for its data."""

    @users_queue.job("test-bad-data")
    def bad_data(text: str) -> int:
        with database.connection_context():
            return int(database.execute_sql("SELECT CAST(%s AS integer)", (text,)).fetchone()[0])

    yield bad_data
    bad_data.unregister()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_database_data_error_fails_at_once_without_retry(
    app_settings: Settings, db: peewee.Database, job_with_bad_sql: Any
) -> None:
    with freeze_time("2026-11-29 10:00:00") as clock:
        job_id = job_with_bad_sql("not a number").id

        assert run_due(users_queue) == 1
        clock.tick(3600)
        assert run_due(users_queue) == 0

        outcome = job_result(job_id)

    assert outcome["status"] == "failed"
    assert outcome["error"].startswith("DataError: invalid input syntax for type integer")
    assert outcome["retryable"] is False
    assert users_queue.scheduled_count() == 0


def test_a_message_whose_arguments_do_not_fit_the_declaration_fails_at_once(app_settings: Settings) -> None:
    """As a message written by an older release could: it reaches the consumer past every enqueue check."""
    from meingym_tasks.jobs import process_user_data

    with freeze_time("2026-11-29 10:00:00") as clock:
        task = process_user_data.task_class(("abc",), {})
        users_queue.enqueue(task)

        assert run_due(users_queue) == 1
        clock.tick(3600)
        assert run_due(users_queue) == 0

        outcome = job_result(task.id)

    assert outcome["status"] == "failed" and outcome["retryable"] is False
    assert "the arguments do not fit process-user-data" in outcome["error"]
