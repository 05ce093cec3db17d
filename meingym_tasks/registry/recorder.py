"""Huey's signals turned into registry records.

Every process buffers its transitions and one writer thread writes them every
``FLUSH_INTERVAL`` (and at exit): a producer's enqueue is one broker call, and
a consumer pays one batched write per interval instead of a round trip per
state change. The common transitions (enqueued, started, completed, and
started-then-completed folded into one row) are rows of one statement per kind
(see :mod:`meingym_tasks.registry.rows`); anything else for a job in the same
batch is written statement by statement, in order.
The web app writes each enqueue in the request's transaction instead.

A write that fails is logged and retried with the next batch; it never fails
the job it describes.

Built like ``huey.contrib.stats`` (buffer, writer thread, flush on shutdown)
rather than on it: stats logs every signal as an event row (two to four per
job), while the registry keeps one record per job, whose times already give
throughput and per-job durations.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

import peewee
from huey import signals as S
from huey.api import PeriodicTask, Task

from meingym_tasks.clock import utcnow
from meingym_tasks.db.database import database, init_database
from meingym_tasks.db.fields import write_transaction
from meingym_tasks.exceptions import JobCancelled
from meingym_tasks.queue.app import JobTask, MeinGymHuey
from meingym_tasks.queue.observer import Acknowledge, AckPolicy, ConsumerInfo
from meingym_tasks.registry import rows
from meingym_tasks.registry.models import (
    COMPLETE,
    EXPIRED,
    FAILED,
    INTERRUPTED,
    QUEUED,
    RETRYING,
    REVOKED,
    RUNNING,
    SCHEDULED,
    ConsumerRecord,
    DeadLetter,
    JobAttempt,
    JobRecord,
)

logger = logging.getLogger("meingym_tasks.registry")

FLUSH_INTERVAL = 0.2
MAX_BUFFERED = 100_000
MAX_JSON = rows.MAX_JSON

Write = Callable[[], None]


_consumer_name: tuple[int, str] | None = None


def consumer_name() -> str:
    """``host:pid`` of this process (asked once per process: it is on every job's hot path)."""
    global _consumer_name
    pid = os.getpid()
    if _consumer_name is None or _consumer_name[0] != pid:
        _consumer_name = (pid, f"{socket.gethostname()}:{pid}")
    return _consumer_name[1]


def consumer_row_id(consumer: ConsumerInfo) -> str:
    """The consumer's key in ``job_consumer``: ``host:pid:queue`` (a restarted process replaces its row)."""
    return f"{consumer.host}:{consumer.pid}:{consumer.queue}"


def to_json(value: Any) -> Any:
    """``value`` as plain JSON data (unknown types as text), or a note when it is too large."""
    text = json.dumps(value, default=str)
    if len(text) > MAX_JSON:
        return {"truncated": True, "size": len(text), "start": text[:1000]}
    return json.loads(text)


def arguments_of(task: Task) -> str:
    """The job's arguments as the JSON text of its record."""
    kwargs = {k: v for k, v in task.kwargs.items() if k != "task"} if task.kwargs else {}
    return rows.json_text({"args": list(task.args), "kwargs": kwargs})


def defer_completion(task: JobTask) -> None:
    """Mark ``task`` as finishing later, in other jobs (its record stays ``running``)."""
    task.completes_later = True


_write_now: ContextVar[bool] = ContextVar("meingym_registry_write_now", default=False)


@contextmanager
def records_written_now() -> Iterator[None]:
    """Write the records of jobs enqueued in this block at once, in the caller's transaction.

    For the web API: an accepted job's record commits with the request's
    transaction (all or nothing), where other producers batch theirs.
    """
    token = _write_now.set(True)
    try:
        yield
    finally:
        _write_now.reset(token)


class AckAfterWrite:
    """The registry's acknowledgement policy: a message leaves the broker once its outcome is written.

    So a job leaves its consumer's in-flight place only when its outcome is in
    the registry: a consumer killed in between runs it again, instead of
    leaving a record that says "running" forever.
    """

    def __init__(self, recorder: Recorder, acknowledge: Acknowledge) -> None:
        self.recorder = recorder
        self.acknowledge = acknowledge

    def finished(self, message: bytes) -> None:
        self.recorder.acknowledge_after_write(message, self.acknowledge)


class Recorder:
    """Writes the registry for one queue: huey's signals, and the queue core's :class:`QueueObserver` events."""

    def __init__(self, queue: MeinGymHuey) -> None:
        self.queue = queue
        self.buffered = False
        self._buffer: list[tuple[str | None, Write]] = []
        self._consumer = False
        self._acks: list[bytes] = []
        self._acknowledge: Acknowledge | None = None
        self._fork_hook = False
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None

    # -- the queue core's events (QueueObserver) ---------------------------------------------------

    def ack_policy(self, acknowledge: Acknowledge) -> AckPolicy:
        return AckAfterWrite(self, acknowledge)

    def enqueue_failed(self, task: Task) -> None:
        """Forget the buffered record of an enqueue the broker refused (nothing half-written)."""
        with self._lock:
            self._buffer = [(job_id, write) for job_id, write in self._buffer if job_id != task.id]

    def consumer_started(self, consumer: ConsumerInfo) -> None:
        self.start_buffering(consumer=True)

    def consumer_alive(self, consumer: ConsumerInfo) -> None:
        """The consumer's row for ``meingym-tasks queues``, renewed every few seconds."""
        try:
            init_database(self.queue.settings)
            row = {
                "consumer_id": consumer_row_id(consumer),
                "queue": consumer.queue,
                "host": consumer.host,
                "pid": consumer.pid,
                "workers": consumer.workers,
                "worker_type": consumer.worker_type,
                "started_at": consumer.started_at,
                "last_seen_at": utcnow(),
            }
            (
                ConsumerRecord.insert(row)
                .on_conflict(conflict_target=[ConsumerRecord.consumer_id], update={"last_seen_at": row["last_seen_at"]})
                .execute()
            )
        except Exception:
            logger.exception("registry: heartbeat of %s failed", consumer.consumer_id)

    def consumer_stopped(self, consumer: ConsumerInfo) -> None:
        """Write out what is buffered (the interrupted jobs among it) and drop the consumer's row."""
        self.stop_buffering()
        try:
            ConsumerRecord.delete().where(ConsumerRecord.consumer_id == consumer_row_id(consumer)).execute()
        except Exception:
            logger.exception("registry: could not remove consumer %s", consumer.consumer_id)

    def reconfiguring(self) -> None:
        self.forget_buffered()

    def dead_lettered(self, message: bytes, reason: str) -> None:
        self.record_dead_letter(message, reason)

    def recovered(self, task: Task, dead_consumer: str) -> int | None:
        """Count the recovery and say it on the record, with the reason, as an attempt of its own.

        The attempt on ``dead_consumer`` ends ``interrupted`` with a ``job_attempt``
        row saying its lease was taken over, so the run that follows is a second
        attempt with its reason. The dead consumer may not be dead, only cut off
        (a network partition): then the job runs on both sides, never silently.
        """
        count = self.count_recovery(task.id)
        reason = (
            f"interrupted: the lease of consumer {dead_consumer} expired (no heartbeat for "
            f"{self.queue.settings.heartbeat_timeout} s: it died or lost the broker); "
            f"taken over by {consumer_name()}, run again"
        )
        interrupted = self._failed(
            task.id, INTERRUPTED, {"error": reason, "traceback": ""}, dead_consumer, utcnow(), None
        )

        def write() -> None:
            # The lease held the job, so that attempt counts even when its "running" never reached us.
            at_least_one = peewee.Case(None, [(JobRecord.attempts < 1, 1)], JobRecord.attempts)
            JobRecord.update(attempts=at_least_one).where(JobRecord.job_id == task.id).execute()
            interrupted()

        try:
            self._apply([write])
        except Exception:
            logger.exception("registry: could not record the takeover of %s", task.id)
        return count

    def requeued(self, task: Task) -> None:
        self.record_now(S.SIGNAL_ENQUEUED, task)

    def given_up(self, task: Task, reason: str) -> None:
        self.fail_now(task, reason)

    # -- writes outside the buffer -----------------------------------------------------------------

    def record_dead_letter(self, data: bytes, reason: str) -> None:
        """Keep a message that cannot run in ``job_dead_letter`` (synchronously: it is rare)."""
        try:
            init_database(self.queue.settings)
            DeadLetter.create(
                queue=self.queue.name,
                reason=reason[:2000],
                payload=bytes(data[:4096]).hex(),
                size=len(data),
                consumer=consumer_name(),
                received_at=utcnow(),
            )
        except Exception:
            logger.exception("registry: could not keep a dead letter (%s)", reason)

    def count_recovery(self, job_id: str) -> int | None:
        """Count one recovery of ``job_id`` from a dead consumer; returns the count (None if unknown)."""
        try:
            self.flush()  # our own buffered writes first
            init_database(self.queue.settings)
            with write_transaction():
                JobRecord.update(recoveries=JobRecord.recoveries + 1).where(JobRecord.job_id == job_id).execute()
                return JobRecord.select(JobRecord.recoveries).where(JobRecord.job_id == job_id).scalar()  # type: ignore[no-any-return]
        except Exception:
            logger.exception("registry: could not count the recovery of %s", job_id)
            return None

    def fail_now(self, task: Task, reason: str) -> None:
        """Fail ``task``'s record at once (a job that keeps killing its consumer)."""
        try:
            self.flush()
            init_database(self.queue.settings)
            finish_record(task.id, FAILED, error={"error": reason, "traceback": ""})
        except Exception:
            logger.exception("registry: could not fail %s", task.id)

    def attach(self) -> None:
        self.queue.observe(self)
        self.queue.signal(
            S.SIGNAL_ENQUEUED, S.SIGNAL_SCHEDULED, S.SIGNAL_EXECUTING, S.SIGNAL_REVOKED, S.SIGNAL_EXPIRED,
            S.SIGNAL_INTERRUPTED,
        )(self.on_signal)  # fmt: skip
        self.queue.post_execute("meingym-registry")(self.on_executed)
        self.queue.on_shutdown("meingym-registry")(self.flush)  # each worker, a forked one too, writes its last

    def _after_fork(self) -> None:
        """In a forked worker: fresh locks, and a writer thread of its own (the parent's did not come along).

        What the parent had buffered is the parent's to write.
        """
        self._lock, self._flush_lock = threading.Lock(), threading.Lock()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._buffer, self._acks = [], []
        if self.buffered:
            self._writer = threading.Thread(target=self._write_loop, name=f"registry-{self.queue.name}", daemon=True)
            self._writer.start()

    def acknowledge_after_write(self, message: bytes, acknowledge: Acknowledge) -> None:
        """Acknowledge ``message`` once the transitions buffered so far are written (see :class:`AckAfterWrite`)."""
        if not self.buffered:  # unbuffered writes are synchronous: the outcome is written already
            acknowledge([message])
            return
        with self._lock:
            self._acknowledge = acknowledge
            self._acks.append(message)

    def start_buffering(self, consumer: bool = True) -> None:
        """Buffer transitions and write them from a thread: in a consumer, or a producer that batches.

        A consumer also acknowledges jobs only once their outcome is written.
        """
        if self.buffered:
            return
        if not self._fork_hook:
            os.register_at_fork(after_in_child=self._after_fork)  # process workers: see _after_fork
            self._fork_hook = True
        self.buffered = True
        self._consumer = consumer
        if not consumer:
            atexit.register(self.stop_buffering)  # a CLI run writes its records before it exits
        self._stop.clear()
        self._writer = threading.Thread(target=self._write_loop, name=f"registry-{self.queue.name}", daemon=True)
        self._writer.start()

    def stop_buffering(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._writer is not None:
            self._writer.join(timeout=10)
        self.flush()
        self.buffered = False
        if not self._consumer:
            atexit.unregister(self.stop_buffering)

    # -- signals -----------------------------------------------------------------------------------

    def on_signal(self, signal: str, task: Task, *args: Any) -> None:
        if isinstance(task, PeriodicTask):
            return  # housekeeping, not a job anybody asked for
        try:
            write = self._write_for(signal, task)
            if write is None:
                return
            if signal == S.SIGNAL_ENQUEUED:
                if _write_now.get() or (not self.buffered and not self.queue.settings.registry_batching):
                    self._apply([write])
                    return
                if not self.buffered:
                    self.start_buffering(consumer=False)  # a producer: one broker call per enqueue
            self._submit(write, task.id)
        except Exception:
            logger.exception("registry: could not record %s of %s", signal, task.id)

    def forget_buffered(self) -> None:
        """Stop buffering and drop what is pending: the queue is about to use other settings.

        Writing it would need the old settings' database, and binding that would
        take the database away from whoever just configured the new one. Settings
        change at start-up (and between tests), when nothing is pending.
        """
        self._stop.set()
        self._wake.set()
        if self._writer is not None and self._writer is not threading.current_thread():
            self._writer.join(timeout=10)
        with self._lock:
            dropped = len(self._buffer)
            self._buffer, self._acks = [], []
        if dropped:
            logger.warning("registry: settings changed; dropped %d unwritten transition(s)", dropped)
        if self.buffered and not self._consumer:
            atexit.unregister(self.stop_buffering)
        self.buffered = False

    def record_now(self, signal: str, task: Task) -> None:
        """Write a transition at once, past the buffer.

        For a consumer handing a job to others (recovery, shutdown): the record
        must say ``queued`` before the message is back on the queue, or another
        consumer's ``complete`` could be overwritten by our late ``queued``.
        """
        try:
            write = self._write_for(signal, task)
            if write is not None:
                self.flush()  # after what this process wrote before
                self._apply([write])
        except Exception:
            logger.exception("registry: could not record %s of %s", signal, task.id)

    def _write_for(self, signal: str, task: Task) -> Write | None:
        now = utcnow()
        if signal == S.SIGNAL_ENQUEUED:
            return self._enqueued(task, now)
        if signal == S.SIGNAL_SCHEDULED:
            return self._scheduled(task.id, task.eta, now)
        if signal == S.SIGNAL_EXECUTING:
            return self._executing(task, now, consumer_name())
        if signal == S.SIGNAL_REVOKED:
            return self._ended(task.id, REVOKED, now)
        if signal == S.SIGNAL_EXPIRED:
            return self._ended(task.id, EXPIRED, now)
        if signal == S.SIGNAL_INTERRUPTED:
            return self._ended(task.id, INTERRUPTED, now)
        return None

    def on_executed(self, task: Task, value: Any, exception: BaseException | None) -> None:
        if isinstance(task, PeriodicTask):
            return
        now = utcnow()
        try:
            if exception is None:
                if not (isinstance(task, JobTask) and task.completes_later):
                    self._submit(self._completed(task.id, rows.json_text(value), now), task.id)
                return
            error = self.queue.build_error_result(task, exception)
            if isinstance(exception, JobCancelled):
                state = REVOKED
            elif not task.retries:
                state = FAILED
            else:
                state = RETRYING
            next_attempt = now + timedelta(seconds=task.retry_delay or 0) if state == RETRYING else None
            self._submit(self._failed(task.id, state, error, consumer_name(), now, next_attempt), task.id)
        except Exception:
            logger.exception("registry: could not record the outcome of %s", task.id)

    # -- writes --------------------------------------------------------------------------------------

    def _row(self, task: Task, state: str, now: datetime, consumer: str | None = None) -> tuple[Any, ...]:
        return rows.insert_params(
            job_id=task.id,
            queue=self.queue.name,
            name=type(task).__name__,
            parent_id=task.kwargs.get("parent_id") if task.kwargs else None,
            arguments=arguments_of(task),
            state=state,
            attempts=1 if state == RUNNING else 0,
            max_attempts=(task.retries or 0) + 1,
            now=now,
            scheduled_for=task.eta,
            consumer=consumer,
        )

    def _enqueued(self, task: Task, now: datetime) -> Write:
        # On conflict only the state moves (not back from running or finished): a batched
        # enqueue may land after the consumer already recorded the job running.
        eta = task.eta
        state = SCHEDULED if eta is not None and eta > now else QUEUED
        return rows.RowWrite(rows.ENQUEUED, task.id, self._row(task, state, now))

    def _scheduled(self, job_id: str, eta: datetime | None, now: datetime) -> Write:
        def write() -> None:
            (
                JobRecord.update(next_attempt_at=eta, updated_at=now)
                .where(JobRecord.job_id == job_id, JobRecord.state == RETRYING)
                .execute()
            )
            (
                JobRecord.update(state=SCHEDULED, scheduled_for=eta, updated_at=now)
                .where(JobRecord.job_id == job_id, JobRecord.state.in_([QUEUED, SCHEDULED]))
                .execute()
            )

        return write

    def _executing(self, task: Task, now: datetime, consumer: str) -> Write:
        # Creates the record when its enqueue was lost; a finished job is not restarted.
        return rows.RowWrite(rows.STARTED, task.id, self._row(task, RUNNING, now, consumer))

    def _completed(self, job_id: str, result: str, now: datetime) -> Write:
        return rows.RowWrite(rows.COMPLETED, job_id, rows.completed_params(job_id, result, now))

    def _failed(
        self,
        job_id: str,
        state: str,
        error: dict[str, Any],
        consumer: str,
        now: datetime,
        next_attempt: datetime | None,
    ) -> Write:
        def write() -> None:
            attempt = JobRecord.select(JobRecord.attempts).where(JobRecord.job_id == job_id)
            JobAttempt.insert(
                job_id=job_id,
                attempt=peewee.fn.COALESCE(attempt, 1),
                error=error["error"],
                traceback=error["traceback"],
                consumer=consumer,
                failed_at=now,
            ).execute()
            which = JobRecord.job_id == job_id
            if state != INTERRUPTED:
                # A failure reported late (its consumer was cut off while another one's attempt of the same
                # job completed) stays an attempt row above; it does not turn a completed record back.
                which &= JobRecord.state != COMPLETE
            (
                JobRecord.update(
                    state=state,
                    error=error["error"],
                    next_attempt_at=next_attempt,
                    finished_at=None if state == RETRYING else now,
                    updated_at=now,
                )
                .where(which)
                .execute()
            )

        return write

    def _ended(self, job_id: str, state: str, now: datetime) -> Write:
        def write() -> None:
            (JobRecord.update(state=state, finished_at=now, updated_at=now).where(JobRecord.job_id == job_id).execute())

        return write

    # -- applying ------------------------------------------------------------------------------------

    def _submit(self, write: Write, job_id: str | None = None) -> None:
        if not self.buffered:
            self._apply([write])
            return
        with self._lock:
            self._buffer.append((job_id, write))

    def _apply(self, writes: list[Write]) -> None:
        init_database(self.queue.settings)
        with write_transaction():
            for write in writes:
                write()

    def _apply_batch(self, batch: list[tuple[str | None, Write]]) -> None:
        """Write a batch in one transaction: row writes per kind, then the rest one by one."""
        groups, one_by_one = rows.plan(batch)
        init_database(self.queue.settings)
        with write_transaction():
            for kind, params in groups.items():
                rows.write_many(kind, params)
            for write in one_by_one:
                write()

    def flush(self) -> None:
        """Write everything buffered so far, then acknowledge the jobs it concluded."""
        with self._flush_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
                acks, self._acks = self._acks, []
            if not batch and not acks:
                return
            try:
                if batch:
                    self._apply_batch(batch)
            except Exception:
                logger.exception("registry: could not write %d transition(s); will retry", len(batch))
                with self._lock:
                    if len(self._buffer) + len(batch) <= MAX_BUFFERED:
                        self._buffer[:0] = batch
                        self._acks[:0] = acks
                    else:
                        logger.error("registry: buffer full, dropped %d transition(s)", len(batch))
                        self._acks[:0] = acks  # still acknowledge: the jobs did end
                if not database.is_closed():
                    database.close()  # a broken connection is reopened on the next flush
                return
            if acks and self._acknowledge is not None and not self._acknowledge(acks):
                with self._lock:  # the broker is away (logged once per outage): the acks wait
                    self._acks[:0] = acks

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(FLUSH_INTERVAL)
            self._wake.clear()
            self.flush()
        if database.obj is not None and not database.is_closed():
            database.close()


_recorders: dict[str, Recorder] = {}


def recorder_for(queue: MeinGymHuey) -> Recorder:
    """The one recorder of ``queue``, attached to its signals on first use."""
    recorder = _recorders.get(queue.name)
    if recorder is None or recorder.queue is not queue:
        recorder = Recorder(queue)
        recorder.attach()
        _recorders[queue.name] = recorder
    return recorder


def finish_record(job_id: str, state: str, result: Any = None, error: dict[str, Any] | None = None) -> None:
    """End a record whose job completes in other jobs (see :func:`defer_completion`), synchronously."""
    flush_all()  # the record's own buffered transitions (it may not even exist yet) land first
    now = utcnow()
    with write_transaction():
        if error is not None:
            attempt = JobRecord.select(JobRecord.attempts).where(JobRecord.job_id == job_id)
            JobAttempt.insert(
                job_id=job_id,
                attempt=peewee.fn.COALESCE(attempt, 1),
                error=error["error"],
                traceback=error.get("traceback", ""),
                consumer=consumer_name(),
                failed_at=now,
            ).execute()
        (
            JobRecord.update(
                state=state,
                finished_at=now,
                # the consumer's buffered "running" may land after this (and is then skipped)
                started_at=peewee.fn.COALESCE(JobRecord.started_at, now),
                attempts=peewee.Case(None, [(JobRecord.attempts < 1, 1)], JobRecord.attempts),
                result=None if result is None else to_json(result),
                error=None if error is None else error["error"],
                updated_at=now,
            )
            .where(JobRecord.job_id == job_id)
            .execute()
        )


def flush_all() -> None:
    """Write what this process has buffered, so that its own reads see its own writes."""
    for recorder in list(_recorders.values()):
        if recorder.buffered:
            recorder.flush()
