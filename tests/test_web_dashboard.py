"""The dashboard's pages and forms without a browser: outcomes, errors, filters (the browser test drives it too)."""

from __future__ import annotations

import html
import re
from pathlib import Path

import peewee
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from meingym_tasks.domain.models import User
from meingym_tasks.queue.queues import users_queue
from meingym_tasks.settings import Settings
from meingym_tasks.web import WebSettings, create_app
from tests.helpers import run_due

TOKEN = "dashboard-test-token-0123456789"
WHOLE_NUMBER = f"a whole number from 1 to {2**63 - 1}"


@pytest.fixture
def broker_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'queue.db'}"


@pytest.fixture
def app(app_settings: Settings) -> FastAPI:
    return create_app(app_settings, WebSettings(admin_token=TOKEN))


@pytest.fixture
def browser(app: FastAPI) -> tuple[TestClient, str]:
    """A client logged in through the form, and the CSRF token of its session."""
    client = TestClient(app, follow_redirects=False)
    assert client.post("/admin/login", data={"token": TOKEN}).status_code == 303
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin/jobs").text)
    assert match
    return client, match.group(1)


def flash(client: TestClient, response: object) -> str:
    """Follow the redirect of a form and return the one-time message shown there."""
    page = client.get(response.headers["location"])  # type: ignore[attr-defined]
    match = re.search(r'<p class="flash flash-(\w+)" role="\w+">(.*?)</p>', page.text, re.S)
    assert match, page.text
    again = client.get(response.headers["location"])  # type: ignore[attr-defined]
    assert 'class="flash' not in again.text  # shown once
    return f"{match.group(1)}: {match.group(2)}"


def test_triggering_from_the_form_leads_to_the_job_with_its_outcome(
    browser: tuple[TestClient, str], db: peewee.Database
) -> None:
    client, csrf = browser
    user = User.create(email="ada@example.org", name="Ada")

    done = client.post(
        "/admin/jobs/trigger", data={"csrf_token": csrf, "action": "send-welcome-email", "user_id": str(user.id)}
    )
    done_message = flash(client, done)
    first = client.post("/admin/jobs/trigger", data={"csrf_token": csrf, "action": "update-all-actions"})
    first_message = flash(client, first)
    again = client.post("/admin/jobs/trigger", data={"csrf_token": csrf, "action": "update-all-actions"})

    assert re.fullmatch(r"/admin/jobs/[0-9a-f-]{36}", done.headers["location"])
    assert done_message.startswith("ok: send-welcome-email enqueued as ")
    assert first_message.startswith("ok: update-all-actions enqueued as ")
    assert "info: update-all-actions is already queued: answering with that run" in flash(client, again)
    assert again.headers["location"] == first.headers["location"]


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"action": "process-user-data"}, f"Not triggered: user_id: missing; allowed: {WHOLE_NUMBER}"),
        ({"action": "process-user-data", "user_id": "-3"}, "Not triggered: user_id: -3 is not allowed (Input"),
        (
            {"action": "process-user-data", "user_id": "²"},
            f"user_id: '²' is not allowed (Input should be a valid integer); allowed: {WHOLE_NUMBER}",
        ),
        ({"action": "process-user-data", "user_id": "١٢"}, "user_id: '١٢' is not allowed"),
        ({"action": "process-user-data", "user_id": str(2**63)}, f"user_id: {2**63} is not allowed"),
        ({"action": "process-user-data", "user_id": "7", "userId": "7"}, None),
        ({"action": "send-welcome-email", "user_id": "7\x00"}, "user_id: '7\\x00' is not allowed"),
        ({"action": "reindex"}, "Not triggered: unknown action 'reindex'; allowed: update-all-actions"),
        ({"action": "update-all-actions", "delay": "soon"}, "Not triggered: delay: 'soon' is not allowed"),
        ({"action": "update-all-actions", "delay": "1e999"}, "delay: inf is not allowed"),
        ({"action": "update-all-actions", "eta": "2030-01-01T10:00\x00"}, "eta: "),
        ({"action": "update-all-actions", "delay": "5", "eta": "2030-01-01T10:00"}, "give delay or eta, not both"),
        ({"action": "update-all-actions", "eta": "2001-01-01T10:00"}, "is more than an hour in the past"),
    ],
)
def test_a_bad_trigger_form_goes_back_with_the_reason(
    browser: tuple[TestClient, str], form: dict[str, str], message: str | None
) -> None:
    client, csrf = browser

    response = client.post("/admin/jobs/trigger", data={"csrf_token": csrf, **form})

    if message is None:  # a field the chosen job does not show is not read
        assert re.fullmatch(r"/admin/jobs/[0-9a-f-]{36}", response.headers["location"])
        return
    assert response.headers["location"] == "/admin/jobs#trigger"
    shown = html.unescape(flash(client, response))
    assert shown.startswith("error: Not triggered") and message in shown


def test_retry_cancel_and_retry_all_failed_from_the_forms(browser: tuple[TestClient, str], db: peewee.Database) -> None:
    client, csrf = browser
    api = TestClient(client.app, headers={"Authorization": f"Bearer {TOKEN}"})
    failed = [
        api.post("/api/jobs", json={"action": "process-user-data", "user_id": n}).json()["job_id"] for n in (8, 9)
    ]
    later = api.post("/api/jobs", json={"action": "send-welcome-email", "user_id": 8, "delay": 600}).json()["job_id"]
    run_due(users_queue)

    page = client.get(f"/admin/jobs/{failed[0]}").text
    assert "UnknownUser: user 8 does not exist" in page and ">Retry</button>" in page

    retried = client.post(f"/admin/jobs/{failed[0]}/retry", data={"csrf_token": csrf})
    assert flash(client, retried) == "ok: Queued again: a new attempt will run shortly."
    not_again = client.post(f"/admin/jobs/{failed[0]}/retry", data={"csrf_token": csrf})
    assert flash(client, not_again).startswith("error: Not retried: job ")
    cancelled = client.post(f"/admin/jobs/{later}/cancel", data={"csrf_token": csrf})
    assert flash(client, cancelled) == f"ok: job {later} cancelled: it will not run"
    all_failed = client.post("/admin/jobs/retry-failed", data={"csrf_token": csrf, "queue": "users-processing"})
    assert flash(client, all_failed) == "ok: 1 failed job(s) of users-processing queued again"


def test_unknown_jobs_and_bad_filters_answer_with_a_page(browser: tuple[TestClient, str]) -> None:
    client, _ = browser

    missing = client.get("/admin/jobs/00000000-0000-4000-8000-000000000000")
    bad_state = client.get("/admin/jobs", params={"state": "done"})

    nul_name = client.get("/admin/jobs", params={"name": "a\x00b"})

    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "no job with id" in missing.text
    assert bad_state.status_code == 422 and "unknown state &#39;done&#39;" in bad_state.text
    assert nul_name.status_code == 422 and "name: must not contain a NUL character" in nul_name.text


def test_filters_and_pages_of_the_job_table(browser: tuple[TestClient, str], db: peewee.Database) -> None:
    client, _ = browser
    api = TestClient(client.app, headers={"Authorization": f"Bearer {TOKEN}"})
    ids = [
        api.post("/api/jobs", json={"action": "process-user-data", "user_id": n}).json()["job_id"] for n in range(1, 26)
    ]

    first = client.get("/admin/jobs", params={"limit": 20}).text
    older = re.search(r'href="(\?[^"]*cursor=[^"]+)#jobs" rel="next"', first)
    assert older
    second = client.get("/admin/jobs" + older.group(1).replace("&amp;", "&")).text
    filtered = client.get("/admin/jobs", params={"state": "failed"}).text

    assert all(job_id in first for job_id in ids[-20:]) and ids[0] not in first
    assert all(job_id in second for job_id in ids[:5]) and "← Newest" in second
    assert 'data-live-table="no"' in second and 'data-live-table="yes"' in first
    assert "No jobs match these filters." in filtered


def test_a_queue_with_pending_jobs_and_no_live_consumer_is_flagged(
    browser: tuple[TestClient, str], db: peewee.Database
) -> None:
    from meingym_tasks.clock import utcnow
    from meingym_tasks.registry.models import ConsumerRecord

    client, _ = browser
    api = TestClient(client.app, headers={"Authorization": f"Bearer {TOKEN}"})
    api.post("/api/jobs", json={"action": "process-user-data", "user_id": 1})

    waiting = client.get("/admin/jobs").text
    unserved = api.get("/api/queues").json()["queues"]
    ConsumerRecord.create(
        consumer_id="dash:1:users-processing", queue="users-processing", host="dash", pid=1, workers=1,
        worker_type="thread", started_at=utcnow(), last_seen_at=utcnow(),
    )  # fmt: skip
    served = client.get("/admin/jobs").text

    warning = re.compile(r'<p class="warning" role="status" data-unserved="users-processing"( hidden)?>')
    assert [m.group(1) for m in warning.finditer(waiting)] == [None]  # shown
    assert "job(s) pending and no consumer of users-processing" in waiting
    assert 'data-unserved="actions-processing" hidden' in waiting  # nothing pending there
    assert unserved["users-processing"]["unserved"] is True and unserved["actions-processing"]["unserved"] is False
    assert [m.group(1) for m in warning.finditer(served)] == [" hidden"]
