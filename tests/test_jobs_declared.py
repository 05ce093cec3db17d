"""The task functions are the Python API and keep every rule of their declaration, on the real brokers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from huey import group

from meingym_tasks.exceptions import InvalidJobArguments, InvalidJobRequest
from meingym_tasks.jobs import (
    ExistingRun,
    enqueue,
    process_user_data,
    public_jobs,
    schedule_actions_update,
    send_welcome_email,
    update_all_actions,
)
from meingym_tasks.queue import single_flight
from meingym_tasks.queue.queues import actions_queue, users_queue
from meingym_tasks.settings import Settings

MAX = 2**63 - 1
ALLOWED = f"allowed: a whole number from 1 to {MAX}"


def waiting() -> int:
    """Messages in both brokers' queues and schedules: what an enqueue would have left."""
    return sum(q.pending_count() + q.scheduled_count() for q in (actions_queue, users_queue))


def test_calling_update_all_actions_twice_answers_with_the_run_in_progress(app_settings: Settings) -> None:
    first = update_all_actions()
    second = update_all_actions()
    helper = schedule_actions_update()

    assert not isinstance(first, ExistingRun)
    assert isinstance(second, ExistingRun) and second.id == first.id
    assert helper == {"job_id": first.id, "deduplicated": True}
    assert actions_queue.pending_count() == 1
    assert single_flight.current(actions_queue, "update-all-actions") == first.id


def test_a_scheduled_update_all_actions_holds_the_claim_too(app_settings: Settings) -> None:
    later = update_all_actions.schedule(delay=600)
    now = update_all_actions()

    assert isinstance(now, ExistingRun) and now.id == later.id
    assert actions_queue.scheduled_count() + actions_queue.pending_count() == 1


def test_update_all_actions_cannot_be_a_pipeline_step_that_would_bypass_its_claim(queue_settings: Settings) -> None:
    with pytest.raises(InvalidJobRequest, match="runs one at a time"):
        update_all_actions.s()


def test_a_refused_enqueue_releases_the_claim(queue_settings: Settings) -> None:
    with pytest.raises(InvalidJobArguments, match="delay"):
        update_all_actions(delay=-1)

    assert single_flight.current(actions_queue, "update-all-actions") is None


BAD_CALLS: list[tuple[tuple[Any, ...], dict[str, Any], str, str]] = [
    (("abc",), {}, "user_id", "'abc' is not allowed"),
    ((True,), {}, "user_id", "True is not allowed"),
    ((7.0,), {}, "user_id", "7.0 is not allowed"),
    ((0,), {}, "user_id", "0 is not allowed"),
    ((2**63,), {}, "user_id", f"{2**63} is not allowed"),
    ((), {}, "user_id", "missing"),
    ((), {"userId": 7}, "userId", "is not a parameter; allowed: user_id"),
    ((7,), {"user_id": 7}, "user_id", "given twice"),
    ((7, 8), {}, "arguments", "takes 1 positional argument(s) (user_id), 2 given"),
]


def every_way_in(task: Any) -> dict[str, Callable[..., Any]]:
    """The ways in to one job, each taking (args, kwargs)."""
    return {
        "call": lambda args, kwargs: task(*args, **kwargs),
        "schedule": lambda args, kwargs: task.schedule(args=args, kwargs=kwargs, delay=60),
        "s": lambda args, kwargs: task.s(*args, **kwargs),
        "enqueue": lambda args, kwargs: enqueue(
            task.spec.name, **dict(zip(("user_id",), args, strict=False)), **kwargs
        ),
    }


@pytest.mark.parametrize("way", ["call", "schedule", "s", "enqueue"])
@pytest.mark.parametrize(("args", "kwargs", "field", "message"), BAD_CALLS)
def test_bad_arguments_are_refused_on_every_way_in_and_nothing_is_enqueued(
    queue_settings: Settings, way: str, args: tuple[Any, ...], kwargs: dict[str, Any], field: str, message: str
) -> None:
    if way == "s" and message == "missing":
        pytest.skip("s() leaves missing arguments to the step before it (a pipeline)")
    if way == "enqueue" and (len(args) > 1 or kwargs.get("user_id")):
        pytest.skip("enqueue() takes arguments by name")
    attempt = every_way_in(process_user_data)[way]

    with pytest.raises(InvalidJobArguments) as refused:
        attempt(args, kwargs)

    assert [e["field"] for e in refused.value.errors][-1] == field
    assert message in str(refused.value)
    assert str(refused.value).startswith("process-user-data: ")
    if field == "user_id" and message != "given twice":
        assert ALLOWED in str(refused.value)
    assert waiting() == 0


@pytest.mark.parametrize(
    ("when", "field", "message"),
    [
        ({"delay": -1}, "delay", "-1 is not allowed; allowed: a number of seconds from 0 to"),
        ({"delay": 10**9}, "delay", "is not allowed"),
        ({"delay": True}, "delay", "True is not allowed"),
        ({"delay": float("nan")}, "delay", "nan is not allowed"),
        ({"eta": datetime(2001, 1, 1, tzinfo=UTC)}, "eta", "more than an hour in the past"),
        ({"eta": "tomorrow"}, "eta", "'tomorrow' is not allowed"),
        ({"delay": 5, "eta": datetime(2030, 1, 1)}, "eta", "give delay or eta, not both"),
    ],
)
@pytest.mark.parametrize("way", ["call", "schedule", "s", "enqueue"])
def test_delay_and_eta_bounds_hold_on_every_way_in(
    queue_settings: Settings, way: str, when: dict[str, Any], field: str, message: str
) -> None:
    attempts = {
        "call": lambda: send_welcome_email(7, **when),
        "schedule": lambda: send_welcome_email.schedule(args=(7,), **when),
        "s": lambda: send_welcome_email.s(7, **when),
        "enqueue": lambda: enqueue("send-welcome-email", user_id=7, **when),
    }

    with pytest.raises(InvalidJobArguments) as refused:
        attempts[way]()

    assert refused.value.errors[-1]["field"] == field
    assert message in str(refused.value)
    assert waiting() == 0


def test_good_calls_enqueue_with_the_arguments_as_declared(app_settings: Settings) -> None:
    called = process_user_data(7)
    by_name = process_user_data(user_id=8)
    later = send_welcome_email.schedule(args=(9,), delay=60)
    at = send_welcome_email.schedule(kwargs={"user_id": 10}, eta=datetime.now(UTC) + timedelta(hours=1))
    pieces = users_queue.enqueue(group([process_user_data.s(11), process_user_data.s(user_id=12)]))
    queued = enqueue("process-user-data", user_id=13)

    assert called.task.args == (7,) and by_name.task.kwargs == {"user_id": 8}  # as given
    assert later.task.args == (9,) and at.task.kwargs == {"user_id": 10}
    assert [(r.task.args, r.task.kwargs) for r in pieces] == [((11,), {}), ((), {"user_id": 12})]
    assert queued == {"job_id": queued["job_id"], "state": "queued"}
    assert users_queue.pending()[-1].args == (13,)  # by name: by position where the signature allows
    assert users_queue.pending_count() == 7  # the delayed ones too: a consumer schedules them when it reads them


def test_the_public_jobs_are_declared_with_their_queue_parameters_and_description() -> None:
    declared = {name: job.spec for name, job in public_jobs().items()}

    assert list(declared) == ["update-all-actions", "process-user-data", "send-welcome-email"]
    assert declared["update-all-actions"].single_flight and declared["update-all-actions"].parameters == {}
    assert declared["process-user-data"].queue == "users-processing"
    assert declared["process-user-data"].parameters["user_id"]["maximum"] == MAX
    assert declared["send-welcome-email"].description == "Send the welcome email to one user, once per job."


def note(text: str, tag: str | None = None) -> str:
    """Keep a note (a job with text parameters, declared by the test below)."""
    return text


def test_text_parameters_refuse_nul_and_document_it(queue_settings: Settings) -> None:
    from meingym_tasks.jobs import job

    declared = job(users_queue, "note")(note)
    try:
        with pytest.raises(InvalidJobArguments, match="text: must not contain a NUL character"):
            declared("a\x00b")
        with pytest.raises(InvalidJobArguments, match="tag: must not contain a NUL character"):
            declared("fine", tag="\x00")
        declared("fine", tag="ok")
        schema = declared.spec.parameters
    finally:
        declared.unregister()

    assert schema["text"]["pattern"] == "^[^\\u0000]*$"
    assert [option.get("pattern") for option in schema["tag"]["anyOf"]] == ["^[^\\u0000]*$", None]
    assert users_queue.pending_count() == 1
