"""The bench's jobs on plain huey and on the full meingym-tasks stack.

* ``noop(n)``: one int in, the same int out; all the cost is the framework's.
* ``stamp(sent)``: the start latency of a job enqueued at ``sent`` (``time.time()``
  of the producer), written to the file descriptor named by
  ``MEINGYM_BENCH_LATENCY_FD`` (a pipe the bench reads) and returned.

``full_queue`` is a :class:`MeinGymHuey` like the project's own queues, with
everything a production consumer turns on: the registry (``install``), signed
messages, reliable fetch and heartbeats (the consumer class ``install`` sets),
and results that expire. Its jobs are declared as the project's are
(:func:`meingym_tasks.jobs.declare.job`: typed parameters checked on every
enqueue and restored on every execution), so the bench measures the path users
run. Its settings come from the environment, like the real queues'.
``plain_queue`` builds a stock ``RedisHuey`` / ``SqliteHuey`` / ``PostgresHuey``
with the same jobs and huey's defaults (results on), and no project code at all.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import time

from huey import Huey, PostgresHuey, RedisHuey, SqliteHuey
from huey.api import TaskWrapper

from meingym_tasks import registry
from meingym_tasks.jobs.declare import job
from meingym_tasks.queue.app import MeinGymHuey

FULL_QUEUE = "bench-queue"
PLAIN_QUEUE = "bench-plain"
#: Table prefix of plain huey's PostgresHuey in the bench database (ours is ``meingym_queue``).
PLAIN_POSTGRES_PREFIX = "huey_plain"

_latency_fd: list[int] = []


def report_latency(sent: float) -> float:
    """Seconds from ``sent`` to now, also written (8 bytes) to the bench's latency pipe when there is one."""
    latency = time.time() - sent
    if not _latency_fd:
        _latency_fd.append(int(os.environ.get("MEINGYM_BENCH_LATENCY_FD", "-1")))
    if _latency_fd[0] >= 0:
        os.write(_latency_fd[0], struct.pack("d", latency))
    return latency


@dataclasses.dataclass(frozen=True)
class Stack:
    """A queue with the bench's two jobs."""

    queue: Huey
    noop: TaskWrapper
    stamp: TaskWrapper


full_queue = MeinGymHuey(FULL_QUEUE)
registry.install(full_queue)


@job(full_queue, "noop")
def noop(n: int) -> int:
    """Return ``n``: all the cost is the framework's."""
    return n


@job(full_queue, "stamp")
def stamp(sent: float) -> float:
    """Report how long after ``sent`` this job started."""
    return report_latency(sent)


FULL = Stack(full_queue, noop, stamp)


def plain_queue(broker: str, location: str) -> Stack:
    """A plain huey instance on ``broker`` (a Redis URL, a SQLite file or a PostgreSQL DSN) with the jobs."""
    huey: Huey
    if broker == "redis":
        huey = RedisHuey(PLAIN_QUEUE, url=location, results=True)
    elif broker == "postgres":
        huey = PostgresHuey(PLAIN_QUEUE, dsn=location, table_prefix=PLAIN_POSTGRES_PREFIX, results=True)
    else:
        huey = SqliteHuey(PLAIN_QUEUE, filename=location, results=True)

    @huey.task(name="noop")
    def plain_noop(n: int) -> int:
        return n

    @huey.task(name="stamp")
    def plain_stamp(sent: float) -> float:
        return report_latency(sent)

    return Stack(huey, plain_noop, plain_stamp)
