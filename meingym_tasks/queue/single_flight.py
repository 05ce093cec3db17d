"""At most one run of ``update-all-actions`` at a time, decided in the broker, with two exceptions below.

A trigger claims with an atomic ``put_if_empty`` of ``{"job_id", "since"}``
under one key of the actions queue: of any number of triggers racing, exactly
one wins (on every broker, ``tests/test_brokers.py``); the others answer with
the id of the run that holds the claim. Huey's ``lock_task`` is not enough
here: it only stops a second run from executing, while a trigger must answer
with the id of the run that already holds the claim.

What this does not promise:

* The claim has a time to live (``MEINGYM_UPDATE_LOCK_TTL``), the last resort
  for a run whose consumer died without releasing it. A run that lasts longer
  loses its claim, and the next trigger starts a second run beside it.
* Clearing a claim (:func:`release`, and the takeover of a holder that already
  has a result) is a look followed by a delete, not one atomic step. Two
  triggers that both find a finished holder at the same moment can each start
  a run, and a release that races the takeover of its expired claim can delete
  the new holder's claim.
"""

from __future__ import annotations

import json
import time

from huey.constants import EmptyData

from meingym_tasks.queue.app import MeinGymHuey

KEY = "single-flight:update-all-actions"


def _holder(queue: MeinGymHuey) -> str | None:
    raw = queue.storage.peek_data(KEY)
    if raw is EmptyData:
        return None
    return str(json.loads(bytes(raw))["job_id"])


def claim(queue: MeinGymHuey, job_id: str) -> str | None:
    """Claim the run for ``job_id``; returns None when claimed, else the holder's job id.

    A holder whose result is already stored has finished without releasing
    (its finishing step died), so its claim is cleared and taken over.
    """
    value = json.dumps({"job_id": job_id, "since": time.time()}).encode()
    for _ in range(3):
        if queue.storage.put_if_empty(KEY, value, queue.settings.update_lock_ttl):
            return None
        holder = _holder(queue)
        if holder is None:
            continue  # released between our two calls: try again
        if queue.storage.has_data_for_key(holder):
            release(queue, holder)
            continue
        return holder
    return _holder(queue)


def release(queue: MeinGymHuey, job_id: str) -> None:
    """Release the claim if ``job_id`` still holds it."""
    if _holder(queue) == job_id:
        queue.storage.delete_data(KEY)


def current(queue: MeinGymHuey) -> str | None:
    """The job id of the run in progress, if any."""
    return _holder(queue)
