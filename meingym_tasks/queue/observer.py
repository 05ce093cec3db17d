"""What the queue core tells whoever keeps the record of its jobs, stated once.

huey's signals say what happens to a task (enqueued, executing, complete,
error, revoked...). The events below are the ones no signal carries: a message
that never became a task, a consumer's life, a job recovered from a dead
consumer, and when a finished message may leave the broker. The registry
implements :class:`QueueObserver`; a queue without one uses
:class:`NullObserver` and acknowledges at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from huey.api import Task


@dataclasses.dataclass(frozen=True)
class ConsumerInfo:
    """One running consumer of one queue."""

    consumer_id: str  #: unique per start: ``host:pid:random``; its lease in the broker
    queue: str
    host: str
    pid: int
    workers: int
    worker_type: str
    started_at: datetime


class Acknowledge(Protocol):
    """The broker side of an acknowledgement: drop finished messages from the in-flight place."""

    def __call__(self, messages: Sequence[bytes]) -> bool:
        """Acknowledge ``messages``; False when the broker could not be reached (try again later)."""


class AckPolicy(Protocol):
    """When a finished message leaves the broker; chosen by whoever must see the outcome first."""

    def finished(self, message: bytes) -> None:
        """The job of ``message`` has ended (complete, failed, retried, revoked or scheduled again)."""


class AckNow:
    """Acknowledge every finished message at once (a queue without a registry)."""

    def __init__(self, acknowledge: Acknowledge) -> None:
        self.acknowledge = acknowledge

    def finished(self, message: bytes) -> None:
        self.acknowledge([message])


class QueueObserver(Protocol):
    """The registry's side of the queue core: every call is made by the core, none by the observer."""

    def ack_policy(self, acknowledge: Acknowledge) -> AckPolicy:
        """The policy a consumer of this queue follows; ``acknowledge`` reaches the broker."""

    def enqueue_failed(self, task: Task) -> None:
        """The broker refused ``task`` after its enqueued signal: forget it."""

    def dead_lettered(self, message: bytes, reason: str) -> None:
        """A message that cannot run (bad signature, unknown job, wrong arguments); it is never executed."""

    def reconfiguring(self) -> None:
        """The queue is about to use other settings: finish or drop work bound to the old ones."""

    def consumer_started(self, consumer: ConsumerInfo) -> None: ...

    def consumer_alive(self, consumer: ConsumerInfo) -> None:
        """Called every few seconds while the consumer runs."""

    def consumer_stopped(self, consumer: ConsumerInfo) -> None:
        """Called last, after running jobs were reported and before held messages go back."""

    def recovered(self, task: Task, dead_consumer: str) -> int | None:
        """Count one more recovery of ``task`` from a dead consumer; returns the count (None: unknown)."""

    def requeued(self, task: Task) -> None:
        """``task`` goes back on the queue (recovered or released at shutdown): called before it is back."""

    def given_up(self, task: Task, reason: str) -> None:
        """``task`` will not run again (it kept killing its consumers)."""


class NullObserver:
    """No record kept: acknowledge at once, ignore every event."""

    def ack_policy(self, acknowledge: Acknowledge) -> AckPolicy:
        return AckNow(acknowledge)

    def enqueue_failed(self, task: Task) -> None:
        pass

    def dead_lettered(self, message: bytes, reason: str) -> None:
        pass

    def reconfiguring(self) -> None:
        pass

    def consumer_started(self, consumer: ConsumerInfo) -> None:
        pass

    def consumer_alive(self, consumer: ConsumerInfo) -> None:
        pass

    def consumer_stopped(self, consumer: ConsumerInfo) -> None:
        pass

    def recovered(self, task: Task, dead_consumer: str) -> int | None:
        return None

    def requeued(self, task: Task) -> None:
        pass

    def given_up(self, task: Task, reason: str) -> None:
        pass
