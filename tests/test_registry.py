"""The job registry follows every job through its states, on both brokers and both databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import peewee
import pytest
from freezegun import freeze_time

from meingym_tasks.domain.models import User
from meingym_tasks.exceptions import BrokerUnavailable, InvalidJobRequest, JobStateConflict, UnknownJob
from meingym_tasks.jobs import (
    cancel_job,
    counts,
    get_job,
    job_result,
    list_jobs,
    purge,
    retry_job,
    schedule_actions_update,
    schedule_user_processing,
    schedule_welcome_email,
)
from meingym_tasks.jobs.tasks import process_user_data
from meingym_tasks.queue import queues
from meingym_tasks.queue.queues import users_queue
from meingym_tasks.registry import queries, recorder_for
from meingym_tasks.registry.recorder import flush_all
from meingym_tasks.settings import Settings
from tests.helpers import Inbox, free_port, run_due

NOW = "2026-11-29 10:00:00"


@pytest.fixture
def ada(app_settings: Settings, db: peewee.Database) -> User:
    return User.create(email="ada@example.org", name="Ada")


def with_smtp(app_env: dict[str, str], port: int) -> None:
    queues.configure(Settings.from_env({**app_env, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port)}))


@pytest.fixture
def smtp_down(app_env: dict[str, str], ada: User) -> Iterator[None]:
    with_smtp(app_env, free_port())
    yield
    queues.reset()


def test_a_successful_job_goes_queued_running_complete(ada: User) -> None:
    with freeze_time(NOW):
        job_id = schedule_user_processing(ada.id)["job_id"]
        queued = get_job(job_id)
        run_due(users_queue)
        done = get_job(job_id)

    assert queued["state"] == "queued"
    assert queued["arguments"] == {"args": [ada.id], "kwargs": {}}
    assert (queued["attempts"], queued["max_attempts"]) == (0, 3)
    assert done["state"] == "complete"
    assert done["attempts"] == 1
    assert done["result"] == {"user_id": ada.id, "actions_count": 0, "total_score": "0.00"}
    assert done["started_at"] == done["finished_at"] == "2026-11-29T10:00:00+00:00"
    assert done["consumer"] and done["failed_attempts"] == []


def test_a_retried_job_records_each_failure_then_completes(
    app_env: dict[str, str], smtp_down: None, ada: User, smtp_server: tuple[Inbox, int]
) -> None:
    with freeze_time(NOW) as clock:
        job_id = schedule_welcome_email(ada.id)["job_id"]
        run_due(users_queue)
        retrying = get_job(job_id)

        with_smtp(app_env, smtp_server[1])  # the mail server is back
        clock.tick(5)
        run_due(users_queue)
        done = get_job(job_id)

    assert retrying["state"] == "retrying"
    assert retrying["next_attempt_at"] == "2026-11-29T10:00:05+00:00"
    assert retrying["error"].startswith("ConnectionRefusedError")
    assert done["state"] == "complete" and done["attempts"] == 2
    assert [a["attempt"] for a in done["failed_attempts"]] == [1]
    assert "ConnectionRefusedError" in done["failed_attempts"][0]["traceback"]
    assert len(smtp_server[0].messages) == 1


def test_a_job_that_exhausts_its_attempts_is_failed_with_every_traceback(smtp_down: None, ada: User) -> None:
    with freeze_time(NOW) as clock:
        job_id = schedule_welcome_email(ada.id)["job_id"]
        for _ in range(3):
            run_due(users_queue)
            clock.tick(60)
        job = get_job(job_id)

    assert job["state"] == "failed"
    assert (job["attempts"], job["max_attempts"]) == (3, 3)
    assert [a["attempt"] for a in job["failed_attempts"]] == [1, 2, 3]
    assert all("Traceback" in a["traceback"] for a in job["failed_attempts"])


def test_a_permanent_error_fails_after_one_attempt(ada: User) -> None:
    job_id = schedule_user_processing(424242)["job_id"]
    run_due(users_queue)

    job = get_job(job_id)

    assert job["state"] == "failed" and job["attempts"] == 1
    assert job["error"] == "UnknownUser: user 424242 does not exist"


def test_a_delayed_job_is_scheduled_until_its_time(ada: User) -> None:
    with freeze_time(NOW) as clock:
        job_id = schedule_user_processing(ada.id, delay=60)["job_id"]
        scheduled = get_job(job_id)
        run_due(users_queue)
        still = get_job(job_id)
        clock.tick(60)
        run_due(users_queue)
        done = get_job(job_id)

    assert scheduled["state"] == still["state"] == "scheduled"
    assert scheduled["scheduled_for"] == "2026-11-29T10:01:00+00:00"
    assert done["state"] == "complete"


def test_a_job_cancelled_before_it_runs_never_runs(ada: User) -> None:
    with freeze_time(NOW) as clock:
        job_id = schedule_user_processing(ada.id, delay=60)["job_id"]
        cancelled = cancel_job(job_id)
        clock.tick(120)
        run_due(users_queue)
        job = get_job(job_id)

    assert cancelled["state"] == "revoked"
    assert job["state"] == "revoked" and job["attempts"] == 0
    assert job_result(job_id)["status"] == "failed"  # ended without result


def test_a_revoked_job_can_be_retried_and_then_runs(ada: User) -> None:
    job_id = schedule_user_processing(ada.id)["job_id"]
    cancel_job(job_id)
    run_due(users_queue)

    retried = retry_job(job_id)
    run_due(users_queue)

    assert retried["state"] == "queued"
    assert get_job(job_id)["state"] == "complete"


def test_a_failed_job_retried_runs_again_under_the_same_record(smtp_down: None, ada: User) -> None:
    with freeze_time(NOW) as clock:
        job_id = schedule_welcome_email(ada.id)["job_id"]
        for _ in range(3):
            run_due(users_queue)
            clock.tick(60)

        retried = retry_job(job_id)
        run_due(users_queue)
        job = get_job(job_id)

    assert retried["state"] == "queued" and retried["max_attempts"] == 6
    assert job["state"] == "retrying" and job["attempts"] == 4
    assert [a["attempt"] for a in job["failed_attempts"]] == [1, 2, 3, 4]


def test_an_expired_job_is_not_run(ada: User) -> None:
    with freeze_time(NOW) as clock:
        task = process_user_data.s(ada.id, expires=10)
        users_queue.enqueue(task)
        clock.tick(11)
        run_due(users_queue)

    assert get_job(task.id)["state"] == "expired"


def test_only_finished_jobs_can_be_retried_and_only_waiting_ones_cancelled(ada: User) -> None:
    job_id = schedule_user_processing(ada.id)["job_id"]

    with pytest.raises(JobStateConflict, match="only failed, revoked, expired, interrupted jobs can be retried"):
        retry_job(job_id)
    run_due(users_queue)
    with pytest.raises(JobStateConflict, match="is complete; only scheduled, queued, retrying, running"):
        cancel_job(job_id)


def test_unknown_ids_are_an_error_naming_the_id(app_settings: Settings) -> None:
    with pytest.raises(UnknownJob, match="no job with id '00000000-0000-4000-8000-000000000000'"):
        get_job("00000000-0000-4000-8000-000000000000")
    with pytest.raises(UnknownJob):
        job_result("00000000-0000-4000-8000-000000000000")


def test_listing_is_newest_first_with_keyset_pages_and_filters(ada: User) -> None:
    ids = []
    with freeze_time(NOW) as clock:
        for _ in range(5):
            ids.append(schedule_user_processing(ada.id)["job_id"])
            clock.tick(1)
        failed = schedule_user_processing(999_999)["job_id"]
        run_due(users_queue)

    first = list_jobs(limit=4)
    second = list_jobs(limit=4, before=first["next"])

    assert [j["job_id"] for j in first["jobs"] + second["jobs"]] == [failed, *reversed(ids)]
    assert second["next"] is None
    assert [j["job_id"] for j in list_jobs(state="failed")["jobs"]] == [failed]
    assert list_jobs(queue="actions-processing")["jobs"] == []
    assert counts()["users-processing"]["complete"] == 5


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"state": "done"}, "unknown state 'done'; allowed: scheduled, queued, running"),
        ({"queue": "emails"}, "unknown queue 'emails'; allowed: actions-processing, users-processing"),
        ({"limit": 0}, "limit 0 is not allowed; expected a whole number from 1 to 500"),
        ({"before": "not-a-cursor"}, "cursor 'not-a-cursor' is not valid"),
    ],
)
def test_bad_list_filters_name_what_is_allowed(app_settings: Settings, arguments: dict, message: str) -> None:
    with pytest.raises(InvalidJobRequest, match=message):
        list_jobs(**arguments)


def test_retention_removes_old_completed_records_and_keeps_failures_longer(ada: User) -> None:
    with freeze_time(NOW) as clock:
        done = schedule_user_processing(ada.id)["job_id"]
        failed = schedule_user_processing(999_999)["job_id"]
        run_due(users_queue)

        clock.tick(timedelta(hours=23))
        assert queries.prune(app_settings_of()) == 0
        clock.tick(timedelta(hours=2))
        assert queries.prune(app_settings_of()) == 1
        remaining = {j["job_id"] for j in list_jobs()["jobs"]}
        clock.tick(timedelta(days=7))
        queries.prune(app_settings_of())

    assert remaining == {failed} and done not in remaining
    assert list_jobs()["jobs"] == []


def test_retention_keeps_at_most_the_configured_number_of_completed_records(
    app_env: dict[str, str], db: peewee.Database
) -> None:
    settings = Settings.from_env({**app_env, "MEINGYM_KEEP_COMPLETE_COUNT": "2"})
    queues.configure(settings)
    try:
        user = User.create(email="ben@example.org", name="Ben")
        with freeze_time(NOW) as clock:
            ids = []
            for _ in range(4):
                ids.append(schedule_user_processing(user.id)["job_id"])
                run_due(users_queue)
                clock.tick(1)
            flush_all()
            queries.prune(settings)
        kept = [j["job_id"] for j in list_jobs()["jobs"]]
    finally:
        queues.reset()

    assert kept == ids[:1:-1]


def test_purge_deletes_finished_records_by_state_and_age(ada: User) -> None:
    with freeze_time(NOW) as clock:
        schedule_user_processing(ada.id)
        schedule_user_processing(999_999)
        run_due(users_queue)
        clock.tick(timedelta(hours=2))

        assert purge(state="complete", older_than=timedelta(hours=3)) == 0
        assert purge(state="complete", older_than=timedelta(hours=1)) == 1
    assert [j["state"] for j in list_jobs()["jobs"]] == ["failed"]
    with pytest.raises(InvalidJobRequest, match="unknown state 'running'"):
        purge(state="running")


def app_settings_of() -> Settings:
    flush_all()  # calls the registry directly: write what this process buffered first
    return users_queue.settings


def test_an_enqueue_the_broker_refuses_leaves_no_record(app_env: dict[str, str], db: peewee.Database) -> None:
    queues.configure(Settings.from_env({**app_env, "MEINGYM_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}))
    try:
        with pytest.raises(BrokerUnavailable, match="the queue broker is unavailable"):
            schedule_user_processing(1)
        with pytest.raises(BrokerUnavailable):
            schedule_actions_update()
        assert list_jobs()["jobs"] == []
    finally:
        queues.reset()


def test_a_run_that_finishes_before_its_running_record_still_shows_its_attempt(app_settings: Settings) -> None:
    """The run's own "running" may sit in another consumer's buffer while a second consumer finishes it."""
    recorder = recorder_for(queues.actions_queue)
    run_id = schedule_actions_update()["job_id"]
    recorder.stop_buffering()  # the enqueue is written; from here on, act as a consumer
    recorder.start_buffering(consumer=True)
    try:
        queues.actions_queue.execute(queues.actions_queue.dequeue())  # the run fans out (no actions: no batch)
        with recorder._lock:  # its "running" now belongs to "consumer A", which writes late
            consumer_a, recorder._buffer = recorder._buffer, []
        run_due(queues.actions_queue)  # "consumer B" runs the finishing step
        with recorder._lock:
            recorder._buffer.extend(consumer_a)
    finally:
        recorder.stop_buffering()

    run = get_job(run_id)

    assert run["state"] == "complete" and run["attempts"] == 1 and run["started_at"] is not None
