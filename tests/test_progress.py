"""A job reports progress with ``progress(done, total, message)``; that is also where it learns it was cancelled."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from freezegun import freeze_time
from huey.api import Task

from meingym_tasks.jobs import cancel_job, get_job, job
from meingym_tasks.jobs.progress import progress
from meingym_tasks.queue.queues import users_queue
from meingym_tasks.settings import Settings
from tests.helpers import run_due


@pytest.fixture
def steps() -> Iterator[Any]:
    """A job (this module's only) that takes ``n`` steps, reporting each; it cancels itself at step ``cancel_at``."""

    @job(users_queue, "test-steps")
    def take_steps(n: int, cancel_at: int, task: Task) -> int:
        for done in range(1, n + 1):
            if done == cancel_at:
                cancel_job(task.id)  # as an operator would, from anywhere, while it runs
            progress(done, n, f"step {done} of {n}")
        return n

    yield take_steps
    take_steps.unregister()


def test_progress_lands_on_the_record_and_the_last_report_always_goes_through(
    app_settings: Settings, steps: Any
) -> None:
    with freeze_time("2026-11-29 10:00:00"):  # no time passes: every report but the first and last is throttled
        job_id = steps(5, cancel_at=0).id
        run_due(users_queue)

    record = get_job(job_id)

    assert record["state"] == "complete"
    assert record["progress"] == {"done": 5, "total": 5, "percent": 100.0, "message": "step 5 of 5"}


def test_a_running_job_cancelled_stops_at_its_next_progress_report(app_settings: Settings, steps: Any) -> None:
    with freeze_time("2026-11-29 10:00:00", auto_tick_seconds=1):  # every report is due (at most one per 0.5 s)
        job_id = steps(5, cancel_at=3).id
        run_due(users_queue)

    record = get_job(job_id)

    assert record["state"] == "revoked"
    assert record["progress"]["done"] == 3  # step 3 was reported, then the job stopped: 4 and 5 never ran
    assert record["error"] == f"JobCancelled: job {job_id} was cancelled while it ran"


def test_progress_outside_a_job_does_nothing(app_settings: Settings) -> None:
    progress(1, 2, "called from a script")  # no record to write, nothing raised
