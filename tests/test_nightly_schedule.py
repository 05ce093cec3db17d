"""The nightly update fires once per local night at 03:00 Europe/Berlin, DST nights included."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from freezegun import freeze_time

from meingym_tasks.jobs import tasks
from meingym_tasks.names import NIGHTLY_UPDATE
from meingym_tasks.queue.queues import actions_queue
from meingym_tasks.settings import Settings


def nightly_fires(start: str, hours: int, schedulers: int = 1) -> list[datetime]:
    """Walk the clock minute by minute like huey's scheduler; return when the nightly job was enqueued."""
    fired: list[datetime] = []
    with freeze_time(start) as clock:
        for _ in range(hours * 60):
            for _ in range(schedulers):
                due = [t for t in actions_queue.read_periodic(None) if t.name == NIGHTLY_UPDATE]
                fired.extend(datetime.utcnow() for _ in due)
            clock.tick(timedelta(minutes=1))
    return fired


@pytest.mark.parametrize(
    ("start", "expected_utc"),
    [
        # Spring forward (29 March 2026): 03:00 CEST is 01:00 UTC on the night of the change.
        ("2026-03-28 12:00:00", ["2026-03-29 01:00:00", "2026-03-30 01:00:00"]),
        # Fall back (25 October 2026): 03:00 CET is 02:00 UTC on the night of the change.
        ("2026-10-24 12:00:00", ["2026-10-25 02:00:00", "2026-10-26 02:00:00"]),
    ],
)
def test_fires_once_per_local_night_across_daylight_saving_changes(
    queue_settings: Settings, start: str, expected_utc: list[str]
) -> None:
    fired = nightly_fires(start, hours=48)

    assert [f.strftime("%Y-%m-%d %H:%M:%S") for f in fired] == expected_utc


def test_two_schedulers_on_one_broker_start_one_run_per_night(queue_settings: Settings) -> None:
    fired = nightly_fires("2026-11-28 12:00:00", hours=24, schedulers=2)

    assert len(fired) == 1


def test_a_scheduler_that_was_down_at_three_catches_up_within_the_hour(queue_settings: Settings) -> None:
    fired = nightly_fires("2026-11-29 02:30:00", hours=2)  # 03:30 local: 30 minutes late

    assert [f.strftime("%H:%M") for f in fired] == ["02:30"]


def test_no_nightly_run_where_the_scheduler_is_switched_off(
    make_settings: Callable[..., Settings], broker_url: str
) -> None:
    from meingym_tasks.queue import queues

    queues.configure(make_settings(MEINGYM_BROKER_URL=broker_url, MEINGYM_SCHEDULER="false"))
    try:
        assert nightly_fires("2026-11-28 12:00:00", hours=24) == []
    finally:
        queues.reset()


def test_the_nightly_job_triggers_update_all_actions_through_the_single_flight_rule(
    queue_settings: Settings,
) -> None:
    first = tasks.nightly_update_all_actions.call_local()
    second = tasks.nightly_update_all_actions.call_local()

    assert first["deduplicated"] is False
    assert second == {"job_id": first["job_id"], "deduplicated": True}
