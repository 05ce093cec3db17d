"""The persistent job registry: every job's state, attempts, progress and outcome.

``install(queue)`` connects a queue's signals to the registry and makes its
consumers keep heartbeats; :mod:`meingym_tasks.registry.queries` reads it.
"""

from __future__ import annotations

from meingym_tasks.queue.app import MeinGymHuey
from meingym_tasks.registry.consumer import RegistryConsumer
from meingym_tasks.registry.recorder import Recorder, defer_completion, recorder_for


def install(queue: MeinGymHuey) -> Recorder:
    """Record ``queue``'s jobs in the registry (idempotent)."""
    queue.consumer_class = RegistryConsumer
    return recorder_for(queue)


__all__ = ["Recorder", "RegistryConsumer", "defer_completion", "install", "recorder_for"]
