"""/openapi.json is what the server does: schemathesis generates requests from it, valid and invalid,
and every answer must match the documented responses, with no 5xx (SQLite broker; SQLite and PostgreSQL,
where text with a NUL once was a 500)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from meingym_tasks.settings import Settings
from meingym_tasks.web import WebSettings, create_app

TOKEN = "openapi-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: Requests per operation and mode: enough to reach every job's body and the bounds, within a minute in all.
EXAMPLES = 50


@pytest.fixture
def broker_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'queue.db'}"


@pytest.fixture
def api_schema(app_settings: Settings) -> Any:
    """The app's own OpenAPI document, loaded through the app (it needs the token too)."""
    # schemathesis also sends wrong tokens (its ignored_auth check): allow them, or the throttle
    # answers most later requests with 429 (documented, but then the routes themselves go untested).
    app = create_app(app_settings, WebSettings(admin_token=TOKEN, auth_max_failures=10_000))
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app, headers=AUTH)
    # Unknown query parameters are ignored (as HTTP APIs do, and the document does not say otherwise);
    # the token is sent with every request (its absence is test_web_security's concern).
    loaded.config.generation.update(allow_extra_parameters=False, with_security_parameters=False)
    return loaded


def valid_beyond_the_schema(case: Any) -> bool:
    """Whether the request holds a value that may be refused for a reason JSON Schema cannot say (its
    description does): an ETA must lie between an hour ago and the delay limit ahead (relative to now), a
    cursor must be one a page returned. Such a request may get its documented 422; every other check holds."""
    return (isinstance(case.body, dict) and "eta" in case.body) or bool((case.query or {}).get("cursor"))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_answer_contradicts_the_schema_and_none_is_a_server_error(api_schema: Any, mode: GenerationMode) -> None:
    # schemathesis's own pytest loader (from_fixture) does not run on pytest 9: hypothesis drives each operation.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /api/jobs", "GET /api/jobs", "GET /api/jobs/{job_id}"}
    for operation in operations:
        inputs = [*operation.path_parameters, *operation.query, *operation.body]
        if mode is GenerationMode.NEGATIVE and not inputs:
            continue  # nothing to get wrong (GET /healthz)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def answers_as_documented(case: Any) -> None:
            unsure = [positive_data_acceptance] if valid_beyond_the_schema(case) else []
            case.call_and_validate(headers=AUTH, excluded_checks=unsure)

        answers_as_documented()
