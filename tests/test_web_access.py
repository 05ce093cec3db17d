"""Least privilege, sessions that end, throttled authentication and the audit trail, through the web app.

Each test runs on a SQLite file and on PostgreSQL (the access tables and the
throttle's one-statement upsert differ per database); the broker is the
embedded SQLite one. Two apps built on the same settings stand for two uvicorn
workers: they share nothing but the database.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import peewee
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from freezegun import freeze_time
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Mount

from meingym_tasks.access import tokens
from meingym_tasks.access.models import AccessSession, AccessToken, AuditEntry
from meingym_tasks.clock import utcnow
from meingym_tasks.queue.queues import actions_queue, users_queue
from meingym_tasks.registry.models import JobRecord
from meingym_tasks.settings import Settings
from meingym_tasks.web import WebSettings, create_app
from meingym_tasks.web.auth import PUBLIC_PATHS
from meingym_tasks.web.permissions import (
    ADMIN,
    OPERATE,
    PUBLIC,
    READ,
    check_route_scopes,
    route_scope,
    routes_of,
)

TOKEN = "access-test-admin-token-0123456789"
SOME_ID = "3f2b8c1e-5d6a-4c1b-9a7d-0e1f2a3b4c5d"


@pytest.fixture
def broker_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'queue.db'}"


@pytest.fixture
def app(app_settings: Settings) -> FastAPI:
    return create_app(app_settings, WebSettings(admin_token=TOKEN))


def client_of(app: FastAPI, token: str | None = None, address: str = "testclient") -> TestClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return TestClient(app, headers=headers, client=(address, 50000), follow_redirects=False)


def named(name: str, scope: str) -> str:
    return tokens.create(name, scope, created_by="test")[0]


def log_in(app: FastAPI, token: str, address: str = "testclient") -> tuple[TestClient, str]:
    """A browser logged in through the form with ``token``, and its session's CSRF token."""
    browser = client_of(app, address=address)
    response = browser.post("/admin/login", data={"token": token}, headers={"User-Agent": "Firefox/140 test"})
    assert response.status_code == 303, response.text
    match = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/admin/jobs").text)
    assert match
    return browser, match.group(1)


def failed_job(job_id: str = SOME_ID, state: str = "failed") -> str:
    now = utcnow()
    JobRecord.create(
        job_id=job_id, queue="users-processing", name="process-user-data", state=state, attempts=1,
        arguments={"args": [7], "kwargs": {}}, enqueued_at=now, finished_at=now, updated_at=now,
    )  # fmt: skip
    return job_id


def state_of_everything() -> dict[str, Any]:
    """What a state-changing request could change: records, tokens, sessions, the queues."""
    return {
        "records": sorted((r.job_id, r.state, r.attempts, r.cancel_requested) for r in JobRecord.select()),
        "tokens": sorted((t.name, t.scope) for t in AccessToken.select()),
        "sessions": sorted(s.id for s in AccessSession.select()),
        "pending": (actions_queue.pending_count(), users_queue.pending_count(), users_queue.scheduled_count()),
    }


def every_request(app: FastAPI) -> Iterator[tuple[str, str]]:
    for route, path in routes_of(app):
        if isinstance(route, Mount):
            yield "GET", f"{path}/dashboard.js"
            continue
        filled = re.sub(r"\{[^}]+\}", SOME_ID, path)
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            yield method, filled


def audit_rows(**where: Any) -> list[AuditEntry]:
    query = AuditEntry.select().order_by(AuditEntry.id)
    for field, value in where.items():
        query = query.where(getattr(AuditEntry, field) == value)
    return list(query)


# --------------------------------------------------------------------------- scopes


def test_every_route_declares_its_scope_and_an_undeclared_one_stops_the_app(app: FastAPI) -> None:
    scopes = {f"{m} {p}": route_scope(r) for r, p in routes_of(app) for m in (getattr(r, "methods", None) or {"*"})}

    assert None not in scopes.values(), [k for k, v in scopes.items() if v is None]
    assert {k for k, v in scopes.items() if v == PUBLIC} == {
        "GET /healthz",
        "GET /readyz",
        "GET /admin/login",
        "POST /admin/login",
    }
    for changing in (
        "POST /api/jobs",
        "POST /api/jobs/{job_id}/retry",
        "POST /api/jobs/{job_id}/cancel",
        "POST /api/jobs/retry-failed",
        "POST /admin/jobs/trigger",
        "POST /admin/jobs/{job_id}/cancel",
    ):
        assert scopes[changing] == OPERATE, changing
    for powerful in (
        "POST /api/jobs/purge",
        "POST /api/tokens",
        "DELETE /api/tokens/{name}",
        "GET /api/audit",
        "GET /api/sessions",
        "DELETE /api/sessions/{session_id}",
        "GET /admin/access",
    ):
        assert scopes[powerful] == ADMIN, powerful
    assert scopes["GET /metrics"] == scopes["GET /api/jobs"] == scopes["GET /admin/jobs"] == READ  # fmt: skip
    assert {p for p in PUBLIC_PATHS if not p.startswith("/static/")} == {"/healthz", "/readyz", "/admin/login"}

    app.add_api_route("/api/forgotten", lambda: {}, methods=["POST"])
    with pytest.raises(RuntimeError, match=r"routes without a declared scope .*POST /api/forgotten"):
        check_route_scopes(app)


def test_a_read_token_cannot_change_anything_every_state_changing_route_answers_403(
    app: FastAPI, db: peewee.Database
) -> None:
    read = named("grafana", READ)
    named("deploy-bot", OPERATE)
    failed_job()
    client = client_of(app, read)
    before = state_of_everything()

    refused = []
    for method, path in every_request(app):
        if method in ("GET", "HEAD") or path in PUBLIC_PATHS or path == "/admin/logout":
            continue  # reads, and the way in and out (a Bearer request has no session to end)
        response = client.request(method, path, json={})
        assert response.status_code == 403, (method, path, response.status_code, response.text)
        refused.append(f"{method} {path}")
        if path.startswith("/api/"):
            body = response.json()
            assert body["missing_scope"] in (OPERATE, ADMIN)
            assert f"needs the {body['missing_scope']} scope; the token 'grafana' has read" in body["message"]
        else:
            assert "needs the operate scope" in response.text or "needs the admin scope" in response.text
    # Well-formed bodies are refused the same way, before anything is read from them.
    meaningful = [
        client.post("/api/jobs", json={"action": "update-all-actions"}),
        client.post(f"/api/jobs/{SOME_ID}/retry"),
        client.post("/api/jobs/retry-failed", json={"queue": "users-processing"}),
        client.post("/api/jobs/purge", json={"state": "failed"}),
        client.post("/api/tokens", json={"name": "mine", "scope": "admin"}),
        client.delete("/api/tokens/deploy-bot"),
    ]

    changing = [m for r, _ in routes_of(app) for m in getattr(r, "methods", None) or () if m not in ("GET", "HEAD")]
    assert len(refused) == len(changing) - 2 == 14  # all but logging in and out
    assert [r.status_code for r in meaningful] == [403] * 6
    assert [r.json()["missing_scope"] for r in meaningful] == [OPERATE] * 3 + [ADMIN] * 3
    assert state_of_everything() == before
    # It reads everything it may: every GET route answers (a 404 for the made-up id) but the admin ones.
    admin_reads = {p for r, p in routes_of(app) if route_scope(r) == ADMIN and "GET" in getattr(r, "methods", ())}
    for method, path in every_request(app):
        if method == "GET" and path not in PUBLIC_PATHS:
            expected = (403,) if path in admin_reads else (200, 303, 404)
            assert client.get(path).status_code in expected, path
    # Each refusal is on record, with the token that tried.
    assert {e.actor for e in audit_rows(outcome="refused")} == {"grafana"}
    assert admin_reads == {"/api/audit", "/api/tokens", "/api/sessions", "/admin/access"}
    assert len(audit_rows(outcome="refused")) == len(refused) + len(meaningful) + len(admin_reads)


def test_operate_may_trigger_retry_and_cancel_but_not_purge_or_manage_tokens(app: FastAPI, db: peewee.Database) -> None:
    operator = client_of(app, named("deploy-bot", OPERATE))
    failed_job()

    triggered = operator.post("/api/jobs", json={"action": "process-user-data", "user_id": 7, "delay": 600})
    retried = operator.post(f"/api/jobs/{SOME_ID}/retry")
    cancelled = operator.post(f"/api/jobs/{triggered.json()['job_id']}/cancel")
    purge = operator.post("/api/jobs/purge", json={})
    token = operator.post("/api/tokens", json={"name": "more-power", "scope": "admin"})

    assert [triggered.status_code, retried.status_code, cancelled.status_code] == [202, 200, 200]
    assert purge.status_code == token.status_code == 403
    assert purge.json() == {
        "message": "this needs the admin scope; the token 'deploy-bot' has operate "
        "(`meingym-tasks tokens create NAME --scope admin` makes one that may)",
        "missing_scope": "admin",
    }
    assert AccessToken.select().where(AccessToken.name == "more-power").count() == 0


def test_an_admin_named_token_may_do_everything_and_sees_its_tokens_without_secrets(
    app: FastAPI, db: peewee.Database
) -> None:
    admin = client_of(app, named("ops", ADMIN))

    created = admin.post("/api/tokens", json={"name": "prometheus", "scope": "read"})
    listed = admin.get("/api/tokens").json()
    again = admin.post("/api/tokens", json={"name": "prometheus", "scope": "read"})
    builtin = admin.post("/api/tokens", json={"name": "admin", "scope": "read"})
    scrape = client_of(app, created.json()["token"]).get("/metrics")

    assert created.status_code == 201
    assert (
        created.json()["token"].startswith("mgt_prometheus_") and "only time it is shown" in created.json()["message"]
    )
    assert [t["name"] for t in listed["tokens"]] == ["ops", "prometheus"] and listed["builtin"] == "admin"
    assert all("token" not in t and "secret_hash" not in t for t in listed["tokens"])
    assert again.status_code == builtin.status_code == 409
    assert "taken by the built-in MEINGYM_ADMIN_TOKEN" in builtin.json()["message"]
    assert scrape.status_code == 200
    stored = AccessToken.get(AccessToken.name == "prometheus")
    assert created.json()["token"] not in (stored.secret_hash, stored.name)
    assert admin.delete("/api/tokens/admin").status_code == 409  # the built-in one is changed in the settings


def test_the_dashboard_shows_only_what_the_scope_may_do(app: FastAPI, db: peewee.Database) -> None:
    failed_job()
    viewer, viewer_csrf = log_in(app, named("viewer", READ))
    operator, _ = log_in(app, named("operator", OPERATE))
    admin, _ = log_in(app, TOKEN)

    pages = {who: (c.get("/admin/jobs").text, c.get(f"/admin/jobs/{SOME_ID}").text) for who, c in
             (("viewer", viewer), ("operator", operator), ("admin", admin))}  # fmt: skip
    forced = viewer.post("/admin/jobs/trigger", data={"action": "update-all-actions", "csrf_token": viewer_csrf})
    access_page = viewer.get("/admin/access")

    jobs_page, job_page = pages["viewer"]
    assert "Trigger a job" not in jobs_page and "Retry all failed" not in jobs_page and ">Retry<" not in job_page
    assert ">Access<" not in jobs_page and "viewer (read)" in jobs_page
    assert "Trigger a job" in pages["operator"][0] and ">Retry<" in pages["operator"][1]
    assert ">Access<" not in pages["operator"][0] and ">Access<" in pages["admin"][0]
    assert forced.status_code == 403 and "this needs the operate scope" in forced.text
    assert access_page.status_code == 403 and "needs the admin scope" in access_page.text
    assert JobRecord.select().count() == 1


# --------------------------------------------------------------------------- sessions


def test_a_session_row_says_who_when_and_from_where(app: FastAPI, db: peewee.Database) -> None:
    with freeze_time("2026-11-30 10:00:00"):
        log_in(app, named("viewer", READ), address="10.0.0.7")

    [session] = AccessSession.select()
    assert session.token_name == "viewer" and session.client == "10.0.0.7"
    assert session.user_agent == "Firefox/140 test"
    assert str(session.created_at) == str(session.last_seen_at) == "2026-11-30 10:00:00"
    listed = client_of(app, TOKEN).get("/api/sessions").json()["sessions"]
    assert [(s["id"], s["token"], s["client"]) for s in listed] == [(session.id, "viewer", "10.0.0.7")]


def test_revoking_a_token_ends_its_sessions_at_once_in_every_worker(app: FastAPI, app_settings: Settings) -> None:
    other_worker = create_app(app_settings, WebSettings(admin_token=TOKEN))
    browser, _ = log_in(app, named("viewer", READ))
    cookie = browser.cookies["meingym_session"]
    elsewhere = client_of(other_worker)
    elsewhere.cookies.set("meingym_session", cookie)
    assert elsewhere.get("/api/jobs").status_code == 200

    revoked = client_of(other_worker, TOKEN).delete("/api/tokens/viewer")

    assert revoked.json() == {"message": "token 'viewer' revoked, 1 session(s) ended", "sessions_ended": 1}
    assert browser.get("/api/jobs").status_code == 401
    assert elsewhere.get("/api/jobs").status_code == 401
    assert browser.get("/admin/jobs").headers["location"] == "/admin/login?next=/admin/jobs"


def test_a_session_revoked_from_the_list_is_refused_at_once(app: FastAPI, db: peewee.Database) -> None:
    victim, csrf = log_in(app, TOKEN, address="192.0.2.10")
    admin, admin_csrf = log_in(app, TOKEN, address="10.0.0.1")
    victim_id = next(s.id for s in AccessSession.select() if s.client == "192.0.2.10")

    page = admin.get("/admin/access").text
    ended = admin.post(f"/admin/sessions/{victim_id}/revoke", data={"csrf_token": admin_csrf})
    gone = client_of(app, TOKEN).delete(f"/api/sessions/{victim_id}")

    assert f"<code>{victim_id}</code>" in page and "192.0.2.10" in page
    assert ended.status_code == 303 and ended.headers["location"] == "/admin/access"
    assert victim.get("/api/jobs").status_code == 401
    write = victim.post("/api/jobs", json={"action": "update-all-actions"}, headers={"X-CSRF-Token": csrf})
    assert write.status_code == 401 and JobRecord.select().count() == 0
    assert admin.get("/api/jobs").status_code == 200  # the other session is untouched
    assert gone.status_code == 404


def test_an_idle_session_ends_and_an_active_one_lasts_until_its_absolute_timeout(
    app_settings: Settings, db: peewee.Database
) -> None:
    app = create_app(app_settings, WebSettings(admin_token=TOKEN, session_ttl=4 * 3600, session_idle=30 * 60))
    server = client_of(app)  # sends the cookie it is given, whatever a browser's jar would do with it

    def ask(cookie: str) -> int:
        return server.get("/api/jobs", headers={"Cookie": f"meingym_session={cookie}"}).status_code

    with freeze_time("2026-11-30 08:00:00") as clock:
        idle = log_in(app, TOKEN)[0].cookies["meingym_session"]
        active = log_in(app, TOKEN)[0].cookies["meingym_session"]
        seen = []
        for _ in range(8):  # a request every 29 minutes: never idle long enough
            clock.tick(timedelta(minutes=29))
            seen.append(ask(active))
        idle_after = ask(idle)
        clock.tick(timedelta(minutes=29))  # 4 h 21 min after login
        active_after = ask(active)

    assert seen == [200] * 8
    assert idle_after == active_after == 401
    assert AccessSession.select().count() == 0  # each was deleted when it was refused


# --------------------------------------------------------------------------- throttling


def test_after_n_failures_an_address_is_refused_while_a_right_token_from_another_address_is_not(
    app: FastAPI, db: peewee.Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="meingym_tasks.access")
    attacker = client_of(app, "wrong-token-0123456789", address="203.0.113.9")
    with freeze_time("2026-11-30 12:00:00") as clock:
        free = [attacker.get("/api/jobs").status_code for _ in range(5)]
        locked = attacker.get("/api/jobs")
        right_from_there = client_of(app, TOKEN, address="203.0.113.9").get("/api/jobs")
        login_from_there = client_of(app, address="203.0.113.9").post("/admin/login", data={"token": TOKEN})
        owner = client_of(app, TOKEN, address="198.51.100.4").get("/api/jobs")
        waits = []
        for _ in range(4):  # each lock over, the next failure locks twice as long
            clock.tick(timedelta(seconds=int(locked.headers["retry-after"])))
            assert attacker.get("/api/jobs").status_code == 401
            locked = attacker.get("/api/jobs")
            waits.append(int(locked.headers["retry-after"]))

    assert free == [401] * 5
    assert locked.status_code == right_from_there.status_code == 429
    assert right_from_there.json()["message"] == "too many failed attempts (address 203.0.113.9); try again in 1 s"
    assert right_from_there.headers["retry-after"] == "1"
    assert login_from_there.status_code == 429 and login_from_there.headers["retry-after"] == "1"
    assert "too many failed attempts" in login_from_there.text and "set-cookie" not in login_from_there.headers
    assert owner.status_code == 200 and "retry-after" not in owner.headers
    assert waits == [2, 4, 8, 16]
    lockouts = [r.getMessage() for r in caplog.records if "locked out" in r.getMessage()]
    assert lockouts[0] == "authentication: address 203.0.113.9 locked out for 1 s after 5 failed attempts"
    assert len(lockouts) == 5  # one line per lockout, none per refused attempt
    assert [e.target for e in audit_rows(action="lockout")] == ["address 203.0.113.9"] * 5


def test_nothing_waits_a_locked_address_is_answered_at_once_and_so_is_everyone_else(
    app: FastAPI, db: peewee.Database
) -> None:
    """The real clock: locks are refusals, never sleeps, so neither side ties up a worker."""
    attacker = client_of(app, "wrong-token-0123456789", address="203.0.113.9")
    owner = client_of(app, TOKEN, address="198.51.100.4")
    owner.get("/api/jobs")  # warm: the first request builds the app's caches
    for _ in range(5):
        attacker.get("/api/jobs")

    started = time.monotonic()
    refused = attacker.get("/api/jobs")
    refused_after = time.monotonic() - started
    started = time.monotonic()
    served = owner.get("/api/jobs")
    served_after = time.monotonic() - started

    assert refused.status_code == 429 and served.status_code == 200
    assert refused_after < 0.5 and served_after < 0.5  # the lock is 1 s: a sleep would show


def test_failures_add_up_across_workers_and_a_success_does_not_reset_them(
    app: FastAPI, app_settings: Settings, db: peewee.Database
) -> None:
    """Else anyone holding one valid token could alternate four guesses with a success and never be locked."""
    other_worker = create_app(app_settings, WebSettings(admin_token=TOKEN))
    with freeze_time("2026-11-30 12:00:00") as clock:
        for worker in (app, other_worker, app, other_worker):
            assert client_of(worker, "nope-nope-nope-nope", address="10.9.8.7").get("/api/queues").status_code == 401
        served = client_of(app, TOKEN, address="10.9.8.7").get("/api/queues")
        fifth = client_of(other_worker, "nope-nope-nope-nope", address="10.9.8.7").get("/api/queues")
        refused = client_of(app, TOKEN, address="10.9.8.7").get("/api/queues")  # locked, right token or not
        clock.tick(2)
        after_the_lock = client_of(app, TOKEN, address="10.9.8.7").get("/api/queues")

    assert served.status_code == 200
    assert fifth.status_code == 401 and refused.status_code == 429
    assert after_the_lock.status_code == 200


def test_a_token_name_under_attack_refuses_addresses_that_failed_but_not_its_owner(
    app: FastAPI, db: peewee.Database
) -> None:
    viewer = named("viewer", READ)
    guess = "mgt_viewer_" + "A" * 43
    with freeze_time("2026-11-30 12:00:00"):
        for n in range(20):  # a distributed guesser: one attempt per address
            assert client_of(app, guess, address=f"10.1.0.{n}").get("/api/jobs").status_code == 401
        again = client_of(app, guess, address="10.1.0.3").get("/api/jobs")
        right_from_an_attacker = client_of(app, viewer, address="10.1.0.3").get("/api/jobs")
        owner = client_of(app, viewer, address="10.2.0.1").get("/api/jobs")
        other_token = client_of(app, TOKEN, address="10.1.0.3").get("/api/jobs")

    assert again.status_code == right_from_an_attacker.status_code == 429
    assert again.json()["message"] == "too many failed attempts (token 'viewer'); try again in 1 s"
    assert owner.status_code == 200
    assert other_token.status_code == 200  # only the attacked name is closed to them


def test_failed_attempts_and_lockouts_are_metrics(app: FastAPI, db: peewee.Database) -> None:
    with freeze_time("2026-11-30 12:00:00"):
        for _ in range(6):
            client_of(app, "not-the-token-0000", address="10.3.3.3").get("/metrics")
        client_of(app, address="10.4.4.4").post("/admin/login", data={"token": "also-wrong-000000"})
        text = client_of(app, TOKEN, address="10.5.5.5").get("/metrics").text

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("meingym_auth_failures_total", (("via", "bearer"),))] == 5  # the sixth was refused unchecked
    assert samples[("meingym_auth_failures_total", (("via", "login"),))] == 1
    assert samples[("meingym_auth_lockouts_total", (("kind", "address"),))] == 1
    assert samples[("meingym_auth_locked", (("kind", "address"),))] == 1


# --------------------------------------------------------------------------- the audit trail


def test_every_state_changing_action_of_the_api_and_the_dashboard_is_audited_with_its_actor(
    app: FastAPI, db: peewee.Database
) -> None:
    operator = client_of(app, named("deploy-bot", OPERATE), address="10.0.0.5")
    admin = client_of(app, TOKEN, address="10.0.0.6")
    failed_job()
    failed_job(str(uuid.uuid4()))
    browser, csrf = log_in(app, TOKEN, address="10.0.0.7")

    job = operator.post("/api/jobs", json={"action": "process-user-data", "user_id": 7, "delay": 60}).json()["job_id"]
    operator.post(f"/api/jobs/{job}/cancel")
    operator.post(f"/api/jobs/{job}/cancel")  # refused: revoked already
    operator.post(f"/api/jobs/{SOME_ID}/retry")
    browser.post("/admin/jobs/retry-failed", data={"queue": "users-processing", "csrf_token": csrf})
    browser.post("/admin/jobs/trigger", data={"action": "update-all-actions", "csrf_token": csrf})
    admin.post("/api/jobs/purge", json={"state": "complete", "older_than": 3600})
    admin.post("/api/tokens", json={"name": "temp", "scope": "read"})
    admin.delete("/api/tokens/temp")
    browser.post("/admin/logout", data={"csrf_token": csrf})

    trail = [(e.action, e.actor, e.via, e.client, e.outcome) for e in audit_rows()]
    assert trail == [
        ("login", "admin", "dashboard", "10.0.0.7", "ok"),
        ("trigger", "deploy-bot", "api", "10.0.0.5", "ok"),
        ("cancel", "deploy-bot", "api", "10.0.0.5", "ok"),
        ("cancel", "deploy-bot", "api", "10.0.0.5", "refused"),
        ("retry", "deploy-bot", "api", "10.0.0.5", "ok"),
        ("retry", "admin", "dashboard", "10.0.0.7", "ok"),  # the other failed job, by retry-all
        ("retry-all", "admin", "dashboard", "10.0.0.7", "ok"),
        ("trigger", "admin", "dashboard", "10.0.0.7", "ok"),
        ("purge", "admin", "api", "10.0.0.6", "ok"),
        ("token.create", "admin", "api", "10.0.0.6", "ok"),
        ("token.revoke", "admin", "api", "10.0.0.6", "ok"),
        ("logout", "admin", "dashboard", "10.0.0.7", "ok"),
    ]
    [trigger] = audit_rows(action="trigger", actor="deploy-bot")
    assert trigger.target == job
    assert trigger.detail == {"arguments": {"user_id": 7}, "deduplicated": False, "delay": 60.0, "eta": None,
                              "job": "process-user-data"}  # fmt: skip
    assert "is revoked; only" in audit_rows(outcome="refused")[0].message
    assert audit_rows(action="retry-all")[0].detail == {"retried": 1, "more": False}
    assert all("mgt_" not in (e.message or "") + str(e.detail) for e in audit_rows())  # no token in clear


def test_a_jobs_page_and_its_api_record_say_who_acted_on_it(app: FastAPI, db: peewee.Database) -> None:
    operator = client_of(app, named("deploy-bot", OPERATE), address="10.0.0.5")
    job = operator.post("/api/jobs", json={"action": "send-welcome-email", "user_id": 7, "delay": 60}).json()["job_id"]
    operator.post(f"/api/jobs/{job}/cancel")
    browser, _ = log_in(app, named("viewer", READ))

    record = client_of(app, TOKEN).get(f"/api/jobs/{job}").json()
    page = browser.get(f"/admin/jobs/{job}").text

    assert [(e["action"], e["actor"], e["client"], e["outcome"]) for e in record["audit"]] == [
        ("cancel", "deploy-bot", "10.0.0.5", "ok"),
        ("trigger", "deploy-bot", "10.0.0.5", "ok"),
    ]
    assert "Who acted on it" in page and "deploy-bot" in page and "10.0.0.5" in page
    assert page.index(">cancel<") < page.index(">trigger<")  # newest first


def test_the_audit_api_filters_and_pages_newest_first(app: FastAPI, db: peewee.Database) -> None:
    admin = client_of(app, TOKEN)
    for n in range(5):
        admin.post("/api/tokens", json={"name": f"t{n}", "scope": "read"})

    first = admin.get("/api/audit", params={"action": "token.create", "limit": 2}).json()
    second = admin.get("/api/audit", params={"action": "token.create", "limit": 2, "before": first["next"]}).json()
    by_target = admin.get("/api/audit", params={"target": "t3"}).json()
    reader = client_of(app, named("viewer", READ)).get("/api/audit")

    assert [e["target"] for e in first["entries"] + second["entries"]] == ["t4", "t3", "t2", "t1"]
    assert [e["target"] for e in by_target["entries"]] == ["t3"] and by_target["next"] is None
    assert reader.status_code == 403 and reader.json()["missing_scope"] == "admin"


def test_a_trigger_the_broker_refused_is_audited_as_failed_and_never_as_ok(
    make_settings: Any, database_url: str, db: peewee.Database, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")  # the broker's file would be inside a file: SQLite cannot open it
    settings = make_settings(MEINGYM_BROKER_URL=f"sqlite:///{blocker}/queue.db", DATABASE_URL=database_url)
    try:
        client = client_of(create_app(settings, WebSettings(admin_token=TOKEN)), TOKEN)

        response = client.post("/api/jobs", json={"action": "update-all-actions"})
    finally:
        from meingym_tasks.queue import queues

        queues.reset()

    assert response.status_code == 503
    assert [(e.action, e.target, e.outcome) for e in audit_rows()] == [
        ("trigger", "update-all-actions", "failed")  # the ok entry rolled back with the job's record
    ]
    assert audit_rows()[0].message.startswith("BrokerUnavailable: the queue broker is unavailable")
