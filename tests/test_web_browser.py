"""The dashboard in a real headless Chromium, against a real uvicorn server and real consumers.

Debian's ``chromium`` package driven by the ``playwright`` package (its own browser
download cannot work here; ``.ci/run`` installs the Debian package). Without
chromium these tests skip with a reason, unless ``MEINGYM_TEST_REQUIRE_SERVICES=1``.
Screenshots go to ``test-artifacts/web/``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import peewee
import pytest
import uvicorn
from fastapi import FastAPI

from meingym_tasks.domain.models import User
from meingym_tasks.domain.seed import seed_demo_data
from meingym_tasks.queue import queues
from meingym_tasks.settings import Settings
from meingym_tasks.web import WebSettings, create_app
from tests.helpers import REQUIRE_SERVICES, free_port, running_consumers

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "browser-test-token-0123456789"
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts" / "web"
WAIT_MS = 60_000


def _browser_problem() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    problem = _browser_problem()
    if problem:
        if REQUIRE_SERVICES:
            pytest.fail(problem + " (MEINGYM_TEST_REQUIRE_SERVICES=1)")
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """``app`` on a real uvicorn server on a free loopback port, in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


class Watched:
    """A page whose console errors, uncaught exceptions and requests off the server are recorded."""

    def __init__(self, browser: Any, base: str, width: int = 1360, height: int = 900) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on("dialog", lambda dialog: dialog.accept())  # the confirmations of destructive actions
        self.context.route("**/*", self._only_our_server(base))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.problems.append(f"console error: {message.text} at {message.location}")

    def _only_our_server(self, base: str) -> Callable[[Any], None]:
        def handle(route: Any) -> None:
            url = route.request.url
            if url.startswith(base + "/") or url.startswith("data:"):
                route.continue_()
            else:
                self.problems.append(f"request off the server: {url}")
                route.abort()

        return handle

    def close(self) -> None:
        self.context.close()


def count(page: Any, queue: str, state: str) -> int:
    return int(page.locator(f'.counts [data-count="{queue}|{state}"]').inner_text())


def wait_for_counts(page: Any, expected: dict[str, int], timeout: int = WAIT_MS) -> None:
    """Wait until the live counts on the page (``"queue|state": n``) show ``expected``, without a reload."""
    page.wait_for_function(
        """expected => Object.entries(expected).every(([key, n]) =>
             Number(document.querySelector(`.counts [data-count="${key}"]`).textContent) === n)""",
        arg=expected,
        timeout=timeout,
    )


def log_in(page: Any, base: str) -> None:
    page.goto(base + "/admin/jobs")
    assert page.url.startswith(base + "/admin/login?next=")
    page.get_by_label("Admin token").fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(base + "/admin/jobs")


def trigger(page: Any, base: str, action: str, user_id: int | None = None, delay: int | None = None) -> str:
    """Trigger a job with the dashboard's form; returns its id (the form leads to the job's page)."""
    page.goto(base + "/admin/jobs")
    page.get_by_label("Job", exact=True).select_option(action)
    if user_id is not None:
        page.get_by_label("User ID").fill(str(user_id))
    if delay is not None:
        page.get_by_label("Delay (seconds)").fill(str(delay))
    page.get_by_role("button", name="Trigger").click()
    page.wait_for_url(re.compile(r".*/admin/jobs/[0-9a-f-]{36}$"))
    assert f"{action} enqueued as" in page.locator(".flash").inner_text()
    return str(page.url.rsplit("/", 1)[1])


def artifact(request: pytest.FixtureRequest, name: str) -> Path:
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


@pytest.mark.parametrize(("broker_url", "database_url"), [("sqlite", "sqlite"), ("redis", "postgres")], indirect=True)
def test_an_operator_logs_in_triggers_watches_live_counts_and_retries_a_failure(
    browser: Any, app_env: dict[str, str], db: peewee.Database, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = {**app_env, "MEINGYM_UPDATE_BATCH_SIZE": "100"}
    settings = Settings.from_env(env)
    seed_demo_data(users=3, actions=1_000, seed=7)  # ten batches of 100
    app = create_app(settings, WebSettings(admin_token=TOKEN))
    try:
        with serving(app) as base:
            watched = Watched(browser, base)
            page = watched.page
            log_in(page, base)

            # Nothing runs yet (no consumer): trigger a run, a job that will fail and one for later.
            run_id = trigger(page, base, "update-all-actions")
            assert page.locator("[data-state] .badge").inner_text() == "queued"
            failing_id = trigger(page, base, "process-user-data", user_id=4242)
            later_id = trigger(page, base, "send-welcome-email", user_id=1, delay=600)

            page.get_by_role("button", name="Cancel").click()  # accepted in the confirmation dialog
            assert "cancelled: it will not run" in page.locator(".flash").inner_text()
            assert page.locator("[data-state] .badge").inner_text() == "revoked"

            page.goto(base + "/admin/jobs")
            page.evaluate("window.stillTheSamePage = true")
            assert count(page, "actions-processing", "queued") == 1
            assert count(page, "users-processing", "queued") == 1
            assert count(page, "actions-processing", "complete") == 0

            with running_consumers(env, tmp_path / "logs"):
                # The run (its ten batches and the finishing step too) completes and the unknown user's job
                # fails; the counts show it without the page reloading.
                wait_for_counts(
                    page,
                    {
                        "actions-processing|queued": 0,
                        "actions-processing|running": 0,
                        "actions-processing|complete": 12,
                        "users-processing|queued": 0,
                        "users-processing|failed": 1,
                        "users-processing|revoked": 1,
                    },
                )
                page.wait_for_function("document.querySelectorAll('[data-consumers] tr').length === 2")
                assert page.evaluate("window.stillTheSamePage") is True
                assert page.locator('svg[data-chart="actions-processing"] rect.complete').count() >= 1
                assert page.locator(f'tbody[data-jobs] a[href$="{run_id}"]').count() == 1
                page.screenshot(path=str(artifact(request, "dashboard.png")), full_page=True)

                # Open the failed job from the live table and read why it failed.
                failed_row = page.locator("tbody[data-jobs] tr", has=page.locator(".badge.state-failed"))
                failed_row.get_by_role("link", name="process-user-data").click()
                page.wait_for_url(f"{base}/admin/jobs/{failing_id}")
                assert page.locator("[data-error]").inner_text() == "UnknownUser: user 4242 does not exist"
                assert "Traceback (most recent call last)" in page.locator(".traceback").inner_text()
                page.screenshot(path=str(artifact(request, "failed-job.png")), full_page=True)

                # The user shows up; retry: the same job runs again and the page follows it to complete.
                User.create(id=4242, email="late@example.org", name="Late Comer")
                page.get_by_role("button", name="Retry").click()
                assert "Queued again" in page.locator(".flash").inner_text()
                page.locator("[data-state] .badge", has_text="complete").wait_for(timeout=WAIT_MS)
                assert "attempt 2 started" in page.locator(".timeline").inner_text()
                page.screenshot(path=str(artifact(request, "retried-job.png")), full_page=True)

                page.goto(f"{base}/admin/jobs/{run_id}")
                assert page.locator("progress").get_attribute("value") == "1000"
                assert '"actions_scored": 1000' in page.locator("pre.code").nth(1).inner_text()

            # A phone-width screen: no sideways scrolling of the page, every control reachable.
            page.set_viewport_size({"width": 390, "height": 844})
            page.goto(base + "/admin/jobs")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            page.screenshot(path=str(artifact(request, "dashboard-phone.png")), full_page=True)
            assert page.locator(f'tbody[data-jobs] a[href$="{later_id}"]').count() == 1
            watched.close()
            assert watched.problems == []
    finally:
        queues.reset()


@pytest.mark.parametrize(("broker_url", "database_url"), [("sqlite", "sqlite")], indirect=True)
def test_the_printed_login_url_logs_in_and_the_api_docs_render_from_packaged_files(
    browser: Any, app_settings: Settings, db: peewee.Database, request: pytest.FixtureRequest
) -> None:
    app = create_app(app_settings, WebSettings(admin_token=TOKEN))
    with serving(app) as base:
        watched = Watched(browser, base)
        page = watched.page
        # The URL `meingym-tasks web` prints on a terminal: the token in the fragment logs in by itself.
        page.goto(f"{base}/admin/login?next=/docs#token={TOKEN}")
        page.wait_for_url(base + "/docs")

        page.locator(".swagger-ui .info .title", has_text="meingym-tasks").wait_for(timeout=WAIT_MS)
        page.locator(".opblock-summary-path", has_text="/api/jobs/{job_id}/retry").first.wait_for()
        page.screenshot(path=str(artifact(request, "docs.png")))
        watched.close()

    assert watched.problems == []


@pytest.mark.parametrize(("broker_url", "database_url"), [("sqlite", "sqlite")], indirect=True)
def test_a_read_token_sees_the_dashboard_read_only_and_a_logged_out_cookie_is_dead(
    browser: Any, app_settings: Settings, db: peewee.Database, request: pytest.FixtureRequest
) -> None:
    from meingym_tasks.access import tokens

    viewer = tokens.create("viewer", tokens.READ, created_by="test")[0]
    app = create_app(app_settings, WebSettings(admin_token=TOKEN))
    with serving(app) as base:
        watched = Watched(browser, base)
        page = watched.page
        page.goto(base + "/admin/jobs")
        page.get_by_label("Admin token").fill(viewer)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(base + "/admin/jobs")

        assert page.get_by_role("heading", name="Trigger a job").count() == 0
        assert page.get_by_role("button", name=re.compile("Retry all failed")).count() == 0
        assert page.get_by_role("link", name="Access").count() == 0
        assert "viewer (read)" in page.locator("header.top").inner_text()
        page.screenshot(path=str(artifact(request, "read-only.png")), full_page=True)
        cookie = next(c for c in watched.context.cookies() if c["name"] == "meingym_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

        page.get_by_role("button", name="Log out").click()
        page.wait_for_url(base + "/admin/login")
        # The cookie as it was before logging out, replayed: the session is gone on the server.
        watched.context.add_cookies([cookie])
        replayed = page.request.get(base + "/api/jobs")
        page.goto(base + "/admin/jobs")
        assert replayed.status == 401
        assert page.url.startswith(base + "/admin/login?next=")
        watched.close()

    assert watched.problems == []
