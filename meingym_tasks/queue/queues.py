"""The two Huey instances, ``actions_queue`` and ``users_queue``.

They are module-level because ``huey_consumer`` imports an instance by dotted
path, yet building one connects to nothing (see :class:`MeinGymHuey`).
"""

from __future__ import annotations

from meingym_tasks.names import ACTIONS_QUEUE, USERS_QUEUE
from meingym_tasks.queue.app import MeinGymHuey
from meingym_tasks.settings import Settings

actions_queue = MeinGymHuey(ACTIONS_QUEUE)
users_queue = MeinGymHuey(USERS_QUEUE)
ALL_QUEUES = {ACTIONS_QUEUE: actions_queue, USERS_QUEUE: users_queue}


def configure(settings: Settings) -> None:
    """Bind both queues to ``settings`` (the CLI, the web app and tests call this)."""
    for queue in ALL_QUEUES.values():
        queue.configure(settings)


def reset() -> None:
    """Forget bound settings and close connections (tests; a re-exec'd consumer)."""
    for queue in ALL_QUEUES.values():
        queue.configure(None)


def queue_named(name: str) -> MeinGymHuey:
    return ALL_QUEUES[name]
