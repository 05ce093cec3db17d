"""The registry seen from real consumer processes: heartbeats, cancellation mid-run, interruption."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import peewee
import pytest
from aiosmtpd.controller import Controller

from meingym_tasks.domain.models import User
from meingym_tasks.domain.seed import seed_demo_data
from meingym_tasks.jobs import (
    cancel_job,
    get_job,
    list_jobs,
    queue_overview,
    schedule_actions_update,
    schedule_welcome_email,
)
from meingym_tasks.queue import queues
from meingym_tasks.queue.queues import users_queue
from meingym_tasks.settings import Settings
from tests.helpers import free_port, running_consumers, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def bound(app_env: dict[str, str]) -> Callable[..., dict[str, str]]:
    """Bind this process's queues to ``app_env`` plus overrides; returns the environment for consumers."""

    def bind(**extra: str) -> dict[str, str]:
        env = {**app_env, **extra}
        queues.configure(Settings.from_env(env))
        return env

    yield bind
    queues.reset()


def test_consumers_report_heartbeats_and_leave_on_stop(
    bound: Callable[..., dict[str, str]], db: peewee.Database, tmp_path: Path
) -> None:
    env = bound()
    with running_consumers(env, tmp_path / "logs", workers=3):
        alive = wait_until(
            lambda: all(row["consumers"] for row in queue_overview().values()), 30, "both consumers' heartbeats"
        )
        overview = queue_overview()
    after = queue_overview()

    assert alive
    assert [c["workers"] for c in overview["users-processing"]["consumers"]] == [3]
    assert after["users-processing"]["consumers"] == after["actions-processing"]["consumers"] == []


def test_a_cancelled_run_stops_before_its_next_batch(
    bound: Callable[..., dict[str, str]], db: peewee.Database, tmp_path: Path
) -> None:
    env = bound(MEINGYM_UPDATE_BATCH_SIZE="5")
    seed_demo_data(users=2, actions=1_000, seed=3)  # 200 batches

    with running_consumers(env, tmp_path / "logs", workers=1):
        run_id = schedule_actions_update()["job_id"]
        wait_until(lambda: (get_job(run_id)["progress"]["done"] or 0) > 0, 60, "the first batch")
        cancel_job(run_id)
        wait_until(
            lambda: [j["state"] for j in list_jobs(name="update-all-actions.finish")["jobs"]] == ["complete"],
            120,
            "the run's finishing step",
        )
        run = get_job(run_id)
        batches = list_jobs(name="update-all-actions.batch", limit=500)["jobs"]

    assert run["state"] == "revoked" and run["cancel_requested"] is True
    assert 0 < run["progress"]["done"] < 1_000
    assert "batches failed; first: JobCancelled: run" in run["error"]
    assert {b["state"] for b in batches} == {"complete", "revoked"}
    assert schedule_actions_update()["deduplicated"] is False  # the claim was released


class StalledServer:
    """An SMTP server that accepts the message and then never answers."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(120)
        return "250 OK"


@pytest.fixture
def stalled_smtp() -> Iterator[int]:
    port = free_port()
    controller = Controller(StalledServer(), hostname="127.0.0.1", port=port)
    controller.start()
    yield port
    controller.stop()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_job_running_when_its_consumer_is_stopped_hard_goes_back_on_the_queue(
    bound: Callable[..., dict[str, str]], db: peewee.Database, stalled_smtp: int, tmp_path: Path
) -> None:
    # PostgreSQL only: on SQLite the stalled job's open write transaction would block the registry.
    env = bound(SMTP_HOST="127.0.0.1", SMTP_PORT=str(stalled_smtp), SMTP_TIMEOUT="120")
    user = User.create(email="emma@example.org", name="Emma")

    with running_consumers(env, tmp_path / "logs") as (_, users_consumer):
        job_id = schedule_welcome_email(user.id)["job_id"]
        wait_until(lambda: get_job(job_id)["state"] == "running", 60, "the job to start")
        users_consumer.send_signal(signal.SIGTERM)  # huey's "stop now, interrupt running jobs"
        assert users_consumer.wait(30) == 0

    log = (tmp_path / "logs" / "consumer-users.log").read_text()
    assert get_job(job_id)["state"] == "queued"
    # Back on the queue; or, when an idle worker took it again in the instant before the process
    # exited, in the stopped consumer's in-flight place with its heartbeat gone, where the next
    # consumer's reaper finds it (seen on PostgreSQL, about 1 run in 10). Never nowhere.
    storage = users_queue.storage
    held = [data for dead in storage.dead_consumers() for data in storage.inflight(dead)]
    assert users_queue.pending_count() + len(held) == 1
    assert [users_queue.deserialize_task(data).id for data in held] in ([], [job_id])
    # Through huey_consumer's own handler: with its time stamp, level and our logger's name.
    assert f"WARNING:meingym_tasks.consumer:MainThread:users-processing: job {job_id} put back on the queue" in log
