"""The no-op job (one int in, the same int out) on plain huey and on the full meingym-tasks stack.

``full_queue`` is a :class:`MeinGymHuey` like the project's own queues, with
everything a production consumer turns on: the registry (``install``), signed
messages, reliable fetch and heartbeats (the consumer class ``install`` sets),
and results that expire. Its settings come from the environment, like the real
queues'. ``plain_queue`` builds a stock ``RedisHuey`` / ``SqliteHuey`` with the
same job and huey's defaults (results on), and no project code at all.
"""

from __future__ import annotations

from huey import Huey, RedisHuey, SqliteHuey
from huey.api import TaskWrapper

from meingym_tasks import registry
from meingym_tasks.queue.app import MeinGymHuey

FULL_QUEUE = "bench-queue"
PLAIN_QUEUE = "bench-plain"

full_queue = MeinGymHuey(FULL_QUEUE)
registry.install(full_queue)


@full_queue.job("noop")
def noop(n: int) -> int:
    """Return ``n``: all the cost is the framework's."""
    return n


def plain_queue(broker: str, location: str) -> tuple[Huey, TaskWrapper]:
    """A plain huey instance on ``broker`` (a Redis URL or a SQLite file) with the no-op job."""
    huey: Huey
    if broker == "redis":
        huey = RedisHuey(PLAIN_QUEUE, url=location, results=True)
    else:
        huey = SqliteHuey(PLAIN_QUEUE, filename=location, results=True)

    @huey.task(name="noop")
    def plain_noop(n: int) -> int:
        return n

    return huey, plain_noop
