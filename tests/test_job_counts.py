"""The counts per queue and state come from ``job_count``, which triggers keep equal to the records."""

from __future__ import annotations

import peewee
import pytest
from freezegun import freeze_time
from huey import signals as S

from meingym_tasks.domain.models import User
from meingym_tasks.jobs import cancel_job, counts, purge, retry_job, schedule_user_processing
from meingym_tasks.jobs.tasks import process_user_data
from meingym_tasks.queue.queues import users_queue
from meingym_tasks.registry import queries, recorder_for
from meingym_tasks.registry.models import JobCount, JobRecord
from meingym_tasks.registry.recorder import flush_all
from meingym_tasks.settings import Settings
from tests.helpers import run_due

NOW = "2026-11-29 10:00:00"


@pytest.fixture
def ada(app_settings: Settings, db: peewee.Database) -> User:
    return User.create(email="ada@example.org", name="Ada")


def counted_from_records() -> dict[str, dict[str, int]]:
    """The slow, obviously right answer: a GROUP BY over every record."""
    result = {queue: dict.fromkeys(states, 0) for queue, states in counts().items()}
    query = JobRecord.select(JobRecord.queue, JobRecord.state, peewee.fn.COUNT(1)).group_by(
        JobRecord.queue, JobRecord.state
    )
    for queue, state, number in query.tuples():
        result[queue][state] = number
    return result


def test_counts_follow_enqueue_run_fail_retry_cancel_and_purge(ada: User) -> None:
    with freeze_time(NOW) as clock:
        for _ in range(3):
            schedule_user_processing(ada.id)
        failing = schedule_user_processing(999_999)["job_id"]  # unknown user: fails for good
        later = schedule_user_processing(ada.id, delay=600)["job_id"]
        flush_all()
        before_running = counts()
        run_due(users_queue)
        flush_all()
        after_running = counts()
        retry_job(failing)
        cancel_job(later)
        clock.tick(60)
        flush_all()
        after_retry = counts()
        purge()
        after_purge = counts()

    assert before_running["users-processing"]["queued"] == 4
    assert before_running["users-processing"]["scheduled"] == 1
    assert after_running["users-processing"]["complete"] == 3
    assert after_running["users-processing"]["failed"] == 1
    assert after_retry["users-processing"]["queued"] == 1
    assert after_retry["users-processing"]["revoked"] == 1
    assert after_purge["users-processing"]["complete"] == 0
    assert after_purge == counted_from_records()


def test_a_consumers_batched_writes_keep_the_counts(ada: User) -> None:
    recorder = recorder_for(users_queue)
    tasks = [process_user_data.s(ada.id) for _ in range(40)]
    for task in tasks:
        users_queue.enqueue(task)
    flush_all()
    recorder.buffered = True  # write as a consumer does: one batch at the next flush
    try:
        for number, task in enumerate(tasks):
            recorder.on_signal(S.SIGNAL_EXECUTING, task)
            if number % 4:  # the others are still running when the batch is written
                recorder.on_executed(task, {"n": number}, None)
        recorder.flush()
    finally:
        recorder.buffered = False

    assert counts()["users-processing"] == {
        **dict.fromkeys(counts()["users-processing"], 0),
        "running": 10,
        "complete": 30,
    }
    assert counts() == counted_from_records()


def test_postgres_delta_rows_are_folded_without_changing_the_counts(
    ada: User, db: peewee.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(12):  # one statement each: one delta row each on PostgreSQL
        schedule_user_processing(ada.id)
        flush_all()
    expected = counted_from_records()
    monkeypatch.setattr(queries, "COMPACT_AFTER", 5)

    assert counts() == expected  # folds the deltas up as it reads
    assert counts() == expected
    assert JobCount.select().count() == 1  # one key: users-processing, queued
