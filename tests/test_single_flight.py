"""update-all-actions runs once at a time, however many callers trigger it at once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from meingym_tasks.jobs import schedule_actions_update, update_all_actions
from meingym_tasks.names import ACTIONS_QUEUE
from meingym_tasks.queue import single_flight
from meingym_tasks.queue.app import MeinGymHuey
from meingym_tasks.queue.queues import actions_queue
from meingym_tasks.settings import Settings
from tests.helpers import run_due


def test_concurrent_triggers_get_one_run(app_settings: Settings) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: schedule_actions_update(), range(16)))

    assert len({a["job_id"] for a in answers}) == 1
    assert sum(not a["deduplicated"] for a in answers) == 1
    assert actions_queue.pending_count() == 1


def test_triggers_with_connections_of_their_own_agree_on_one_holder(app_settings: Settings) -> None:
    """As the web app, the CLI and the nightly scheduler do from processes of their own.

    (Threads sharing one queue share its SQL connection, which takes them one at a time.)
    """
    holders = race_to_claim(app_settings)

    winners = [f"job-{number}" for number, holder in enumerate(holders) if holder is None]
    assert len(winners) == 1, holders
    assert {holder for holder in holders if holder is not None} == set(winners)
    assert single_flight.current(actions_queue, "update-all-actions") == winners[0]


def test_the_claim_is_released_when_the_run_finishes(app_settings: Settings) -> None:
    first = schedule_actions_update()["job_id"]
    run_due(actions_queue)  # the run, its (empty) fan-out and its finishing step

    assert single_flight.current(actions_queue, "update-all-actions") is None
    assert schedule_actions_update()["job_id"] != first


def test_a_claim_whose_run_already_has_a_result_is_taken_over(app_settings: Settings) -> None:
    stale = schedule_actions_update()["job_id"]
    actions_queue.put_result(stale, {"actions_scored": 0})  # finished, but its claim was never released

    fresh = schedule_actions_update()

    assert fresh["deduplicated"] is False and fresh["job_id"] != stale


def test_triggers_racing_to_take_over_a_finished_run_agree_on_one_new_holder(app_settings: Settings) -> None:
    stale = schedule_actions_update()["job_id"]
    actions_queue.put_result(stale, {"actions_scored": 0})  # finished, but its claim was never released
    holders = race_to_claim(app_settings)

    winners = [f"job-{number}" for number, holder in enumerate(holders) if holder is None]
    assert len(winners) == 1, holders
    assert single_flight.current(actions_queue, "update-all-actions") == winners[0]


def test_a_release_by_a_run_whose_claim_was_taken_over_leaves_the_new_claim(app_settings: Settings) -> None:
    stale = schedule_actions_update()["job_id"]
    actions_queue.put_result(stale, {"actions_scored": 0})
    fresh = schedule_actions_update()["job_id"]  # takes the finished run's claim over

    single_flight.release(actions_queue, "update-all-actions", stale)  # the old run's late finishing step

    assert single_flight.current(actions_queue, "update-all-actions") == fresh


def test_a_run_revoked_before_it_ran_releases_its_claim(app_settings: Settings) -> None:
    first = update_all_actions()
    first.revoke()  # huey's own way: the consumer skips the message

    run_due(actions_queue)

    assert single_flight.current(actions_queue, "update-all-actions") is None
    assert schedule_actions_update()["deduplicated"] is False


def race_to_claim(settings: Settings, racers: int = 8) -> list[str | None]:
    """``racers`` queues, each with a connection of its own, claim the run at once (``job-<n>``); their answers."""
    queues = [MeinGymHuey(ACTIONS_QUEUE) for _ in range(racers)]
    for queue in queues:
        queue.configure(settings)
        single_flight.current(queue, "update-all-actions")  # connected before the race
    barrier = threading.Barrier(racers, timeout=60)

    def trigger(number: int) -> str | None:
        barrier.wait()
        return single_flight.claim(queues[number], "update-all-actions", f"job-{number}")

    try:
        with ThreadPoolExecutor(max_workers=racers) as pool:
            return list(pool.map(trigger, range(racers)))
    finally:
        for queue in queues:
            queue.close()
