"""What every broker offers, stated once.

A broker is a huey storage (``enqueue``, ``peek_data``, ``put_data`` ... from
``huey.storage.BaseStorage``) plus what reliable fetch, claims and bounded
retention need. Redis, SQLite and PostgreSQL implement all of it; the contract
tests (``tests/test_brokers.py``, and huey's own in ``tests/test_broker_contract.py``)
hold each of them to it. Code above the brokers calls these methods directly,
never probing for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol


class Broker(Protocol):
    """A huey storage with leases, heartbeats, claims with a time to live and results that expire."""

    name: str

    # -- huey's BaseStorage, as the queue core uses it -------------------------------------------------
    def enqueue(self, data: bytes, priority: float | None = None) -> None: ...
    def queue_size(self) -> int: ...
    def schedule_size(self) -> int: ...
    def peek_data(self, key: str) -> Any: ...
    def put_data(self, key: str, value: bytes, is_result: bool = False) -> None: ...
    def delete_data(self, key: str) -> bool: ...
    def has_data_for_key(self, key: str) -> bool: ...

    # -- reliable fetch ----------------------------------------------------------------------------
    def lease_for(self, consumer_id: str) -> None:
        """From now on :meth:`dequeue` takes messages into ``consumer_id``'s in-flight place."""

    def dequeue(self) -> bytes | None:
        """The next message, moved into this consumer's in-flight place in the same step."""

    def ack(
        self,
        messages: Sequence[bytes],
        results: Sequence[tuple[str, bytes, float]] = (),
        deletes: Sequence[str] = (),
    ) -> None:
        """Drop finished messages from this consumer's in-flight place (one round trip).

        In the same round trip and before that: delete the keys ``deletes`` (keys
        written by :meth:`put_data`, such as revoke flags, which have no time to
        live) and store each ``(key, value, ttl)`` of ``results`` as :meth:`put_result` does.
        """

    def taken_flags(self, task_id: str, name: str) -> list[bytes | None] | None:
        """The revoke flags ``r:<task_id>`` and ``rt:<name>`` read with the message this thread took last.

        Once per message; None when the broker did not read them with it (then
        the caller reads them: huey's ``peek_many``).
        """

    def requeue(self, data: bytes) -> None:
        """Put a message this consumer holds back on the queue and drop it from its in-flight place."""

    def inflight(self, consumer_id: str | None = None) -> list[bytes]:
        """The messages a consumer (default: this one) holds."""

    def beat(self, ttl: float) -> None:
        """This consumer is alive for ``ttl`` more seconds."""

    def end_heartbeat(self) -> None:
        """This consumer is gone: reapers may take whatever it still holds."""

    def dead_consumers(self) -> list[str]:
        """Consumers (other than this one) whose heartbeat has expired."""

    def claim_one(self, dead_id: str) -> bytes | None:
        """Move one message of a dead consumer into ours; atomic, so one reaper gets each message."""

    def forget_consumer(self, consumer_id: str) -> None:
        """Remove a dead consumer's heartbeat bookkeeping once its messages are back."""

    def move_due_to_queue(self, ts: datetime) -> list[bytes]:
        """Move every scheduled message due at ``ts`` onto the queue in one step; returns them."""

    # -- claims and results ------------------------------------------------------------------------
    def put_if_empty(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        """Store ``value`` unless a live value holds ``key``: True for exactly one of any racing callers.

        A value whose ``ttl`` has passed counts as absent and is taken over once.
        """

    def swap(self, key: str, expected: bytes, new: bytes | None, ttl: float | None = None) -> bool:
        """Replace the live value ``expected`` under ``key`` by ``new`` (None: delete it), in one step.

        False, changing nothing, when ``key`` holds anything else (or nothing, or an
        expired value): of callers racing to take over or release one claim, one wins.
        """

    def put_result(self, key: str, value: bytes, ttl: float, delete: str | None = None) -> None:
        """Store a result for ``ttl`` seconds, deleting the key ``delete`` in the same round trip."""

    def prune_results(self, now: float | None = None) -> int:
        """Delete expired results (a no-op where the broker expires them itself); returns how many."""

    def close(self) -> None:
        """Close this process's connections (they reopen on next use)."""
