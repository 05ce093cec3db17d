"""send-welcome-email delivers to a real SMTP server (aiosmtpd), once per job."""

from __future__ import annotations

from collections.abc import Iterator

import peewee
import pytest

from meingym_tasks.domain.models import SentEmail, User
from meingym_tasks.jobs import job_result, schedule_welcome_email
from meingym_tasks.jobs.tasks import send_welcome_email
from meingym_tasks.queue import queues
from meingym_tasks.queue.queues import users_queue
from meingym_tasks.settings import Settings
from tests.helpers import Inbox, free_port, run_due


@pytest.fixture
def smtp_settings(app_env: dict[str, str], smtp_server: tuple[Inbox, int]) -> Iterator[Settings]:
    settings = Settings.from_env({**app_env, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_server[1])})
    queues.configure(settings)
    yield settings
    queues.reset()


def test_the_welcome_email_reaches_the_smtp_server(
    smtp_settings: Settings, smtp_server: tuple[Inbox, int], db: peewee.Database
) -> None:
    inbox, port = smtp_server
    user = User.create(email="greta@example.org", name="Greta Koch")

    job_id = schedule_welcome_email(user.id)["job_id"]
    run_due(users_queue)

    outcome = job_result(job_id)
    assert outcome["status"] == "complete"
    assert outcome["result"]["delivered_to"] == f"smtp://127.0.0.1:{port}"
    [message] = inbox.messages
    assert message["To"] == "Greta Koch <greta@example.org>"
    assert message["Subject"] == "Willkommen bei MeinGym!"
    assert "Hallo Greta Koch" in message.get_payload()


def test_rerunning_a_job_that_already_sent_sends_nothing(
    smtp_settings: Settings, smtp_server: tuple[Inbox, int], db: peewee.Database
) -> None:
    inbox, _ = smtp_server
    user = User.create(email="felix@example.org", name="Felix")
    task = send_welcome_email.s(user.id)

    users_queue.execute(task)
    users_queue.execute(task)  # the same job again, as after a crash between send and ack

    assert len(inbox.messages) == 1
    assert SentEmail.select().where(SentEmail.job_id == task.id).count() == 1
    assert job_result(task.id)["result"]["already_sent"] is True


def test_an_unreachable_smtp_server_is_retried_and_records_nothing(
    app_env: dict[str, str], db: peewee.Database
) -> None:
    queues.configure(Settings.from_env({**app_env, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(free_port())}))
    try:
        user = User.create(email="mia@example.org", name="Mia")
        job_id = schedule_welcome_email(user.id)["job_id"]
        run_due(users_queue)

        assert job_result(job_id)["status"] == "pending"  # waiting for its retry
        assert users_queue.scheduled_count() == 1
        assert SentEmail.select().count() == 0  # the marker was rolled back with the failed send
    finally:
        queues.reset()
