"""Consumers with process workers (MEINGYM_WORKER_TYPE=process, huey_consumer -k process) record and acknowledge too.

The registry's writer thread runs in the consumer's main process; forked
workers get one of their own, and write their last transitions when they stop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import peewee
import pytest

from meingym_tasks.domain.models import User
from meingym_tasks.jobs import get_job, schedule_user_processing
from meingym_tasks.queue import queues
from meingym_tasks.queue.queues import users_queue
from meingym_tasks.settings import Settings
from tests.helpers import wait_until

pytestmark = pytest.mark.slow


def test_jobs_run_by_process_workers_are_recorded_and_acknowledged(
    app_env: dict[str, str], db: peewee.Database, tmp_path: Path
) -> None:
    queues.configure(Settings.from_env(app_env))
    user = User.create(email="pia@example.org", name="Pia")
    job_ids = [schedule_user_processing(user.id)["job_id"] for _ in range(6)]
    log = tmp_path / "consumer.log"
    command = [str(Path(sys.executable).parent / "huey_consumer"), "meingym_tasks.consumers.users", "-w", "2"]
    try:
        with open(log, "wb") as output:
            consumer = subprocess.Popen(
                [*command, "-k", "process"], env={**os.environ, **app_env}, stdout=output, stderr=subprocess.STDOUT
            )
        try:
            wait_until(
                lambda: all(get_job(job_id)["state"] == "complete" for job_id in job_ids),
                60,
                lambda: f"every job recorded complete; log:\n{log.read_text()}",
            )
        finally:
            consumer.send_signal(signal.SIGINT)
            consumer.wait(60)
        # Acknowledged: nothing was left in flight for the stop to put back on the queue.
        assert users_queue.pending_count() == 0
        assert "put back on the queue" not in log.read_text()
        assert [get_job(job_id)["attempts"] for job_id in job_ids] == [1] * len(job_ids)
    finally:
        queues.reset()
