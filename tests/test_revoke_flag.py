"""A job's revoke flag is cleared when it has run (as in huey), now alongside its result."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from huey import signals as S
from huey.constants import EmptyData

from meingym_tasks.queue.app import MeinGymHuey
from meingym_tasks.settings import Settings

test_queue = MeinGymHuey("revoke-flag-test")


@test_queue.job("noop")
def noop(n: int | None) -> int | None:
    return n


@pytest.fixture
def queue(queue_settings: Settings) -> Iterator[MeinGymHuey]:
    test_queue.configure(queue_settings)
    yield test_queue
    test_queue.configure(None)


def run_revoking_it_midway(queue: MeinGymHuey, value: Any) -> Any:
    """Enqueue noop(value) and run it; somebody revokes it while it runs. Returns the task."""

    def revoke(signal: str, task: Any, *args: Any) -> None:
        queue.revoke_by_id(task.id)

    queue.signal(S.SIGNAL_EXECUTING)(revoke)
    try:
        handle = noop(value)
        queue.execute(queue.dequeue())
    finally:
        queue.disconnect_signal(revoke, S.SIGNAL_EXECUTING)
    return handle


def test_the_flag_of_a_job_revoked_while_running_is_gone_with_its_result(queue: MeinGymHuey) -> None:
    handle = run_revoking_it_midway(queue, 7)

    assert handle.get() == 7
    assert queue.storage.peek_data(handle.task.revoke_id) is EmptyData
    assert not queue.is_revoked(handle.task)


def test_a_job_without_a_stored_result_clears_its_flag_too(queue: MeinGymHuey) -> None:
    handle = run_revoking_it_midway(queue, None)  # None is not stored

    assert queue.storage.peek_data(handle.task.id) is EmptyData
    assert queue.storage.peek_data(handle.task.revoke_id) is EmptyData
    assert not queue.is_revoked(handle.task)


def test_a_flag_set_before_the_job_ran_still_revokes_it(queue: MeinGymHuey) -> None:
    handle = noop(3)
    queue.revoke_by_id(handle.id)

    queue.execute(queue.dequeue())

    assert queue.storage.peek_data(handle.id) is EmptyData  # never ran: no result
    assert queue.is_revoked(handle.task)


# --------------------------------------------------------------------------- under a lease (a consumer)


@pytest.fixture
def leased(queue: MeinGymHuey, monkeypatch: pytest.MonkeyPatch) -> MeinGymHuey:
    """The queue as a consumer runs it: messages taken into its in-flight place, acknowledged after the job.

    On Redis the revoke flags come with the message (one round trip): reading them again fails the test.
    """
    queue.lease.start("revoke-flag-consumer")
    if queue.settings.broker == "redis":

        def peek_many(keys: Any) -> Any:
            raise AssertionError("the revoke flags were read apart from the take")

        monkeypatch.setattr(queue.storage, "peek_many", peek_many)
    return queue


def run_next(queue: MeinGymHuey) -> Any:
    task = queue.dequeue()
    assert task is not None
    return queue.execute(task)


def test_under_a_lease_a_job_revoked_before_it_ran_is_not_run(leased: MeinGymHuey) -> None:
    handle = noop(3)
    leased.revoke_by_id(handle.id)

    run_next(leased)

    assert leased.storage.peek_data(handle.id) is EmptyData
    assert leased.storage.inflight() == []  # acknowledged all the same
    assert leased.storage.peek_data(handle.task.revoke_id) is not EmptyData  # still revoked


def test_under_a_lease_a_revoke_once_skips_one_run_and_is_then_gone(leased: MeinGymHuey) -> None:
    handle = noop(4)
    leased.revoke_by_id(handle.id, revoke_once=True)

    run_next(leased)

    assert leased.storage.peek_data(handle.id) is EmptyData
    assert leased.storage.peek_data(handle.task.revoke_id) is EmptyData


def test_under_a_lease_a_revoked_job_kind_is_not_run_and_others_run(leased: MeinGymHuey) -> None:
    leased.revoke_all(noop)
    skipped = noop(5)
    run_next(leased)
    assert leased.storage.peek_data(skipped.id) is EmptyData

    leased.restore_all(noop)
    handle = noop(6)
    run_next(leased)
    assert handle.get() == 6  # written with the acknowledgement
    assert leased.storage.inflight() == []
