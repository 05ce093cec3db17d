"""Authentication on every route, the session cookie, CSRF, security headers, body limits, escaping.

Scopes, server-side sessions, throttling and the audit trail: tests/test_web_access.py.
"""

from __future__ import annotations

import re
import stat
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import peewee
import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from freezegun import freeze_time
from starlette.routing import Mount, Route

from meingym_tasks.access.models import AccessSession
from meingym_tasks.cli.main import cli
from meingym_tasks.clock import utcnow
from meingym_tasks.exceptions import ConfigurationError
from meingym_tasks.queue import queues
from meingym_tasks.registry.models import JobAttempt, JobRecord
from meingym_tasks.settings import Settings
from meingym_tasks.web import WebSettings, create_app
from meingym_tasks.web.auth import PUBLIC_PATHS, tokens_equal
from meingym_tasks.web.permissions import READ, needs

TOKEN = "test-admin-token-0123456789"
SOME_ID = "3f2b8c1e-5d6a-4c1b-9a7d-0e1f2a3b4c5d"
#: Routes that answer without the token: the probes, and the login page (the way to give the token).
PUBLIC_ROUTES = {"/healthz", "/readyz", "/admin/login"}
#: The only packaged files served without the token: what the login page itself needs.
PUBLIC_STATIC = {"/static/meingym.css", "/static/login.js"}


@pytest.fixture
def broker_url(tmp_path: Path) -> str:
    """Security does not depend on the backends (tests/test_web_api.py runs on all): the embedded ones here."""
    return f"sqlite:///{tmp_path / 'data' / 'queue.db'}"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'meingym.db'}"


@pytest.fixture
def app(app_settings: Settings) -> FastAPI:
    return create_app(app_settings, WebSettings(admin_token=TOKEN, max_body_bytes=4096))


@pytest.fixture
def anonymous(app: FastAPI) -> TestClient:
    return TestClient(app, follow_redirects=False)


def log_in(client: TestClient) -> str:
    """Log ``client`` in through the login form; returns the CSRF token of the session."""
    response = client.post("/admin/login", data={"token": TOKEN, "next": "/admin/jobs"})
    assert response.status_code == 303, response.text
    page = client.get("/admin/jobs")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


def route_table(app: FastAPI) -> list[tuple[object, str, set[str] | None]]:
    """(route, path, methods) of every route, also those of included routers."""
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI >= 0.16x includes routers lazily
    except ImportError:  # pragma: no cover - older FastAPI: app.routes is already flat
        return [(r, getattr(r, "path", ""), getattr(r, "methods", None)) for r in app.routes]
    return [(c.original_route, c.path or "", c.methods) for c in iter_route_contexts(app.routes)]


def every_request(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path) of every route in the app's route table, path parameters filled in."""
    for route, path, methods in route_table(app):
        if isinstance(route, Mount):
            for name in ("dashboard.js", "docs.js", "meingym.css", "login.js", "no-such-file.js"):
                yield "GET", f"{path}/{name}"
        elif isinstance(route, APIRoute | Route):
            filled = re.sub(r"\{[^}]+\}", SOME_ID, path)
            for method in sorted(methods or {"GET"}):
                yield method, filled
        else:
            raise AssertionError(f"a route of an unknown kind: {route!r}")


def is_public(path: str) -> bool:
    return path in PUBLIC_ROUTES or path in PUBLIC_STATIC


# --------------------------------------------------------------------------- every route needs the token


def test_no_route_but_the_probes_and_the_login_page_answers_without_the_token(app: FastAPI) -> None:
    anonymous = TestClient(app, follow_redirects=False)
    requests = list(every_request(app))
    paths = {path for _, path in requests}
    assert {"/api/jobs", "/api/queues", "/metrics", "/openapi.json", "/docs", "/admin/jobs"} <= paths

    for method, path in requests:
        response = anonymous.request(method, path)
        if is_public(path):  # answered by the route itself (the login form rejects an empty token with 401)
            assert "www-authenticate" not in response.headers, (method, path)
            assert response.status_code in (200, 401), (method, path, response.status_code)
            continue
        if response.status_code == 303:  # a page or a dashboard form: sent to the login form, nothing done
            assert response.headers["location"].startswith("/admin/login?next="), (method, path)
            assert method in ("GET", "HEAD") or path.startswith("/admin/"), (method, path)
        else:
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.headers["www-authenticate"].startswith("Bearer")
            if method != "HEAD":
                assert set(response.json()) == {"message"}, (method, path)
    assert PUBLIC_PATHS == PUBLIC_ROUTES | PUBLIC_STATIC


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {TOKEN[:-1]}x", f"Bearer {TOKEN}x", "Bearer ", f"Basic {TOKEN}", TOKEN, f"bearer  {TOKEN[:-2]}"],
)
def test_a_wrong_token_is_refused_everywhere(app_settings: Settings, authorization: str) -> None:
    # Enough free failures for the walk: after five, one address is locked out (test_web_access.py).
    app = create_app(app_settings, WebSettings(admin_token=TOKEN, max_body_bytes=4096, auth_max_failures=1000))
    client = TestClient(app, headers={"Authorization": authorization}, follow_redirects=False)

    for method, path in every_request(app):
        if not is_public(path):
            response = client.request(method, path)
            assert response.status_code == 401, (method, path)
            assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_the_right_token_opens_every_route(app: FastAPI, db: peewee.Database) -> None:
    client = TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}, follow_redirects=False)

    for method, path in every_request(app):
        if not is_public(path):
            response = client.request(method, path)
            assert response.status_code not in (401, 403), (method, path, response.text)


def test_tokens_are_compared_by_digest_in_constant_time() -> None:
    assert tokens_equal(TOKEN, TOKEN)
    assert not tokens_equal(TOKEN + "x", TOKEN)
    assert not tokens_equal("", TOKEN)
    assert not tokens_equal("\udcff", TOKEN)  # undecodable input is just wrong, not an error


# --------------------------------------------------------------------------- the session cookie


def test_login_sets_a_random_httponly_samesite_strict_cookie_of_a_session_row(anonymous: TestClient) -> None:
    wrong = anonymous.post("/admin/login", data={"token": "nope", "next": "/admin/jobs"})
    right = anonymous.post("/admin/login", data={"token": TOKEN, "next": "/admin/jobs?state=failed"})

    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    assert "That token is not valid." in wrong.text
    assert right.status_code == 303
    assert right.headers["location"] == "/admin/jobs?state=failed"
    cookie = right.headers["set-cookie"]
    assert re.match(r"meingym_session=[A-Za-z0-9_-]{43};", cookie)
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie and "Max-Age=43200" in cookie
    assert TOKEN not in cookie
    [session] = AccessSession.select()
    assert session.token_name == "admin" and session.client == "testclient"
    assert anonymous.cookies["meingym_session"] not in (session.id, session.secret_hash)  # only its digest is stored
    assert anonymous.get("/admin/jobs").status_code == 200
    assert anonymous.get("/api/jobs").status_code == 200  # the API takes the session too (reads)


def test_a_tampered_unknown_or_expired_session_is_refused(app: FastAPI, anonymous: TestClient) -> None:
    log_in(anonymous)
    value = anonymous.cookies["meingym_session"]

    anonymous.cookies.set("meingym_session", value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    tampered = anonymous.get("/api/jobs")
    anonymous.cookies.set("meingym_session", "A" * 43)
    unknown = anonymous.get("/api/jobs")
    anonymous.cookies.set("meingym_session", value)
    with freeze_time(timedelta(minutes=20), tick=True):  # in use within the idle timeout: still on
        anonymous.get("/api/jobs")
        with freeze_time(timedelta(hours=12, seconds=5)):  # past the absolute timeout, used or not
            expired = anonymous.get("/api/jobs")

    assert tampered.status_code == unknown.status_code == expired.status_code == 401
    assert AccessSession.select().count() == 0  # the expired one was deleted when it was presented


def test_a_form_posted_after_the_session_ended_leads_to_the_login_page(anonymous: TestClient) -> None:
    response = anonymous.post("/admin/jobs/trigger", data={"action": "update-all-actions", "csrf_token": "old"})

    assert response.status_code == 303
    assert response.headers["location"] == "/admin/login?next=/admin/jobs"
    assert JobRecord.select().count() == 0


def test_logout_needs_the_csrf_token_and_ends_the_session(anonymous: TestClient) -> None:
    csrf = log_in(anonymous)
    old_cookie = anonymous.cookies["meingym_session"]

    refused = anonymous.post("/admin/logout")
    done = anonymous.post("/admin/logout", data={"csrf_token": csrf})

    assert refused.status_code == 403
    assert done.status_code == 303 and done.headers["location"] == "/admin/login"
    assert 'meingym_session=""' in done.headers["set-cookie"] and "Max-Age=0" in done.headers["set-cookie"]
    assert anonymous.get("/admin/jobs").headers["location"] == "/admin/login?next=/admin/jobs"
    # The cookie kept by an attacker (or a second tab) is refused at once: the session row is gone.
    anonymous.cookies.set("meingym_session", old_cookie)
    read = anonymous.get("/api/jobs")
    write = anonymous.post("/api/jobs", json={"action": "update-all-actions"}, headers={"X-CSRF-Token": csrf})
    assert read.status_code == write.status_code == 401
    assert JobRecord.select().count() == 0


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "evil", ""])
def test_login_never_redirects_off_site(anonymous: TestClient, target: str) -> None:
    response = anonymous.post("/admin/login", data={"token": TOKEN, "next": target})

    assert response.headers["location"] == "/admin/jobs"


def test_a_cross_site_login_is_refused(anonymous: TestClient) -> None:
    response = anonymous.post("/admin/login", data={"token": TOKEN}, headers={"Sec-Fetch-Site": "cross-site"})

    assert response.status_code == 403 and "set-cookie" not in response.headers


def test_a_link_from_another_site_reloads_the_login_page_to_send_the_strict_cookie(anonymous: TestClient) -> None:
    log_in(anonymous)
    cookie = anonymous.cookies["meingym_session"]
    anonymous.cookies.clear()  # what a browser sends on a cross-site navigation: no SameSite=Strict cookie

    page = anonymous.get("/admin/login?next=/admin/jobs", headers={"Sec-Fetch-Site": "cross-site"})
    anonymous.cookies.set("meingym_session", cookie)
    reloaded = anonymous.get("/admin/login?next=/admin/jobs", headers={"Sec-Fetch-Site": "same-origin"})

    assert '<meta http-equiv="refresh" content="0">' in page.text
    assert reloaded.status_code == 303 and reloaded.headers["location"] == "/admin/jobs"


# --------------------------------------------------------------------------- CSRF


def test_dashboard_forms_need_the_sessions_csrf_token(anonymous: TestClient) -> None:
    csrf = log_in(anonymous)
    form = {"action": "update-all-actions"}

    missing = anonymous.post("/admin/jobs/trigger", data=form)
    wrong = anonymous.post("/admin/jobs/trigger", data={**form, "csrf_token": csrf[:-1] + "x"})
    twice = anonymous.post("/admin/jobs/trigger", data={**form, "csrf_token": [csrf, csrf]})
    cross_site = anonymous.post(
        "/admin/jobs/trigger", data={**form, "csrf_token": csrf}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    right = anonymous.post("/admin/jobs/trigger", data={**form, "csrf_token": csrf})

    assert [r.status_code for r in (missing, wrong, twice, cross_site)] == [403, 403, 403, 403]
    assert JobRecord.select().count() == 1
    assert right.status_code == 303 and "/admin/jobs/" in right.headers["location"]


def test_the_api_with_a_session_cookie_needs_the_csrf_header_for_changes(anonymous: TestClient) -> None:
    csrf = log_in(anonymous)
    body = {"action": "update-all-actions"}

    without = anonymous.post("/api/jobs", json=body)
    with_header = anonymous.post("/api/jobs", json=body, headers={"X-CSRF-Token": csrf})
    bearer = TestClient(anonymous.app, headers={"Authorization": f"Bearer {TOKEN}"}).post("/api/jobs", json=body)

    assert without.status_code == 403
    assert with_header.status_code == bearer.status_code == 202


# --------------------------------------------------------------------------- headers, limits, escaping


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/admin/login", 200),
        ("GET", "/admin/jobs", 303),
        ("GET", "/api/jobs", 401),
        ("GET", "/healthz", 200),
        ("GET", "/static/login.js", 200),
        ("POST", "/api/jobs", 401),
    ],
)
def test_every_answer_carries_the_security_headers(anonymous: TestClient, method: str, path: str, status: int) -> None:
    response = anonymous.request(method, path)

    assert response.status_code == status
    assert_security_headers(response)


def assert_security_headers(response: Any) -> None:
    csp = response.headers["content-security-policy"]
    script_src = re.search(r"script-src ([^;]+)", csp)
    assert script_src and script_src.group(1) == "'self'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "cache-control" in response.headers


def test_a_server_error_carries_the_security_headers_and_says_nothing_more(app: FastAPI) -> None:
    def boom() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/api/boom", boom, dependencies=[needs(READ)])
    client = TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}, raise_server_exceptions=False)

    response = client.get("/api/boom")
    page = client.get("/admin/jobs/not-a-job/..%2f..%2fapi/boom")  # a 404 page, for contrast

    assert response.status_code == 500
    assert response.json() == {"message": "internal server error; the reason is in the server's log"}
    assert "secret internals" not in response.text
    assert_security_headers(response)
    assert response.headers["cache-control"] == "no-store"
    assert_security_headers(page)


def test_head_answers_wherever_get_does_and_405_where_it_does_not(app: FastAPI) -> None:
    client = TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"})

    get, head = client.get("/api/queues"), client.head("/api/queues")
    probe = TestClient(app).head("/healthz")
    post_only = client.head(f"/api/jobs/{SOME_ID}/retry")

    assert get.status_code == head.status_code == probe.status_code == 200
    assert head.content == b"" and head.headers["content-type"] == "application/json"
    assert head.headers["content-length"] == get.headers["content-length"]
    assert_security_headers(head)
    assert post_only.status_code == 405 and post_only.headers["allow"] == "POST"


def test_urls_come_from_the_public_address_never_from_the_host_header(app_settings: Settings) -> None:
    app = create_app(app_settings, WebSettings(admin_token=TOKEN, public_url="https://jobs.meingym.example"))
    evil = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "Authorization": f"Bearer {TOKEN}"}
    client = TestClient(app, headers=evil, follow_redirects=False)

    created = client.post("/api/jobs", json={"action": "process-user-data", "user_id": 7})
    client.post("/api/jobs", json={"action": "process-user-data", "user_id": 8})
    page = client.get("/api/jobs", params={"limit": 1})
    browser = TestClient(app, headers={"Host": "evil.example"}, follow_redirects=False)
    browser.post("/admin/login", data={"token": TOKEN})
    dashboard = browser.get("/admin/jobs")
    home = browser.get("/admin")

    job_url = f"https://jobs.meingym.example/api/jobs/{created.json()['job_id']}"
    assert created.headers["location"] == created.json()["url"] == job_url
    assert page.json()["next_url"].startswith("https://jobs.meingym.example/api/jobs?limit=1&cursor=")
    assert "evil.example" not in dashboard.text and 'href="/static/meingym.css"' in dashboard.text
    assert home.headers["location"] == "/admin/jobs"


def test_pages_carry_no_inline_script_or_style(anonymous: TestClient) -> None:
    log_in(anonymous)

    for path in ("/admin/jobs", "/admin/login", "/docs"):
        html = anonymous.get(path, follow_redirects=True).text
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path
        assert " style=" not in html and "<style" not in html, path
        assert not re.search(r"\son[a-z]+=", html), path


def test_the_docs_page_uses_only_packaged_files(anonymous: TestClient) -> None:
    log_in(anonymous)

    page = anonymous.get("/docs")
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assets = [anonymous.get(url) for url in urls if url.startswith("/docs/assets/")]

    assert page.status_code == 200
    assert all(url.startswith(("/", "data:")) and not url.startswith("//") for url in urls), urls
    assert [a.status_code for a in assets] == [200, 200]
    assert "SwaggerUIBundle" in assets[1].text or "SwaggerUIBundle" in assets[0].text
    assert anonymous.get("/openapi.json").json()["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert anonymous.get("/docs/assets/package.json").status_code == 404


def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(app: FastAPI) -> None:
    client = TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"})
    big = b'{"action": "update-all-actions", "pad": "' + b"x" * 5000 + b'"}'

    declared = client.post("/api/jobs", content=big, headers={"Content-Type": "application/json"})
    streamed = client.post(
        "/api/jobs", content=iter([big[:3000], big[3000:]]), headers={"Content-Type": "application/json"}
    )
    login = TestClient(app).post("/admin/login", data={"token": "x" * 5000})

    for response in (declared, streamed, login):
        assert response.status_code == 413
        assert response.json() == {"message": "request body too large; at most 4096 bytes are accepted"}
        assert response.headers["x-frame-options"] == "DENY"
    assert JobRecord.select().count() == 0


def test_html_in_arguments_names_and_errors_shows_as_text(anonymous: TestClient, db: peewee.Database) -> None:
    payload = "<script>alert(1)</script>"
    now = utcnow()
    job_id = str(uuid.uuid4())
    JobRecord.create(
        job_id=job_id, queue="users-processing", name="<b>process-user-data</b>", state="failed",
        arguments={"args": [payload], "kwargs": {"note": "<img src=x onerror=alert(2)>"}}, attempts=1,
        enqueued_at=now, started_at=now, finished_at=now, updated_at=now, error=f"ValueError: {payload}",
        result={"html": "</pre><script>alert(3)</script>"}, consumer="<i>host</i>:1",
    )  # fmt: skip
    JobAttempt.create(
        job_id=job_id, attempt=1, error=f"ValueError: {payload}", traceback=f"Traceback\n  {payload}", failed_at=now
    )
    log_in(anonymous)

    detail = anonymous.get(f"/admin/jobs/{job_id}").text
    table = anonymous.get("/admin/jobs?state=failed").text

    for html in (detail, table):
        assert "<script>alert" not in html and "<b>process" not in html and "<img src=x" not in html
        assert "&lt;b&gt;process-user-data&lt;/b&gt;" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail
    assert "&lt;/pre&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in detail
    assert "&lt;img src=x onerror=alert(2)&gt;" in detail
    assert "&lt;i&gt;host&lt;/i&gt;:1" in detail


# --------------------------------------------------------------------------- the token itself


def test_without_a_configured_token_one_is_generated_once_with_mode_0600(
    app_settings: Settings, db: peewee.Database
) -> None:
    first = create_app(app_settings, WebSettings())
    path = app_settings.data_dir / "admin.token"
    token = path.read_text().strip()
    second = create_app(app_settings, WebSettings())

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 40
    for app in (first, second):
        client = TestClient(app, headers={"Authorization": f"Bearer {token}"})
        assert client.get("/api/jobs").status_code == 200
        assert TestClient(app).get("/api/jobs").status_code == 401  # never open by default


@pytest.mark.parametrize("value", ["short", "has a space in it, long enough", "tab\tseparated-but-long-enough"])
def test_a_weak_admin_token_is_a_configuration_error_that_does_not_echo_it(value: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^MEINGYM_ADMIN_TOKEN \(\d+ characters\) is not allowed") as error:
        WebSettings.from_env({"MEINGYM_ADMIN_TOKEN": value})

    assert value not in str(error.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MEINGYM_WEB_MAX_BODY": "10"}, "MEINGYM_WEB_MAX_BODY='10' is not allowed; expected a whole number from 1024"),
        ({"MEINGYM_WEB_SESSION_TTL": "soon"}, "MEINGYM_WEB_SESSION_TTL='soon' is not allowed; expected a whole"),
    ],
)
def test_bad_web_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        WebSettings.from_env(env)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, object]]]:
    """Calls to uvicorn.run, which the web command makes instead of serving."""
    import uvicorn

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append({"app": app, **options}))
    yield calls
    queues.reset()


def test_the_web_command_prints_the_login_url_and_where_the_token_is(
    served: list[dict[str, object]], make_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    env = {**make_env(), "MEINGYM_ADMIN_TOKEN": ""}

    result = CliRunner().invoke(cli, ["web", "--host", "0.0.0.0", "--port", "8123"], env=env)

    token_file = Path(env["MEINGYM_DATA_DIR"]) / "admin.token"
    assert result.exit_code == 0, result.output
    assert "log in at http://127.0.0.1:8123/admin/login with the token in " + str(token_file) in result.output
    assert token_file.read_text().strip() not in result.output  # not a terminal: the token stays in its file
    assert served[0]["host"] == "0.0.0.0" and served[0]["port"] == 8123


def test_the_web_command_reads_host_and_port_from_the_environment(
    served: list[dict[str, object]], make_env: Callable[..., dict[str, str]]
) -> None:
    env = make_env(MEINGYM_ADMIN_TOKEN=TOKEN, MEINGYM_WEB_HOST="::1", MEINGYM_WEB_PORT="9001")

    result = CliRunner().invoke(cli, ["web"], env=env)

    assert result.exit_code == 0, result.output
    assert "log in at http://[::1]:9001/admin/login with the token in MEINGYM_ADMIN_TOKEN" in result.output
    assert served[0]["host"] == "::1" and served[0]["port"] == 9001


def test_the_web_command_stops_on_a_bad_token_setting(
    served: list[dict[str, object]], make_env: Callable[..., dict[str, str]]
) -> None:
    result = CliRunner().invoke(cli, ["web"], env=make_env(MEINGYM_ADMIN_TOKEN="short"))

    assert result.exit_code == 2
    assert "Error: MEINGYM_ADMIN_TOKEN (5 characters) is not allowed" in result.output
    assert served == []


def test_every_web_setting_is_documented_in_the_example_configuration() -> None:
    from meingym_tasks.web import config

    source = Path(config.__file__).read_text()
    read = set(re.findall(r'"(MEINGYM_[A-Z_]+)"', source)) - {"MEINGYM_CONFIG"}
    example = Path(__file__).parent.parent / "config" / "meingym-tasks.env.example"
    documented = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", example.read_text(), re.MULTILINE))

    assert read == {
        "MEINGYM_ADMIN_TOKEN",
        "MEINGYM_WEB_MAX_BODY",
        "MEINGYM_WEB_SESSION_TTL",
        "MEINGYM_WEB_SESSION_IDLE",
        "MEINGYM_PUBLIC_URL",
        "MEINGYM_WEB_HOST",
        "MEINGYM_WEB_PORT",
        "MEINGYM_AUTH_MAX_FAILURES",
        "MEINGYM_AUTH_LOCKOUT_MAX",
    }
    assert read <= documented
    assert WebSettings.from_env({}) == WebSettings()  # the documented defaults are the defaults


def test_mounted_in_a_host_application_paths_links_and_the_cookie_follow_the_prefix(app: FastAPI) -> None:
    host = FastAPI()
    host.mount("/tasks", app)
    client = TestClient(host, follow_redirects=False)

    page = client.get("/tasks/admin/jobs")
    login = client.post("/tasks/admin/login", data={"token": TOKEN, "next": "/admin/jobs"})
    dashboard = client.get("/tasks/admin/jobs")
    api = client.get("/tasks/api/jobs", headers={"Authorization": f"Bearer {TOKEN}"})

    assert page.headers["location"] == "/tasks/admin/login?next=/admin/jobs"
    assert login.headers["location"] == "/tasks/admin/jobs"
    assert "Path=/tasks" in login.headers["set-cookie"]
    assert dashboard.status_code == 200
    assert 'href="/tasks/static/meingym.css"' in dashboard.text
    assert 'data-api-queues="/tasks/api/queues"' in dashboard.text
    assert api.status_code == 200
    assert TestClient(host).get("/tasks/healthz").status_code == 200
    assert TestClient(host).get("/tasks/api/jobs").status_code == 401
