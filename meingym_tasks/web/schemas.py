"""The API's pydantic models: answers, and the body of ``POST /api/jobs`` generated from the jobs' declarations.

The trigger body is a union discriminated by ``action``, one model per public
job: its parameters as declared (types, bounds, descriptions), plus ``delay``
or ``eta`` (never both). It is validated as JSON (``"7"`` is not an int, a
date is an ISO string) by the same models whose schemas ``/openapi.json``
shows, so the documentation is what the server enforces.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    TypeAdapter,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic.json_schema import models_json_schema
from pydantic_core import InitErrorDetails, PydanticCustomError

from meingym_tasks.access.tokens import NAME, NAME_RULE, SCOPE_HELP, SCOPES
from meingym_tasks.jobs.declare import Text, explain, property_schemas, value_schema
from meingym_tasks.names import QUEUES
from meingym_tasks.registry.models import FINISHED, INTERRUPTED, STATES
from meingym_tasks.settings import Settings

if TYPE_CHECKING:
    from meingym_tasks.jobs.declare import Job as DeclaredJob

#: Jobs retried by one call of retry-failed; the answer says when more are left.
RETRY_FAILED_BATCH = 1000
#: What a trigger body may hold besides the job's own parameters.
OPTIONS = ("action", "delay", "eta")
#: States whose records may be purged.
PURGEABLE = (*FINISHED, INTERRUPTED)
TOKEN_NAME = f"^{NAME.pattern}$"

# --------------------------------------------------------------------------- the trigger body


@dataclasses.dataclass(frozen=True)
class TriggerSchema:
    """The trigger body of one app: built from the public jobs' declarations and the app's settings."""

    #: The body of ``POST /api/jobs`` (a RootModel over the per-job models).
    request: type[RootModel[Any]]
    #: Per public job, the model of its body (``action``, its parameters, ``delay``, ``eta``).
    jobs: dict[str, type[BaseModel]]

    def parameters(self, action: str) -> dict[str, dict[str, Any]]:
        """The JSON Schema of each parameter of ``action`` (without ``action``, ``delay`` and ``eta``)."""
        return {k: v for k, v in property_schemas(self.jobs[action]).items() if k not in OPTIONS}

    def components(self) -> dict[str, Any]:
        """The JSON Schemas of the trigger models as OpenAPI components, numbers exact.

        FastAPI passes the schemas it generates through its OpenAPI model, whose
        ``maximum`` is a float: 2**63 - 1 would be documented as 2**63.
        """
        models = [(model, "validation") for model in (self.request, *self.jobs.values())]
        _, document = models_json_schema(models, ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
        return dict(document.get("$defs", {}))

    def validate(self, data: Any) -> BaseModel:
        """``data`` (parsed JSON) checked as the API checks a body; raises pydantic's ValidationError."""
        return self.request.model_validate(data).root  # type: ignore[no-any-return]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # may be left out, but is never null


def trigger_schema(public: dict[str, DeclaredJob], settings: Settings) -> TriggerSchema:
    """The trigger body for ``public`` jobs, with the delay bounds of ``settings``."""
    limit = settings.max_schedule_ahead
    options = create_model(
        "ScheduleOptions",
        __config__=ConfigDict(json_schema_extra={"not": {"required": ["delay", "eta"]}}),
        delay=(
            Annotated[float, Field(ge=0, le=limit, allow_inf_nan=False)],
            Field(None, description=f"Run after this many seconds (0 to {limit}); not with eta",
                  json_schema_extra=_no_default),
        ),
        eta=(
            datetime,
            Field(None, description="Run at this ISO-8601 time (from an hour ago to the delay limit ahead); "
                  "without an offset it is read in MEINGYM_TIMEZONE; not with delay", json_schema_extra=_no_default),
        ),
    )  # fmt: skip
    models: dict[str, type[BaseModel]] = {}
    for name, declared in public.items():
        spec = declared.spec
        camel = "".join(part.capitalize() for part in name.split("-"))
        models[name] = create_model(
            f"Trigger{camel}",
            __base__=(spec.arguments, options),
            __doc__=spec.description or name,
            action=(Literal[name], Field(description=f"{name}: {spec.description} (queue {spec.queue})")),  # type: ignore[arg-type]
        )
    return TriggerSchema(request=_request_model(models), jobs=models)


def _request_model(models: dict[str, type[BaseModel]]) -> type[RootModel[Any]]:
    members = tuple(models.values())
    union: Any = Annotated[Union[members], Field(discriminator="action")] if len(members) > 1 else members[0]  # noqa: UP007
    adapter: TypeAdapter[Any] = TypeAdapter(union)
    actions = list(models)

    def as_json(cls: type[RootModel[Any]], data: Any, handler: Any) -> Any:
        if isinstance(data, cls):
            return data
        errors = _check_action(data, actions)
        if not errors:
            if data.get("delay") is not None and data.get("eta") is not None:
                errors += [
                    _detail((f,), "delay_and_eta", "give delay or eta, not both", data[f]) for f in ("delay", "eta")
                ]
            try:
                # JSON rules, as the API's client wrote it: a date is an ISO string, "7" is not a number.
                value = adapter.validate_json(json.dumps(_whole_numbers(data, models[data["action"]])))
            except ValidationError as exc:
                for error in explain(models[data["action"]], _untagged(exc)):
                    errors.append(_detail(tuple(error["loc"]), error["type"], error["msg"], error.get("input")))
        if errors:
            raise ValidationError.from_exception_data("TriggerRequest", errors)
        return cls.model_construct(root=value)

    return create_model(  # type: ignore[no-any-return]
        "TriggerRequest",
        __base__=RootModel[union],
        __doc__="A job to run: its action, its parameters, and a delay or an ETA. "
        'The old body {"action": "update-all-actions"} is valid as it is.',
        __validators__={"as_json": model_validator(mode="wrap")(classmethod(as_json))},  # type: ignore[dict-item, arg-type]
    )


def _whole_numbers(data: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """``data`` with 7.0 as 7 where the schema says integer: JSON Schema counts 7.0 as an integer."""
    integers = {
        name for name, schema in property_schemas(model).items() if value_schema(schema).get("type") == "integer"
    }
    return {
        key: int(value) if key in integers and isinstance(value, float) and value.is_integer() else value
        for key, value in data.items()
    }


def _untagged(exc: ValidationError) -> list[dict[str, Any]]:
    """The errors of a discriminated union without the tag pydantic puts first in each location."""
    return [{**e, "loc": e["loc"][1:]} for e in exc.errors(include_url=False)]


def _check_action(data: Any, actions: list[str]) -> list[InitErrorDetails]:
    if not isinstance(data, dict):
        return [_detail((), "model_type", "the body must be a JSON object", data)]
    names = ", ".join(actions)
    if "action" not in data:
        return [_detail(("action",), "missing", f"missing; allowed: {names}", data)]
    action = data["action"]
    if not isinstance(action, str):
        return [_detail(("action",), "string_type", f"{action!r} is not allowed; allowed: {names}", action)]
    if action not in actions:
        error = PydanticCustomError(
            "unknown_action", "unknown action {shown}; allowed: {names}", {"shown": repr(action), "names": names,
                                                                           "allowed": actions}
        )  # fmt: skip
        return [InitErrorDetails(type=error, loc=("action",), input=action)]
    return []


def _detail(loc: tuple[Any, ...], kind: str, message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError(kind, "{message}", {"message": message}), loc=loc, input=value)


# --------------------------------------------------------------------------- answers


class ErrorBody(BaseModel):
    message: str = Field(description="What went wrong and, where it applies, what is allowed")
    allowed: list[str] | None = Field(None, description="The valid values (unknown action)")
    errors: list[dict[str, str]] | None = Field(None, description="Per field: field, message, type (422)")
    missing_scope: str | None = Field(None, description="The scope the request needs and the token lacks (403)")


class Accepted(BaseModel):
    job_id: str
    state: str = Field(description="The job's registry state now (queued, scheduled, running, ...)")
    url: str = Field(description="Where to follow the job: GET it for its state, attempts and result")
    deduplicated: bool = Field(
        description="True when a single-flight job (update-all-actions) was already queued or running: "
        "that run is answered"
    )
    message: str


class Progress(BaseModel):
    done: int | None
    total: int | None
    percent: float | None
    message: str | None


class FailedAttempt(BaseModel):
    attempt: int
    error: str
    traceback: str
    consumer: str | None
    failed_at: str | None


class JobSummary(BaseModel):
    """A job's registry record; times are ISO-8601 UTC."""

    job_id: str
    queue: str
    name: str
    parent_id: str | None
    arguments: Any
    state: str = Field(description="One of: " + ", ".join(STATES))
    attempts: int
    max_attempts: int
    enqueued_at: str | None
    scheduled_for: str | None
    started_at: str | None
    finished_at: str | None
    next_attempt_at: str | None
    consumer: str | None
    progress: Progress
    result: Any
    error: str | None
    cancel_requested: bool
    recoveries: int = Field(
        description="How often the job went back on the queue because its consumer died or lost its lease "
        "while running it (more than MEINGYM_MAX_RECOVERIES fails it)"
    )
    updated_at: str | None


class AuditItem(BaseModel):
    """One state-changing action: who, through what, from where, when, on what, and how it ended."""

    id: int
    at: str
    actor: str = Field(description="The token's name, or user@host for the CLI")
    via: str = Field(description="api, dashboard or cli")
    client: str | None = Field(description="The client address the web service saw (null for the CLI)")
    action: str = Field(description="trigger, retry, retry-all, cancel, purge, login, logout, token.create, ...")
    target: str | None = Field(description="A job id, a queue, a token or a session")
    outcome: str = Field(description="ok, refused, failed or locked")
    message: str | None
    detail: Any


class AuditPage(BaseModel):
    entries: list[AuditItem]
    next: int | None = Field(description="Pass as before= for the next (older) page; null on the last page")


class Job(JobSummary):
    """The full record: also every failed attempt, a run's pieces per state, and who acted on it."""

    failed_attempts: list[FailedAttempt]
    children: dict[str, int] | None = Field(None, description="A run's pieces (batches) per state; null otherwise")
    audit: list[AuditItem] = Field(
        default_factory=list, description="Who triggered, retried or cancelled it, newest first (the last 50)"
    )


class JobAction(BaseModel):
    message: str
    job: Job


class JobPage(BaseModel):
    jobs: list[JobSummary]
    next: str | None = Field(description="Pass as cursor= for the next (older) page; null on the last page")
    next_url: str | None
    counts: dict[str, dict[str, int]] = Field(description="Records per queue and state (all, not just this page)")


class RetryFailedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    queue: Literal[QUEUES] = Field(description="The queue whose failed jobs run again")  # type: ignore[valid-type]


class Skipped(BaseModel):
    job_id: str
    message: str


class RetryFailedResult(BaseModel):
    queue: str
    retried: list[str]
    skipped: list[Skipped]
    more: bool = Field(description=f"True when more than {RETRY_FAILED_BATCH} were failed: call again")
    message: str


class Consumer(BaseModel):
    consumer_id: str
    queue: str
    host: str
    pid: int
    workers: int
    worker_type: str
    started_at: str | None
    last_seen_at: str | None


class Minute(BaseModel):
    minute: str | None
    complete: int
    failed: int


class QueueInfo(BaseModel):
    pending: int = Field(description="Ready to run, waiting in the broker")
    scheduled: int = Field(description="Delayed, ETA or waiting for a retry, in the broker")
    running: int
    retrying: int
    failed: int
    states: dict[str, int] = Field(description="Registry records per state")
    completed_last_hour: int
    failed_last_hour: int
    throughput: list[Minute] = Field(description="Completed and failed per minute, the last 60 minutes, oldest first")
    consumers: list[Consumer] = Field(description="Consumers alive (heartbeat within 30 s)")
    unserved: bool = Field(description="Jobs are pending and no consumer of this queue is alive: they wait")


class Queues(BaseModel):
    queues: dict[str, QueueInfo]
    generated_at: str


class DeadLetterItem(BaseModel):
    id: int
    queue: str
    reason: str
    size: int
    payload_hex: str
    consumer: str | None
    received_at: str | None


class DeadLetters(BaseModel):
    dead_letters: list[DeadLetterItem]
    counts: dict[str, int]


def _whole(value: Any) -> Any:
    """7.0 as 7: JSON Schema counts it as an integer (strict mode alone would refuse it)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class PurgeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    state: Literal[PURGEABLE] | None = Field(  # type: ignore[valid-type]
        None, description="Only records in this state (default: every finished one)"
    )
    older_than: Annotated[int, Field(ge=0, le=10 * 365 * 86400), BeforeValidator(_whole)] | None = Field(
        None, description="Only records finished more than this many seconds ago"
    )


class PurgeResult(BaseModel):
    deleted: int
    message: str


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(pattern=TOKEN_NAME, max_length=40, description=f"The token's name: {NAME_RULE}")
    scope: Literal[SCOPES] = Field(description="; ".join(SCOPE_HELP.values()))  # type: ignore[valid-type]


class TokenItem(BaseModel):
    name: str
    scope: str
    created_at: str
    created_by: str
    last_used_at: str | None
    sessions: int = Field(description="Open dashboard sessions started with it")


class TokenCreated(TokenItem):
    token: str = Field(description="The token itself: shown this once, never stored; keep it secret")
    message: str


class TokenList(BaseModel):
    tokens: list[TokenItem]
    builtin: str = Field(description="The built-in admin token (MEINGYM_ADMIN_TOKEN), which is not listed")


class SessionItem(BaseModel):
    id: str
    token: str = Field(description="The name of the token it logged in with")
    created_at: str
    last_seen_at: str
    expires_at: str
    client: str | None
    user_agent: str | None


class SessionList(BaseModel):
    sessions: list[SessionItem]


class Revoked(BaseModel):
    message: str
    sessions_ended: int


#: Free text in a filter: anything but NUL (PostgreSQL cannot compare with it).
Filter = Text

__all__ = [
    "Accepted",
    "AuditItem",
    "AuditPage",
    "DeadLetters",
    "ErrorBody",
    "Filter",
    "Job",
    "JobAction",
    "JobPage",
    "PurgeRequest",
    "PurgeResult",
    "Queues",
    "RetryFailedRequest",
    "RetryFailedResult",
    "Revoked",
    "SessionItem",
    "SessionList",
    "TokenCreated",
    "TokenItem",
    "TokenList",
    "TokenRequest",
    "TriggerSchema",
    "trigger_schema",
]
