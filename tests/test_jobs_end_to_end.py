"""The three jobs through real ``huey_consumer`` processes, on both brokers and both databases."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import peewee
import pytest

from meingym_tasks.domain.models import Action, Exercise, SentEmail, UserStats
from meingym_tasks.domain.seed import seed_demo_data
from meingym_tasks.jobs import (
    get_job,
    job_result,
    list_jobs,
    schedule_actions_update,
    schedule_user_processing,
    schedule_welcome_email,
    wait_for_result,
)
from meingym_tasks.settings import Settings
from tests.helpers import running_consumers

pytestmark = pytest.mark.slow

ACTIONS = 1_000
BATCH = 300  # 1,000 actions in id ranges of 300: four batch jobs


@pytest.fixture
def env(app_env: dict[str, str]) -> dict[str, str]:
    return {**app_env, "MEINGYM_UPDATE_BATCH_SIZE": str(BATCH)}


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    from meingym_tasks.queue import queues

    settings = Settings.from_env(env)
    queues.configure(settings)
    return settings


def python_scores() -> dict[int, Decimal]:
    return {action.id: action.python_score() for action in Action.select(Action, Exercise).join(Exercise)}


def test_every_job_runs_through_real_consumers(
    env: dict[str, str], settings: Settings, db: peewee.Database, tmp_path: Path
) -> None:
    seed_demo_data(users=3, actions=ACTIONS, seed=7)

    with running_consumers(env, tmp_path / "logs"):
        update = schedule_actions_update()
        again = schedule_actions_update()
        user_job = schedule_user_processing(1)
        email_job = schedule_welcome_email(1)
        unknown = schedule_user_processing(424242)

        update_outcome = wait_for_result(update["job_id"], timeout=120)
        user_outcome = wait_for_result(user_job["job_id"], timeout=60)
        email_outcome = wait_for_result(email_job["job_id"], timeout=60)
        unknown_outcome = wait_for_result(unknown["job_id"], timeout=60)
        next_run = schedule_actions_update()  # the finished run released the single-flight claim

    assert again == {"job_id": update["job_id"], "deduplicated": True}
    assert update_outcome["status"] == "complete", update_outcome
    run = get_job(update["job_id"])
    assert run["state"] == "complete"
    assert run["progress"]["done"] == run["progress"]["total"] == ACTIONS and run["progress"]["percent"] == 100
    batches = [b for b in list_jobs(name="update-all-actions.batch")["jobs"] if b["parent_id"] == update["job_id"]]
    assert len(batches) == 4 and {b["state"] for b in batches} == {"complete"}
    assert update_outcome["result"]["actions_scored"] == ACTIONS
    assert update_outcome["result"]["batches"] == 4
    stored = {a.id: a.score for a in Action.select(Action.id, Action.score)}
    assert stored == python_scores()
    assert next_run["job_id"] != update["job_id"] and next_run["deduplicated"] is False

    assert user_outcome["status"] == "complete", user_outcome
    stats = UserStats.get(UserStats.user == 1)
    assert stats.actions_count == Action.select().where(Action.user == 1).count()

    assert email_outcome["status"] == "complete", email_outcome
    assert SentEmail.select().where(SentEmail.job_id == email_job["job_id"]).count() == 1
    eml = Path(email_outcome["result"]["delivered_to"])
    assert eml.parent == settings.outbox_dir and "Willkommen" in eml.read_text()

    assert unknown_outcome["status"] == "failed"
    assert unknown_outcome["error"] == "UnknownUser: user 424242 does not exist"
    assert job_result(unknown["job_id"])["retryable"] is False
