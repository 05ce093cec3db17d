"""The JSON API through FastAPI's TestClient, on the real brokers (SQLite, Redis) and databases (SQLite, PostgreSQL)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import peewee
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from meingym_tasks.clock import utcnow
from meingym_tasks.domain.models import User
from meingym_tasks.queue import queues, single_flight
from meingym_tasks.queue.queues import actions_queue, users_queue
from meingym_tasks.registry.models import ConsumerRecord, JobRecord
from meingym_tasks.settings import Settings
from meingym_tasks.web import WebSettings, create_app
from tests.helpers import free_port, run_due

TOKEN = "test-admin-token-0123456789"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def app(app_settings: Settings) -> FastAPI:
    return create_app(app_settings, WebSettings(admin_token=TOKEN))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as test_client:
        yield test_client


@pytest.fixture
def ada(app_settings: Settings, db: peewee.Database) -> User:
    return User.create(email="ada@example.org", name="Ada")


@pytest.fixture
def broken_client(make_settings: Callable[..., Settings], tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """A client of an app whose broker or database URL points at nothing."""

    def build(**env: str) -> TestClient:
        app = create_app(make_settings(**env), WebSettings(admin_token=TOKEN))
        return TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"})

    yield build
    queues.reset()


def unreachable_broker(kind: str, tmp_path: Path) -> str:
    if kind == "redis":
        return f"redis://127.0.0.1:{free_port()}/0"
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    return f"sqlite:///{blocker}/queue.db"  # its parent is a file: SQLite cannot open it


def unreachable_database(database_url: str, tmp_path: Path) -> str:
    if database_url.startswith("sqlite"):
        directory = tmp_path / "a-directory"
        directory.mkdir()
        return f"sqlite:///{directory}"  # SQLite cannot open a directory as its file
    return f"postgresql://postgres@127.0.0.1:{free_port()}/meingym"


def steady_minute() -> datetime:
    """The time now, at least two seconds before the next minute starts (tests compare minute buckets)."""
    now = utcnow()
    if now.second >= 58:
        time.sleep(60 - now.second + 0.1)
        now = utcnow()
    return now


def records() -> list[JobRecord]:
    return list(JobRecord.select())


# --------------------------------------------------------------------------- POST /api/jobs


def test_the_old_body_enqueues_update_all_actions(client: TestClient) -> None:
    response = client.post("/api/jobs", json={"action": "update-all-actions"})

    body = response.json()
    assert response.status_code == 202
    assert body["state"] == "queued" and body["deduplicated"] is False
    # From the public address (MEINGYM_PUBLIC_URL, default the web host and port), never from the Host header.
    assert body["url"] == f"http://127.0.0.1:8000/api/jobs/{body['job_id']}" == response.headers["location"]
    assert client.get(body["url"]).json()["name"] == "update-all-actions"
    assert actions_queue.pending_count() == 1


def test_a_second_update_all_actions_answers_with_the_run_in_progress_and_says_so(client: TestClient) -> None:
    first = client.post("/api/jobs", json={"action": "update-all-actions"}).json()

    second = client.post("/api/jobs", json={"action": "update-all-actions"})

    assert second.status_code == 202
    assert second.json()["job_id"] == first["job_id"]
    assert second.json()["deduplicated"] is True
    assert "already queued: answering with that run" in second.json()["message"]
    assert actions_queue.pending_count() == 1 and len(records()) == 1


@pytest.mark.parametrize("action", ["process-user-data", "send-welcome-email"])
def test_user_jobs_run_now_later_or_at_a_time(client: TestClient, ada: User, action: str) -> None:
    now = client.post("/api/jobs", json={"action": action, "user_id": ada.id})
    later = client.post("/api/jobs", json={"action": action, "user_id": ada.id, "delay": 120})
    eta = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    at = client.post("/api/jobs", json={"action": action, "user_id": ada.id, "eta": eta.isoformat()})

    assert [r.status_code for r in (now, later, at)] == [202, 202, 202]
    assert [r.json()["state"] for r in (now, later, at)] == ["queued", "scheduled", "scheduled"]
    job = client.get(at.json()["url"]).json()
    assert datetime.fromisoformat(job["scheduled_for"]) == eta
    assert job["arguments"] == {"args": [ada.id], "kwargs": {}}
    run_due(users_queue)
    assert client.get(now.json()["url"]).json()["state"] == "complete"


def test_an_unknown_action_is_400_listing_the_valid_ones(client: TestClient) -> None:
    response = client.post("/api/jobs", json={"action": "update-everything"})

    assert response.status_code == 400
    assert response.json() == {
        "message": "unknown action 'update-everything'; allowed: update-all-actions, process-user-data, "
        "send-welcome-email",
        "allowed": ["update-all-actions", "process-user-data", "send-welcome-email"],
    }
    assert records() == []


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["action"]),
        ({"action": 7}, ["action"]),
        ({"action": "process-user-data"}, ["user_id"]),
        ({"action": "send-welcome-email", "user_id": "7"}, ["user_id"]),
        ({"action": "process-user-data", "user_id": 7.5}, ["user_id"]),
        ({"action": "process-user-data", "user_id": 0}, ["user_id"]),
        ({"action": "process-user-data", "user_id": True}, ["user_id"]),
        ({"action": "update-all-actions", "user_id": 7}, ["user_id"]),
        ({"action": "process-user-data", "userId": 7}, ["user_id", "userId"]),
        ({"action": "process-user-data", "user_id": 2**63}, ["user_id"]),
        ({"action": "process-user-data", "user_id": 7, "delay": None}, ["delay"]),
        ({"action": "update-all-actions", "delay": "soon"}, ["delay"]),
        ({"action": "update-all-actions", "delay": -1}, ["delay"]),
        ({"action": "update-all-actions", "delay": 10**9}, ["delay"]),
        ({"action": "update-all-actions", "eta": "tomorrow"}, ["eta"]),
        ({"action": "update-all-actions", "eta": "2001-01-01T00:00:00+00:00"}, ["eta"]),
        ({"action": "update-all-actions", "delay": 5, "eta": "2030-01-01T00:00:00"}, ["delay", "eta"]),
    ],
)
def test_a_missing_or_wrong_field_is_422_naming_it(client: TestClient, body: dict[str, Any], fields: list[str]) -> None:
    response = client.post("/api/jobs", json=body)

    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == fields
    assert all(field in response.json()["message"] for field in fields)
    assert records() == [] and actions_queue.pending_count() == users_queue.pending_count() == 0


def test_each_error_names_the_field_and_what_it_allows(client: TestClient) -> None:
    zero = client.post("/api/jobs", json={"action": "process-user-data", "user_id": 0}).json()
    extra = client.post("/api/jobs", json={"action": "update-all-actions", "user_id": 7}).json()
    late = client.post("/api/jobs", json={"action": "update-all-actions", "eta": "2001-01-01T00:00:00+00:00"}).json()

    assert zero["message"] == (
        "user_id: 0 is not allowed (Input should be greater than or equal to 1); "
        f"allowed: a whole number from 1 to {2**63 - 1}"
    )
    assert zero["errors"] == [{"field": "user_id", "message": zero["message"][len("user_id: ") :],
                               "type": "greater_than_equal"}]  # fmt: skip
    assert extra["errors"][0]["message"] == "is not a parameter; allowed: delay, eta, action"
    assert "is more than an hour in the past; allowed: a date and time from an hour ago to" in late["message"]


def test_the_trigger_body_is_documented_per_job_as_the_server_enforces_it(
    client: TestClient, app_settings: Settings
) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    body = document["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]

    request = schemas[body["$ref"].rsplit("/", 1)[1]]
    assert request["discriminator"]["propertyName"] == "action"
    assert sorted(request["discriminator"]["mapping"]) == ["process-user-data", "send-welcome-email",
                                                           "update-all-actions"]  # fmt: skip
    user = schemas["TriggerProcessUserData"]
    assert user["properties"]["user_id"] == {
        "type": "integer", "minimum": 1, "maximum": 2**63 - 1, "title": "User ID", "description": "The user's id"
    }  # fmt: skip
    assert sorted(user["required"]) == ["action", "user_id"] and user["additionalProperties"] is False
    assert user["properties"]["action"]["const"] == "process-user-data"
    assert user["properties"]["delay"]["maximum"] == app_settings.max_schedule_ahead
    assert user["properties"]["eta"]["format"] == "date-time"
    assert user["not"] == {"required": ["delay", "eta"]}  # delay or eta, never both
    assert set(schemas["TriggerUpdateAllActions"]["properties"]) == {"action", "delay", "eta"}
    name = next(p for p in document["paths"]["/api/jobs"]["get"]["parameters"] if p["name"] == "name")
    assert name["schema"]["anyOf"][0]["pattern"] == "^[^\\u0000]*$"


def test_a_whole_number_written_7_0_is_an_integer_as_json_schema_says(client: TestClient, ada: User) -> None:
    response = client.post("/api/jobs", json={"action": "process-user-data", "user_id": float(ada.id)})

    assert response.status_code == 202, response.text
    assert client.get(response.json()["url"]).json()["arguments"] == {"args": [ada.id], "kwargs": {}}


def test_a_body_that_is_not_json_is_422(client: TestClient) -> None:
    response = client.post("/api/jobs", content=b"action=update-all-actions", headers={"Content-Type": "text/plain"})

    assert response.status_code == 422
    assert response.json()["message"]


@pytest.mark.parametrize("broker", ["sqlite", "redis"])
@pytest.mark.parametrize("action", ["update-all-actions", "process-user-data"])
def test_an_unreachable_broker_is_503_and_nothing_is_written(
    broken_client: Callable[..., TestClient],
    database_url: str,
    db: peewee.Database,
    tmp_path: Path,
    broker: str,
    action: str,
) -> None:
    client = broken_client(MEINGYM_BROKER_URL=unreachable_broker(broker, tmp_path), DATABASE_URL=database_url)
    body = {"action": action, "user_id": 7} if action != "update-all-actions" else {"action": action}

    response = client.post("/api/jobs", json=body)

    assert response.status_code == 503
    assert response.json()["message"].startswith("the queue broker is unavailable")
    assert response.headers["retry-after"] == "5"
    assert records() == []  # the record the enqueue wrote was rolled back with the failed enqueue
    assert client.get("/api/queues").status_code == 503


@pytest.mark.parametrize("action", ["update-all-actions", "send-welcome-email"])
def test_an_unreachable_database_is_503_and_nothing_is_enqueued(
    broken_client: Callable[..., TestClient], broker_url: str, database_url: str, tmp_path: Path, action: str
) -> None:
    client = broken_client(MEINGYM_BROKER_URL=broker_url, DATABASE_URL=unreachable_database(database_url, tmp_path))
    body = {"action": action, "user_id": 7} if action != "update-all-actions" else {"action": action}

    response = client.post("/api/jobs", json=body)
    listing = client.get("/api/jobs")

    assert response.status_code == listing.status_code == 503
    assert response.json()["message"].startswith("the database is unavailable")
    assert actions_queue.pending_count() == users_queue.pending_count() == 0
    assert actions_queue.scheduled_count() == users_queue.scheduled_count() == 0
    assert single_flight.current(actions_queue, "update-all-actions") is None


# --------------------------------------------------------------------------- GET /api/jobs


def test_listing_pages_newest_first_with_filters_and_counts(client: TestClient, ada: User) -> None:
    ids = [client.post("/api/jobs", json={"action": "process-user-data", "user_id": ada.id}).json()["job_id"]]
    ids.append(client.post("/api/jobs", json={"action": "send-welcome-email", "user_id": ada.id}).json()["job_id"])
    ids.append(client.post("/api/jobs", json={"action": "process-user-data", "user_id": 424242}).json()["job_id"])
    run_due(users_queue)
    ids.append(client.post("/api/jobs", json={"action": "update-all-actions"}).json()["job_id"])

    first = client.get("/api/jobs", params={"limit": 3}).json()
    second = client.get(first["next_url"]).json()
    failed = client.get("/api/jobs", params={"state": "failed"}).json()
    emails = client.get("/api/jobs", params={"name": "send-welcome-email", "queue": "users-processing"}).json()

    assert [j["job_id"] for j in first["jobs"] + second["jobs"]] == list(reversed(ids))
    assert second["next"] is None and second["next_url"] is None
    assert client.get("/api/jobs", params={"limit": 3, "cursor": first["next"]}).json()["jobs"] == second["jobs"]
    assert [j["job_id"] for j in failed["jobs"]] == [ids[2]]
    assert [j["job_id"] for j in emails["jobs"]] == [ids[1]]
    assert first["counts"]["users-processing"]["complete"] == 2
    assert first["counts"]["users-processing"]["failed"] == 1
    assert first["counts"]["actions-processing"]["queued"] == 1
    assert "failed_attempts" not in first["jobs"][0]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "done"}, "state"),
        ({"queue": "emails"}, "queue"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"name": "a\x00b"}, "name"),
        ({"cursor": "a\x00b"}, "cursor"),
    ],
)
def test_bad_list_parameters_are_422_naming_them(client: TestClient, params: dict[str, Any], field: str) -> None:
    response = client.get("/api/jobs", params=params)

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]


# --------------------------------------------------------------------------- GET /api/jobs/{id}


def test_a_job_shows_its_attempts_error_and_traceback(client: TestClient, ada: User) -> None:
    job_id = client.post("/api/jobs", json={"action": "process-user-data", "user_id": 424242}).json()["job_id"]
    run_due(users_queue)

    job = client.get(f"/api/jobs/{job_id}").json()

    assert job["state"] == "failed" and job["attempts"] == 1
    assert job["error"] == "UnknownUser: user 424242 does not exist"
    assert [a["attempt"] for a in job["failed_attempts"]] == [1]
    assert "Traceback (most recent call last)" in job["failed_attempts"][0]["traceback"]
    assert job["progress"] == {"done": None, "total": None, "percent": None, "message": None}


def test_a_run_shows_its_progress_result_and_pieces(client: TestClient, ada: User, app_env: dict[str, str]) -> None:
    from meingym_tasks.domain.seed import seed_demo_data

    queues.configure(Settings.from_env({**app_env, "MEINGYM_UPDATE_BATCH_SIZE": "10"}))
    seed_demo_data(users=0, actions=25, seed=1)
    job_id = client.post("/api/jobs", json={"action": "update-all-actions"}).json()["job_id"]
    while run_due(actions_queue):
        pass

    job = client.get(f"/api/jobs/{job_id}").json()

    assert job["state"] == "complete"
    assert job["progress"]["done"] == job["progress"]["total"] == 25 and job["progress"]["percent"] == 100.0
    assert job["result"]["actions_scored"] == 25 and job["result"]["batches"] == 3
    assert job["children"] == {"complete": 4}  # three batches and the finishing step
    listed = client.get("/api/jobs", params={"children": True}).json()["jobs"]
    assert sorted(j["name"] for j in listed) == ["update-all-actions", *["update-all-actions.batch"] * 3,
                                                 "update-all-actions.finish"]  # fmt: skip
    assert [j["name"] for j in client.get("/api/jobs").json()["jobs"]] == ["update-all-actions"]


@pytest.mark.parametrize("job_id", [UNKNOWN_ID, "not-a-job-id"])
def test_an_unknown_or_malformed_id_is_404(client: TestClient, app_settings: Settings, job_id: str) -> None:
    for response in (
        client.get(f"/api/jobs/{job_id}"),
        client.post(f"/api/jobs/{job_id}/retry"),
        client.post(f"/api/jobs/{job_id}/cancel"),
    ):
        assert response.status_code == 404
        assert job_id in response.json()["message"]


# --------------------------------------------------------------------------- retry and cancel


def test_a_failed_job_is_retried_under_the_same_id(client: TestClient, ada: User) -> None:
    job_id = client.post("/api/jobs", json={"action": "process-user-data", "user_id": 4242}).json()["job_id"]
    run_due(users_queue)
    User.create(id=4242, email="grace@example.org", name="Grace")

    retried = client.post(f"/api/jobs/{job_id}/retry")
    run_due(users_queue)
    again = client.post(f"/api/jobs/{job_id}/retry")

    assert retried.status_code == 200
    assert retried.json()["job"]["state"] == "queued" and retried.json()["message"] == f"job {job_id} queued again"
    assert client.get(f"/api/jobs/{job_id}").json()["state"] == "complete"
    assert again.status_code == 409
    assert "is complete; only failed, revoked, expired, interrupted jobs can be retried" in again.json()["message"]


def test_a_scheduled_job_is_cancelled_and_never_runs(client: TestClient, ada: User) -> None:
    job_id = client.post("/api/jobs", json={"action": "send-welcome-email", "user_id": ada.id, "delay": 60}).json()[
        "job_id"
    ]

    cancelled = client.post(f"/api/jobs/{job_id}/cancel")
    again = client.post(f"/api/jobs/{job_id}/cancel")

    assert cancelled.status_code == 200
    assert cancelled.json()["job"]["state"] == "revoked"
    assert cancelled.json()["message"] == f"job {job_id} cancelled: it will not run"
    assert again.status_code == 409 and "is revoked" in again.json()["message"]


def test_retry_failed_requeues_every_failed_job_of_a_queue(client: TestClient, ada: User) -> None:
    failed = [
        client.post("/api/jobs", json={"action": "process-user-data", "user_id": n}).json()["job_id"]
        for n in (5001, 5002)
    ]
    client.post("/api/jobs", json={"action": "process-user-data", "user_id": ada.id})
    run_due(users_queue)

    response = client.post("/api/jobs/retry-failed", json={"queue": "users-processing"})
    nothing = client.post("/api/jobs/retry-failed", json={"queue": "actions-processing"})

    assert response.status_code == 200
    assert sorted(response.json()["retried"]) == sorted(failed)
    assert response.json()["skipped"] == [] and response.json()["more"] is False
    assert response.json()["message"] == "2 failed job(s) of users-processing queued again"
    assert [client.get(f"/api/jobs/{i}").json()["state"] for i in failed] == ["queued", "queued"]
    assert nothing.json()["retried"] == []


@pytest.mark.parametrize(("body", "field"), [({}, "queue"), ({"queue": "emails"}, "queue"), ({"queue": 1}, "queue")])
def test_retry_failed_names_a_missing_or_unknown_queue(
    client: TestClient, app_settings: Settings, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/jobs/retry-failed", json=body)

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]


# --------------------------------------------------------------------------- queues, probes, metrics


def test_queues_show_depth_states_throughput_per_minute_and_consumers(client: TestClient, ada: User) -> None:
    client.post("/api/jobs", json={"action": "process-user-data", "user_id": ada.id})
    client.post("/api/jobs", json={"action": "process-user-data", "user_id": 777_777})
    run_due(users_queue)
    client.post("/api/jobs", json={"action": "send-welcome-email", "user_id": ada.id})
    client.post("/api/jobs", json={"action": "send-welcome-email", "user_id": ada.id, "delay": 300})
    now = steady_minute()
    ConsumerRecord.create(
        consumer_id="web-test:1:users-processing", queue="users-processing", host="web-test", pid=1, workers=4,
        worker_type="thread", started_at=now - timedelta(minutes=5), last_seen_at=now,
    )  # fmt: skip

    response = client.get("/api/queues")

    users = response.json()["queues"]["users-processing"]
    assert response.status_code == 200
    assert users["pending"] + users["scheduled"] == 2  # a delayed job is pending until a consumer schedules it
    assert users["failed"] == 1
    assert users["states"]["complete"] == 1 and users["states"]["queued"] == 1
    assert (users["completed_last_hour"], users["failed_last_hour"]) == (1, 1)
    minutes = users["throughput"]
    assert len(minutes) == 60
    assert sum(m["complete"] for m in minutes) == 1 and sum(m["failed"] for m in minutes) == 1
    assert minutes[-1]["minute"] == now.replace(second=0, microsecond=0, tzinfo=UTC).isoformat()
    assert [(c["host"], c["workers"]) for c in users["consumers"]] == [("web-test", 4)]
    assert response.json()["queues"]["actions-processing"]["consumers"] == []


def test_throughput_counts_each_minute_of_the_last_hour_only(client: TestClient, ada: User) -> None:
    now = steady_minute()
    for minutes_ago, state in [(0, "complete"), (0, "failed"), (5, "complete"), (5, "complete"), (59, "failed"),
                               (61, "complete")]:  # fmt: skip
        at = now - timedelta(minutes=minutes_ago)
        JobRecord.create(
            job_id=str(uuid.uuid4()), queue="users-processing",
            name="process-user-data", state=state, enqueued_at=at, finished_at=at, updated_at=at,
        )  # fmt: skip

    minutes = client.get("/api/queues").json()["queues"]["users-processing"]["throughput"]

    assert (minutes[-1]["complete"], minutes[-1]["failed"]) == (1, 1)
    assert (minutes[-6]["complete"], minutes[-6]["failed"]) == (2, 0)
    assert (minutes[0]["complete"], minutes[0]["failed"]) == (0, 1)
    assert sum(m["complete"] + m["failed"] for m in minutes) == 5


def test_healthz_and_readyz_answer_without_a_token(app: FastAPI) -> None:
    anonymous = TestClient(app)

    assert anonymous.get("/healthz").json() == {"status": "ok"}
    ready = anonymous.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": "ok", "broker": "ok"}


def test_readyz_is_503_naming_only_what_is_down(
    broken_client: Callable[..., TestClient], database_url: str, db: peewee.Database, tmp_path: Path
) -> None:
    client = broken_client(MEINGYM_BROKER_URL=unreachable_broker("redis", tmp_path), DATABASE_URL=database_url)

    response = TestClient(client.app).get("/readyz")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "ok", "broker": "down"}  # no reason leaked


def test_metrics_are_prometheus_text_with_jobs_durations_depth_and_consumers(
    client: TestClient, app: FastAPI, ada: User
) -> None:
    app.state.web.metrics.lag = timedelta(0)
    client.post("/api/jobs", json={"action": "process-user-data", "user_id": ada.id})
    client.post("/api/jobs", json={"action": "process-user-data", "user_id": 31337})
    run_due(users_queue)
    client.post("/api/jobs", json={"action": "send-welcome-email", "user_id": ada.id})

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    users = ("queue", "users-processing")
    assert samples[("meingym_jobs", (("name", "process-user-data"), users, ("state", "complete")))] == 1
    assert samples[("meingym_jobs", (("name", "process-user-data"), users, ("state", "failed")))] == 1
    assert samples[("meingym_queue_depth", (("kind", "pending"), users))] == 1
    assert samples[("meingym_consumers_alive", (users,))] == 0
    assert families["meingym_job_duration_seconds"].type == "histogram"
    count = ("meingym_job_duration_seconds_count", (("name", "process-user-data"), users, ("state", "complete")))
    assert samples[count] == 1
    assert client.get("/metrics").text.count("meingym_job_duration_seconds_count") == 2  # observed once, not again


def test_dead_letters_are_listed_with_their_reasons(client: TestClient, app_settings: Settings) -> None:
    from meingym_tasks.queue.queues import users_queue
    from tests.helpers import run_due

    users_queue.storage.enqueue(b"\x00 not a huey message")
    run_due(users_queue)

    page = client.get("/api/dead-letters", params={"queue": "users-processing"})
    unknown = client.get("/api/dead-letters", params={"queue": "emails"})

    assert page.status_code == 200
    assert page.json()["counts"] == {"actions-processing": 0, "users-processing": 1}
    [letter] = page.json()["dead_letters"]
    assert letter["reason"].startswith("ValueError") and letter["size"] == 20
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "queue"
