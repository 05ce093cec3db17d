"""Progress reports from inside jobs, written straight to the job's registry record.

A job calls :func:`progress` as often as it likes: writes are throttled to a
few per second (the last one, ``done == total``, always goes through). A run
that fans out (``update-all-actions``) counts its batches' work into the
parent record with :func:`add_progress`, so the parent shows one bar.
Reporting progress is also where a running job learns it was cancelled.
"""

from __future__ import annotations

import threading
import time

import peewee

from meingym_tasks.clock import utcnow
from meingym_tasks.exceptions import JobCancelled
from meingym_tasks.queue.context import current_task
from meingym_tasks.registry.models import JobRecord
from meingym_tasks.registry.recorder import flush_all

MIN_INTERVAL = 0.5
_last_write: dict[str, float] = {}
_lock = threading.Lock()


def progress(done: int, total: int | None = None, message: str | None = None) -> None:
    """Report ``done`` of ``total`` for the job running in this thread (no-op outside a job).

    Raises :class:`JobCancelled` when somebody asked for the job to stop; that is
    checked with each report that is written (at most every ``MIN_INTERVAL``
    seconds, and always the last), so a cancelled job stops within half a second
    of work.
    """
    task = current_task.get()
    if task is None:
        return
    now = time.monotonic()
    with _lock:
        last = total is not None and done >= total
        due = now - _last_write.get(task.id, 0.0) >= MIN_INTERVAL or last
        if last:
            _last_write.pop(task.id, None)  # the job is done reporting: keep no entry per job
        elif due:
            _last_write[task.id] = now
    if not due:
        return
    set_progress(task.id, done, total, message)
    if cancel_requested(task.id):
        raise JobCancelled(f"job {task.id} was cancelled while it ran")


def set_progress(job_id: str, done: int, total: int | None = None, message: str | None = None) -> None:
    flush_all()  # the record may still sit in this process's buffer
    fields: dict[str, object] = {"progress_done": done, "updated_at": utcnow()}
    if total is not None:
        fields["progress_total"] = total
    if message is not None:
        fields["progress_message"] = message[:200]
    JobRecord.update(fields).where(JobRecord.job_id == job_id).execute()


def add_progress(job_id: str, done: int) -> None:
    """Add ``done`` to a record's progress in one atomic UPDATE (batches of one run, concurrently)."""
    (
        JobRecord.update(progress_done=peewee.fn.COALESCE(JobRecord.progress_done, 0) + done, updated_at=utcnow())
        .where(JobRecord.job_id == job_id)
        .execute()
    )


def cancel_requested(job_id: str) -> bool:
    return bool(JobRecord.select(JobRecord.cancel_requested).where(JobRecord.job_id == job_id).scalar())
