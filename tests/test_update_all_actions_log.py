"""The log of an update-all-actions run: each batch names its run, so one grep finds the whole run."""

from __future__ import annotations

import logging

import peewee
import pytest

from meingym_tasks.domain.rescoring import action_id_bounds
from meingym_tasks.domain.seed import seed_demo_data
from meingym_tasks.jobs import schedule_actions_update
from meingym_tasks.queue import queues
from meingym_tasks.queue.queues import actions_queue
from meingym_tasks.settings import Settings
from tests.helpers import run_due


def test_each_batch_logs_its_run_and_its_id_range(
    app_env: dict[str, str], db: peewee.Database, caplog: pytest.LogCaptureFixture
) -> None:
    queues.configure(Settings.from_env({**app_env, "MEINGYM_UPDATE_BATCH_SIZE": "10"}))
    try:
        seed_demo_data(users=1, actions=25, seed=1)
        bounds = action_id_bounds()
        assert bounds is not None
        first = bounds[0]
        run_id = schedule_actions_update()["job_id"]
        with caplog.at_level(logging.INFO, logger="meingym_tasks.jobs"):
            while run_due(actions_queue):
                pass
    finally:
        queues.reset()

    lines = sorted(
        (r.getMessage() for r in caplog.records if r.getMessage().startswith(f"update-all-actions {run_id}: ids")),
        key=lambda line: int(line.split(" ids ")[1].split("..")[0]),  # by first id, not as text
    )
    assert lines == [
        f"update-all-actions {run_id}: ids {first}..{first + 9} scored (10 actions)",
        f"update-all-actions {run_id}: ids {first + 10}..{first + 19} scored (10 actions)",
        f"update-all-actions {run_id}: ids {first + 20}..{first + 24} scored (5 actions)",
    ]
