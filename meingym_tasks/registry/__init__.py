"""The persistent job registry: every job's state, attempts, progress and outcome.

``install(queue)`` makes the registry the queue's observer (huey's signals and
the queue core's events, see :mod:`meingym_tasks.queue.observer`);
:mod:`meingym_tasks.registry.queries` reads it.
"""

from __future__ import annotations

from meingym_tasks.queue.app import MeinGymHuey
from meingym_tasks.registry.recorder import Recorder, defer_completion, recorder_for, records_written_now


def install(queue: MeinGymHuey) -> Recorder:
    """Record ``queue``'s jobs in the registry (idempotent)."""
    return recorder_for(queue)


__all__ = ["Recorder", "defer_completion", "install", "recorder_for", "records_written_now"]
