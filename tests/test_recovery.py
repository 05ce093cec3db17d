"""The reaper: jobs of a dead consumer go back on the queue; a job that keeps killing consumers is failed."""

from __future__ import annotations

from collections.abc import Iterator

import peewee
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from meingym_tasks.cli.main import cli
from meingym_tasks.domain.models import User
from meingym_tasks.jobs import dead_letters, get_job, schedule_user_processing
from meingym_tasks.queue import queues
from meingym_tasks.queue.queues import users_queue
from meingym_tasks.queue.reliable import Lease
from meingym_tasks.settings import Settings
from meingym_tasks.web import WebSettings, create_app
from tests.helpers import run_due


@pytest.fixture
def reaper(app_env: dict[str, str], db: peewee.Database) -> Iterator[Lease]:
    queues.configure(Settings.from_env({**app_env, "MEINGYM_MAX_RECOVERIES": "2"}))
    yield users_queue.lease
    users_queue.storage.lease_for(None)  # type: ignore[arg-type]
    queues.reset()


def die_holding_the_next_job(name: str) -> None:
    """A consumer called ``name`` takes the next job and dies without a word."""
    storage = users_queue.storage
    storage.lease_for(name)
    storage.beat(30)
    assert storage.dequeue() is not None
    storage.end_heartbeat()


def reap(reaper: Lease) -> None:
    """A live consumer ("reaper") starts: it beats once and recovers what dead consumers held."""
    reaper.start("reaper")


def test_the_jobs_of_a_dead_consumer_go_back_on_the_queue_and_complete(reaper: Lease) -> None:
    user = User.create(email="greta@example.org", name="Greta")
    job_id = schedule_user_processing(user.id)["job_id"]

    die_holding_the_next_job("dead-consumer")
    assert users_queue.pending_count() == 0
    reap(reaper)

    assert users_queue.pending_count() == 1
    assert get_job(job_id)["state"] == "queued" and get_job(job_id)["recoveries"] == 1
    users_queue.storage.lease_for(None)  # type: ignore[arg-type]
    run_due(users_queue)
    assert get_job(job_id)["state"] == "complete"


def test_a_recovered_job_says_so_in_the_api_the_cli_and_its_page(
    reaper: Lease, app_settings: Settings, app_env: dict[str, str]
) -> None:
    token = "recovery-test-token-0123456789"
    job_id = schedule_user_processing(7)["job_id"]
    die_holding_the_next_job("dead-consumer")
    reap(reaper)

    with TestClient(create_app(app_settings, WebSettings(admin_token=token)), follow_redirects=False) as client:
        api = client.get(f"/api/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}).json()
        assert client.post("/admin/login", data={"token": token}).status_code == 303
        page = client.get(f"/admin/jobs/{job_id}").text
    status = CliRunner().invoke(cli, ["status", job_id], env=app_env, catch_exceptions=False)

    assert api["recoveries"] == 1
    assert "<dt>Recovered</dt><dd>1 time(s) from a consumer that died or lost its lease</dd>" in page
    assert "recovered: 1 time(s) from a consumer that died or lost its lease" in status.output


def test_a_job_that_keeps_killing_its_consumer_is_failed_after_the_limit(reaper: Lease) -> None:
    job_id = schedule_user_processing(7)["job_id"]

    for attempt in range(3):
        die_holding_the_next_job(f"dead-{attempt}")
        reap(reaper)

    job = get_job(job_id)
    assert job["state"] == "failed" and job["recoveries"] == 3
    assert job["error"] == "the job's consumer died 3 times while running it (limit 2); not run again"
    assert users_queue.pending_count() == 0
    assert dead_letters(queue="users-processing")["counts"]["users-processing"] == 1


def test_a_consumer_whose_first_heartbeat_failed_beats_before_it_works_so_its_jobs_can_be_recovered(
    reaper: Lease,
) -> None:
    """A consumer that started while the broker was away holds a lease the broker never heard of."""
    job_id = schedule_user_processing(7)["job_id"]
    users_queue.storage.lease_for("late-beater")
    reaper.consumer_id = "late-beater"  # leased, but its first heartbeat never reached the broker

    assert users_queue.dequeue() is not None  # takes the job: beats first
    users_queue.storage.end_heartbeat()  # then dies without a word

    reap(reaper)

    assert get_job(job_id)["recoveries"] == 1 and get_job(job_id)["state"] == "queued"


def test_a_job_taken_over_counts_its_second_run_even_when_the_first_consumers_outcome_lands_first(
    reaper: Lease,
) -> None:
    """A partition: the cut-off consumer finishes too, and its late "complete" reaches the registry first."""
    from meingym_tasks.registry.recorder import finish_record

    user = User.create(email="ines@example.org", name="Ines")
    job_id = schedule_user_processing(user.id)["job_id"]
    die_holding_the_next_job("cut-off")
    reap(reaper)  # taken over: the first attempt is recorded interrupted, the job is queued again
    finish_record(job_id, "complete", result={"from": "the cut-off consumer, after the heal"})

    users_queue.storage.lease_for(None)  # type: ignore[arg-type]
    run_due(users_queue)  # the second run, whose outcome lands on a record that already says complete

    job = get_job(job_id)
    assert job["state"] == "complete" and job["recoveries"] == 1
    assert job["attempts"] == 2
