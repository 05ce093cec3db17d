"""A job declared once, here and nowhere else, is in the Python API, the CLI, the API (and its OpenAPI
document) and the dashboard form, each accepting good arguments and refusing bad ones the same way.

``monthly-report`` takes a whole number and a date. It is declared on the users queue for each test
(the ``report`` fixture) and unregistered afterwards; no other file knows it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from typing import Annotated, Any

import peewee
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from pydantic import Field

from meingym_tasks.cli.main import cli
from meingym_tasks.exceptions import InvalidJobArguments, PermanentJobError
from meingym_tasks.jobs import Job, enqueue, get_job, job, job_result, public_jobs, retry_job
from meingym_tasks.queue.queues import users_queue
from meingym_tasks.settings import Settings
from meingym_tasks.web import WebSettings, create_app
from tests.helpers import run_due
from tests.test_web_browser import TOKEN as BROWSER_TOKEN
from tests.test_web_browser import Watched, artifact, browser, log_in, serving  # noqa: F401 (browser: a fixture)

TOKEN = "declared-once-token-0123456789"
NAME = "monthly-report"

ReportUser = Annotated[int, Field(ge=1, le=10_000, title="User ID", description="Whose month")]
Month = Annotated[date, Field(title="Month", description="Any day of the month to report")]


def monthly_report(user_id: ReportUser, month: Month) -> dict[str, Any]:
    """Summarise one user's month of training."""
    if user_id == 13:  # a failure to retry: fails at once, saying which month it read
        raise PermanentJobError(f"unlucky {month.replace(day=1).isoformat()}")
    return {"user_id": user_id, "month": month.replace(day=1).isoformat()}


@pytest.fixture
def report() -> Iterator[Job]:
    """The job, declared on the users queue for this test only."""
    declared = job(users_queue, NAME, public=True)(monthly_report)
    try:
        yield declared
    finally:
        declared.unregister()
        assert NAME not in public_jobs()


# --------------------------------------------------------------------------- Python


def test_the_python_call_checks_both_parameters(report: Job, app_settings: Settings) -> None:
    called = report(7, date(2026, 11, 17))
    by_name = enqueue(NAME, user_id=8, month=date(2026, 2, 3))
    refused = {}
    for bad in [(7, "2026-11-17"), ("7", date(2026, 11, 17)), (0, date(2026, 11, 17)), (7,)]:
        with pytest.raises(InvalidJobArguments) as error:
            report(*bad)
        refused[bad] = error.value.errors[0]
    with pytest.raises(InvalidJobArguments, match="week: is not a parameter; allowed: user_id, month"):
        enqueue(NAME, user_id=7, month=date(2026, 1, 1), week=3)
    assert users_queue.pending_count() == 2
    run_due(users_queue)

    assert job_result(called.id)["result"] == {"user_id": 7, "month": "2026-11-01"}
    assert job_result(by_name["job_id"])["result"] == {"user_id": 8, "month": "2026-02-01"}
    assert refused[(7, "2026-11-17")]["field"] == "month"
    assert "allowed: a date such as 2026-12-01" in refused[(7, "2026-11-17")]["message"]
    assert refused[("7", date(2026, 11, 17))]["field"] == "user_id"
    assert "allowed: a whole number from 1 to 10000" in refused[(0, date(2026, 11, 17))]["message"]
    assert refused[(7,)] == {"field": "month", "type": "missing",
                             "message": "missing; allowed: a date such as 2026-12-01"}  # fmt: skip


def test_a_retried_job_gets_its_date_back_from_the_registry(report: Job, app_settings: Settings) -> None:
    failed = report(13, date(2026, 5, 20))
    run_due(users_queue)
    assert get_job(failed.id)["arguments"] == {"args": [13, "2026-05-20"], "kwargs": {}}  # JSON in the record

    retry_job(failed.id)  # enqueued again from the record
    run_due(users_queue)

    attempts = get_job(failed.id)["failed_attempts"]
    assert [a["error"] for a in attempts] == ["PermanentJobError: unlucky 2026-05-01"] * 2  # a date, not a string


# --------------------------------------------------------------------------- CLI


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--user-id", "7", "--month", "2026-13-01"], "Invalid value for '--month': '2026-13-01' is not a date"),
        (["--user-id", "7", "--month", "yesterday"], "'yesterday' is not a date such as 2026-12-01"),
        (["--user-id", "10001", "--month", "2026-11-01"], "10001 is not in the range 1<=x<=10000"),
        (["--user-id", "7"], "Missing option '--month'. Allowed: a date such as 2026-12-01."),
        (["--user-id", "7", "--month", "2026-11-01", "--week", "3"], "monthly-report has no option --week"),
    ],
)
def test_the_cli_has_an_option_per_parameter_and_refuses_bad_values(
    report: Job, app_env: dict[str, str], app_settings: Settings, args: list[str], expected: str
) -> None:
    result = CliRunner().invoke(cli, ["trigger", NAME, *args], env=app_env)

    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert users_queue.pending_count() == 0


def test_the_cli_lists_and_triggers_the_job(report: Job, app_env: dict[str, str], app_settings: Settings) -> None:
    runner = CliRunner()
    listed = runner.invoke(cli, ["trigger", "--help"], env=app_env)
    triggered = runner.invoke(cli, ["trigger", NAME, "--user-id", "7", "--month", "2026-11-17"], env=app_env)

    text = " ".join(listed.output.split())
    assert "monthly-report Summarise one user's month of training." in text
    assert "Options: --user-id (a whole number from 1 to 10000); --month (a date such as 2026-12-01)." in text
    assert triggered.exit_code == 0, triggered.output
    assert users_queue.pending()[0].args == (7, date(2026, 11, 17))


# --------------------------------------------------------------------------- API and dashboard


@pytest.fixture
def client(report: Job, app_settings: Settings) -> Iterator[TestClient]:
    app = create_app(app_settings, WebSettings(admin_token=TOKEN))
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as test_client:
        yield test_client


def test_the_api_documents_and_enforces_the_job(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    accepted = client.post("/api/jobs", json={"action": NAME, "user_id": 7, "month": "2026-11-17"})
    refused = {
        field: client.post("/api/jobs", json={"action": NAME, **body})
        for field, body in {
            "month": {"user_id": 7, "month": "17.11.2026"},
            "user_id": {"user_id": "7", "month": "2026-11-17"},
            "week": {"user_id": 7, "month": "2026-11-17", "week": 3},
        }.items()
    }

    model = schemas["TriggerMonthlyReport"]
    assert model["properties"]["user_id"]["maximum"] == 10_000 and model["properties"]["user_id"]["minimum"] == 1
    assert model["properties"]["month"] == {"type": "string", "format": "date", "title": "Month",
                                            "description": "Any day of the month to report"}  # fmt: skip
    assert sorted(model["required"]) == ["action", "month", "user_id"]
    assert NAME in schemas["TriggerRequest"]["discriminator"]["mapping"]
    assert accepted.status_code == 202, accepted.text
    assert client.get(accepted.json()["url"]).json()["arguments"] == {"args": [7, "2026-11-17"], "kwargs": {}}
    for field, response in refused.items():
        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["errors"]] == [field]
    assert "allowed: a date such as 2026-12-01" in refused["month"].json()["message"]
    assert users_queue.pending_count() == 1


def test_the_dashboard_form_takes_the_fields_of_the_job(client: TestClient) -> None:
    form = TestClient(client.app, follow_redirects=False)
    form.post("/admin/login", data={"token": TOKEN})
    page = form.get("/admin/jobs").text
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    csrf = match.group(1)

    good = form.post("/admin/jobs/trigger", data={"csrf_token": csrf, "action": NAME, "user_id": "7",
                                                     "month": "2026-11-17"})  # fmt: skip
    bad = form.post("/admin/jobs/trigger", data={"csrf_token": csrf, "action": NAME, "user_id": "7",
                                                    "month": "17.11.2026"})  # fmt: skip
    flash = form.get(bad.headers["location"]).text

    template = re.search(r'<template data-fields-for="monthly-report">(.*?)</template>', page, re.S)
    assert template
    assert 'name="user_id" type="number" step="1"' in template.group(1) and 'min="1" max="10000"' in template.group(1)
    assert 'name="month" type="date"' in template.group(1)
    assert re.fullmatch(r"/admin/jobs/[0-9a-f-]{36}", good.headers["location"])
    assert "Not triggered: month: &#39;17.11.2026&#39; is not allowed" in flash


# --------------------------------------------------------------------------- the dashboard in a browser


@pytest.mark.slow
@pytest.mark.parametrize(("broker_url", "database_url"), [("sqlite", "sqlite")], indirect=True)
def test_the_dashboard_form_in_a_browser_shows_and_checks_the_jobs_fields(
    browser: Any,  # noqa: F811 (the fixture of test_web_browser)
    report: Job,
    app_settings: Settings,
    db: peewee.Database,
    request: pytest.FixtureRequest,
) -> None:
    app = create_app(app_settings, WebSettings(admin_token=BROWSER_TOKEN))
    with serving(app) as base:
        watched = Watched(browser, base)
        page = watched.page
        log_in(page, base)

        page.get_by_label("Job", exact=True).select_option(NAME)
        assert page.get_by_label("User ID").get_attribute("max") == "10000"
        assert page.get_by_label("Month").get_attribute("type") == "date"
        assert "Summarise one user's month of training." in page.locator("[data-job-fields]").inner_text()
        page.screenshot(path=str(artifact(request, "trigger-form.png")), full_page=True)
        page.get_by_label("User ID").fill("7")
        page.get_by_label("Month").fill("2026-11-17")
        page.get_by_role("button", name="Trigger").click()
        page.wait_for_url(re.compile(r".*/admin/jobs/[0-9a-f-]{36}$"))
        assert f"{NAME} enqueued as" in page.locator(".flash").inner_text()
        assert '"2026-11-17"' in page.locator("pre.code").first.inner_text()

        refused = []
        for user_id, month in (("0", "2026-11-17"), ("7", "")):
            page.goto(base + "/admin/jobs")
            page.get_by_label("Job", exact=True).select_option(NAME)
            page.locator("form.trigger").evaluate("form => { form.noValidate = true; }")  # let the server judge
            page.get_by_label("User ID").fill(user_id)
            page.get_by_label("Month").fill(month)
            page.get_by_role("button", name="Trigger").click()
            page.wait_for_url(base + "/admin/jobs#trigger")
            refused.append(page.locator(".flash").inner_text())

        page.get_by_label("Job", exact=True).select_option("process-user-data")
        assert page.get_by_label("Month").count() == 0
        assert page.get_by_label("User ID").get_attribute("max") == str(2**63 - 1)
        watched.close()

    assert refused == [
        "Not triggered: user_id: 0 is not allowed (Input should be greater than or equal to 1); "
        "allowed: a whole number from 1 to 10000",
        "Not triggered: month: missing; allowed: a date such as 2026-12-01",
    ]
    assert watched.problems == []
