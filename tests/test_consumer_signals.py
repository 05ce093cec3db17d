"""A stop signal that reaches a consumer while it is still starting is a graceful stop.

huey installs its signal handlers only at the end of ``Consumer.start()``; a
``systemctl stop`` (SIGINT) before that used to raise KeyboardInterrupt out of
``start()``: a traceback, exit status -2, and jobs left running in a dead process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import peewee
import pytest

from meingym_tasks.domain.models import User
from meingym_tasks.jobs import get_job, schedule_user_processing
from meingym_tasks.queue import queues
from meingym_tasks.queue.queues import users_queue
from meingym_tasks.settings import Settings

pytestmark = pytest.mark.slow

# The users consumer, with the stop sent from inside huey's Consumer.start(): when it logs its
# first line, before it starts its workers and installs its own signal handlers.
STOPPED_WHILE_STARTING = textwrap.dedent(
    """
    import logging, os, signal, sys
    from meingym_tasks.consumers import users

    logging.basicConfig(level=logging.INFO)  # as huey_consumer does

    class StopWhileStarting(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("Huey consumer started"):
                for _ in range(int(sys.argv[1])):
                    os.kill(os.getpid(), signal.SIGINT)  # what systemd's KillSignal sends

    logging.getLogger("huey.consumer").addHandler(StopWhileStarting())
    users.create_consumer(workers=2, periodic=False).run()
    """
)


@pytest.mark.parametrize("signals", [1, 2], ids=["one SIGINT", "two SIGINTs"])
def test_a_stop_that_arrives_while_the_consumer_starts_stops_it_gracefully(
    signals: int, app_env: dict[str, str], db: peewee.Database, tmp_path: Path
) -> None:
    queues.configure(Settings.from_env(app_env))
    user = User.create(email="ida@example.org", name="Ida")
    job_id = schedule_user_processing(user.id)["job_id"]
    try:
        consumer = subprocess.run(
            [sys.executable, "-c", STOPPED_WHILE_STARTING, str(signals)],
            env={**os.environ, **app_env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        log = consumer.stdout + consumer.stderr

        assert consumer.returncode == 0, log
        assert "Received SIGINT" in log and "Traceback" not in log, log
        # The job either ran before the workers stopped or waits on the queue: never held by a dead process.
        state = get_job(job_id)["state"]
        assert (state, users_queue.pending_count()) in {("complete", 0), ("queued", 1)}, log
    finally:
        queues.reset()
