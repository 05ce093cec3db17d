"""At most one run of a single-flight job at a time, decided in the broker.

A trigger claims the job's key (``single-flight:<job>``) with an atomic
``put_if_empty`` of ``{"job_id", "since"}``: of any number of triggers racing,
exactly one wins, on every broker (``tests/test_brokers.py``); the others
answer with the id of the run that holds the claim. Taking over the claim of a
run that has finished without releasing it, and releasing it, are one
compare-and-swap each (``Broker.swap``): a trigger or a release that acts on a
claim somebody else changed meanwhile changes nothing. Huey's ``lock_task`` is
not enough here: it only stops a second run from executing, while a trigger
must answer with the id of the run that already holds the claim.

What this does not promise: the claim has a time to live
(``MEINGYM_UPDATE_LOCK_TTL``), the last resort for a run whose consumer died
without releasing it. A run that lasts longer loses its claim, and the next
trigger starts a second run beside it.
"""

from __future__ import annotations

import json
import time

from huey.constants import EmptyData

from meingym_tasks.exceptions import JobStateConflict
from meingym_tasks.queue.app import MeinGymHuey


def key(job: str) -> str:
    return f"single-flight:{job}"


def _holder(queue: MeinGymHuey, job: str) -> tuple[str, bytes] | None:
    """The job id holding ``job``'s claim, with the claim's stored value (for a compare-and-swap)."""
    raw = queue.storage.peek_data(key(job))
    if raw is EmptyData:
        return None
    value = bytes(raw)
    return str(json.loads(value)["job_id"]), value


def claim(queue: MeinGymHuey, job: str, job_id: str) -> str | None:
    """Claim the run of ``job`` for ``job_id``; returns None when claimed, else the holder's job id.

    A holder whose result is already stored has finished without releasing
    (its finishing step died): its claim is taken over in one step.
    """
    value = json.dumps({"job_id": job_id, "since": time.time()}).encode()
    ttl = queue.settings.update_lock_ttl
    for _ in range(10):
        if queue.storage.put_if_empty(key(job), value, ttl):
            return None
        holder = _holder(queue, job)
        if holder is None:
            continue  # released between our two calls: try again
        holder_id, held = holder
        if not queue.storage.has_data_for_key(holder_id):
            return holder_id
        if queue.storage.swap(key(job), held, value, ttl):
            return None
    raise JobStateConflict(f"{job}: the run's claim kept changing under ten tries; try again")


def release(queue: MeinGymHuey, job: str, job_id: str) -> None:
    """Release ``job``'s claim if ``job_id`` still holds it (a claim taken over meanwhile stays)."""
    holder = _holder(queue, job)
    if holder is not None and holder[0] == job_id:
        queue.storage.swap(key(job), holder[1], None)


def current(queue: MeinGymHuey, job: str) -> str | None:
    """The job id of ``job``'s run in progress, if any."""
    holder = _holder(queue, job)
    return None if holder is None else holder[0]
