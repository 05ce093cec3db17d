"""The embedded default under load: a consumer busy writing does not make the API answer 'database is locked'.

SQLite allows one writer at a time. A transaction that reads first and writes
later cannot wait for the lock once another connection has written (WAL: its
snapshot is stale), so it failed at once; transactions that will write start
with BEGIN IMMEDIATE and wait for the lock instead (``busy_timeout``).
"""

from __future__ import annotations

from pathlib import Path

import peewee
import pytest
from fastapi.testclient import TestClient

from meingym_tasks.domain.models import User
from meingym_tasks.jobs import schedule_user_processing
from meingym_tasks.queue import queues
from meingym_tasks.queue.queues import users_queue
from meingym_tasks.registry.models import JobRecord
from meingym_tasks.settings import Settings
from meingym_tasks.web import WebSettings, create_app
from tests.helpers import running_consumers, wait_until

TOKEN = "test-admin-token-0123456789"
CANCELS = 150


@pytest.mark.slow
@pytest.mark.parametrize("broker_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cancelling_while_a_consumer_writes_never_answers_database_locked(
    app_env: dict[str, str], db: peewee.Database, tmp_path: Path
) -> None:
    settings = Settings.from_env(app_env)
    queues.configure(settings)
    user = User.create(email="ida@example.org", name="Ida")
    for _ in range(3000):  # keeps the consumer writing (stats and registry) for the whole test
        schedule_user_processing(user.id)
    app = create_app(settings, WebSettings(admin_token=TOKEN))
    statuses: list[int] = []
    try:
        with (
            running_consumers(app_env, tmp_path / "logs", workers=2),
            TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client,
        ):
            wait_until(lambda: JobRecord.select().where(JobRecord.state == "complete").exists(), 60, "work to start")
            for _ in range(CANCELS):
                job_id = schedule_user_processing(user.id, delay=3600)["job_id"]
                response = client.post(f"/api/jobs/{job_id}/cancel")
                statuses.append(response.status_code)
                assert response.status_code == 200, response.text
            still_working = users_queue.pending_count() > 0
    finally:
        queues.reset()

    assert statuses == [200] * CANCELS
    assert still_working, "the consumer finished before the cancels ended: the test proved nothing"
