"""Reliable fetch: no message is lost to a consumer that dies, stops or loses its broker.

* A consumer takes a message into its own in-flight place in the broker (a
  Redis list, SQL rows) and acknowledges it only when the job has ended and
  the queue's :class:`~meingym_tasks.queue.observer.AckPolicy` says so (the
  registry's: once the outcome is written).
* Its heartbeat in the broker expires if it dies; the reaper, in every
  consumer and safe to run concurrently, moves a dead consumer's messages back
  onto the queue, each exactly once (``claim_one`` is atomic). A job recovered
  more than ``MEINGYM_MAX_RECOVERIES`` times is failed and dead-lettered.
* On a graceful stop, jobs still running when huey gives up waiting go back
  on the queue; a message taken after the stop began goes straight back.
* The orphan check puts back messages that sit in our own in-flight place
  while no worker holds them (huey failed around a job while the broker was
  away).

:class:`Lease` is the state (one per queue and process, used by the worker
threads through :class:`~meingym_tasks.queue.app.MeinGymHuey`);
:class:`ReliableConsumer` is huey's consumer driving it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from huey import signals as S
from huey.consumer import Consumer

from meingym_tasks.clock import utcnow
from meingym_tasks.db.database import close_database
from meingym_tasks.queue.brokers import broker_errors
from meingym_tasks.queue.observer import AckNow, AckPolicy, ConsumerInfo

if TYPE_CHECKING:
    from huey.api import Task

    from meingym_tasks.queue.app import MeinGymHuey

logger = logging.getLogger("meingym_tasks.consumer")

#: How often a consumer tells the observer (the registry) it is alive.
ALIVE_INTERVAL = 10.0

#: The signals huey's consumer handles (stop gracefully, stop now, restart).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class HeldSignals:
    """Stop signals that arrive while huey's ``Consumer.start()`` runs, kept until huey handles them.

    huey installs its signal handlers only at the end of ``start()``, after its
    worker threads run: a ``systemctl stop`` in between raised KeyboardInterrupt
    out of ``start()`` and killed the consumer mid-job instead of stopping it
    gracefully. huey's handlers replace ours; :meth:`deliver` then raises each
    signal that arrived once, to them (a second SIGINT would be huey's "stop
    now", raised as KeyboardInterrupt right here).
    """

    def __init__(self) -> None:
        self.arrived: list[int] = []
        self._before = {signum: signal.signal(signum, self._keep) for signum in STOP_SIGNALS}

    def _keep(self, signum: int, frame: object) -> None:
        self.arrived.append(signum)

    def deliver(self) -> None:
        for signum in dict.fromkeys(self.arrived):
            signal.raise_signal(signum)

    def restore(self) -> None:
        """Start failed: the process's handlers as they were."""
        for signum, handler in self._before.items():
            signal.signal(signum, handler)


class Lease:
    """This process's messages in flight on one queue, and when they leave the broker."""

    def __init__(self, queue: MeinGymHuey) -> None:
        self.queue = queue
        self.consumer_id: str | None = None
        #: Messages taken and not yet acknowledged by this process.
        self.held: set[bytes] = set()
        #: Set when the consumer begins to stop: a message taken after that goes straight back.
        self.stopping = False
        self.policy: AckPolicy = AckNow(self.acknowledge)
        self._interrupted: set[str] = set()
        #: Per held message: results (key, value, ttl) and keys to delete, written with its acknowledgement.
        self._outcomes: dict[bytes, tuple[list[tuple[str, bytes, float]], list[str]]] = {}
        self._suspects: set[bytes] = set()
        #: Whether a heartbeat of this lease reached the broker: reapers find only consumers that beat.
        self._beaten = False
        self._lock = threading.Lock()
        queue.signal(S.SIGNAL_INTERRUPTED)(self._remember_interrupted)

    def reset(self) -> None:
        """Forget this process's lease (the queue switches to other settings: another broker)."""
        with self._lock:
            self.held.clear()
            self._interrupted.clear()
            self._outcomes.clear()
        self.consumer_id = None
        self.stopping = False
        self._beaten = False
        self._suspects = set()
        self.policy = AckNow(self.acknowledge)

    def ready(self) -> bool:
        """False while this consumer's lease is unknown to the broker (its first heartbeat failed).

        Reapers recover only consumers the broker knows (Redis) or treat in-flight
        messages without a heartbeat as a dead consumer's (SQL): either way a lease
        must beat before it takes anything.
        """
        if self.active and not self._beaten:
            self.beat()
        return not self.active or self._beaten

    @property
    def active(self) -> bool:
        """True in a consumer that leases: messages are held in the broker until acknowledged."""
        return self.consumer_id is not None

    # -- the worker threads' side ------------------------------------------------------------------

    def taken(self, data: bytes) -> bool:
        """Hold a message just dequeued; False when it went straight back (the consumer is stopping)."""
        with self._lock:
            self.held.add(data)
        if self.stopping and self.active:  # taken by a dequeue that was already waiting when the stop began
            self.queue.storage.requeue(data)
            self._drop([data])
            return False
        return True

    def finished(self, data: bytes, task: Task) -> None:
        """The job of ``data`` has ended; an interrupted one stays in flight, to go back at exit."""
        with self._lock:
            interrupted = task.id in self._interrupted
            self._interrupted.discard(task.id)
        if not interrupted:
            self.policy.finished(data)

    def rejected(self, data: bytes) -> None:
        """A message that will never run (it was dead-lettered): acknowledge it now."""
        self.acknowledge([data])

    def lost(self, data: bytes) -> None:
        """huey failed around the job (the broker went away): let the orphan check put it back."""
        self._drop([data])

    def store_with_ack(
        self, data: bytes, key: str | None = None, value: bytes = b"", ttl: float = 0.0, delete: str | None = None
    ) -> None:
        """Write result ``key`` (and delete key ``delete``) in the same broker call as ``data``'s acknowledgement.

        The job of ``data`` has ended and its outcome goes with the message:
        while the message is in flight, a consumer that dies runs the job again.
        """
        with self._lock:
            results, deletes = self._outcomes.setdefault(data, ([], []))
            if key is not None:
                results.append((key, value, ttl))
            if delete is not None:
                deletes.append(delete)

    def acknowledge(self, messages: Sequence[bytes]) -> bool:
        """Drop finished messages from our in-flight place, writing their jobs' results in the same call.

        False (and logged once) while the broker is away: the messages, their
        results with them, wait for the next try.
        """
        if self.active:
            with self._lock:
                pending = [self._outcomes[m] for m in messages if m in self._outcomes]
            results = [result for stored, _ in pending for result in stored]
            deletes = [key for _, keys in pending for key in keys]
            try:
                self.queue.storage.ack(messages, results=results, deletes=deletes)
            except broker_errors() as exc:
                self.queue.health.report_error(exc, sleep=False)
                return False
        self._drop(messages)
        return True

    def _drop(self, messages: Sequence[bytes]) -> None:
        with self._lock:
            self.held.difference_update(messages)
            if self._outcomes:
                for message in messages:
                    self._outcomes.pop(message, None)

    def _remember_interrupted(self, signal: str, task: Task, *args: Any) -> None:
        with self._lock:
            self._interrupted.add(task.id)

    # -- the consumer's side -------------------------------------------------------------------------

    def start(self, consumer_id: str) -> None:
        """Lease for ``consumer_id``: beat once and recover what consumers that died before us held."""
        self.consumer_id = consumer_id
        self.stopping = False
        self.queue.storage.lease_for(consumer_id)
        self.beat()
        self.reap()

    def beat(self) -> None:
        try:
            self.queue.storage.beat(self.queue.settings.heartbeat_timeout)
            self._beaten = True
        except broker_errors() as exc:
            self.queue.health.report_error(exc, sleep=False)  # one log line per outage, not per beat

    def reap(self) -> int:
        """Put the jobs of dead consumers back on the queue; returns how many."""
        storage = self.queue.storage
        recovered = 0
        try:
            for dead in storage.dead_consumers():
                mine = 0
                while (data := storage.claim_one(dead)) is not None:
                    self._recover(data, dead)
                    mine += 1
                storage.forget_consumer(dead)
                if mine:
                    logger.warning("%s: recovered %d job(s) of dead consumer %s", self.queue.name, mine, dead)
                recovered += mine
        except broker_errors() as exc:
            self.queue.health.report_error(exc, sleep=False)
        return recovered

    def _recover(self, data: bytes, dead: str) -> None:
        queue, storage = self.queue, self.queue.storage
        try:
            task = queue.deserialize_task(data)
        except Exception as exc:
            queue.dead_letter(data, f"unreadable message recovered from {dead}: {exc}")
            storage.ack([data])
            return
        count = queue.observer.recovered(task, dead)
        limit = queue.settings.max_recoveries
        if count is not None and count > limit:
            reason = f"the job's consumer died {count} times while running it (limit {limit}); not run again"
            logger.error("%s: %s: %s", queue.name, task.id, reason)
            queue.observer.given_up(task, reason)
            queue.dead_letter(data, reason)
            storage.ack([data])
            return
        queue.observer.requeued(task)  # before the message is back: another consumer may finish it at once
        storage.requeue(data)
        logger.warning("%s: job %s (%s) recovered from %s", queue.name, task.id, task.name, dead)

    def requeue_orphans(self) -> None:
        """Put back messages in our own in-flight place that no worker holds any more.

        A message counts as orphaned only when two checks in a row find it
        unheld, so one a worker is just taking is never touched.
        """
        try:
            with self._lock:
                held = set(self.held)
            orphans = {data for data in self.queue.storage.inflight() if data not in held}
            for data in orphans & self._suspects:
                self.queue.storage.requeue(data)
                logger.warning("%s: put an orphaned in-flight job back on the queue", self.queue.name)
            self._suspects = orphans - self._suspects
        except broker_errors() as exc:
            self._suspects = set()
            self.queue.health.report_error(exc, sleep=False)

    def release(self) -> None:
        """At exit: put back what is still in flight (jobs interrupted by the stop), then end the heartbeat."""
        queue, storage = self.queue, self.queue.storage
        try:
            for data in storage.inflight():
                try:
                    task = queue.deserialize_task(data)
                except Exception:
                    logger.exception("%s: a held message does not decode; requeued as it is", queue.name)
                else:
                    queue.observer.requeued(task)  # before it is back
                    logger.warning("%s: job %s put back on the queue at shutdown", queue.name, task.id)
                storage.requeue(data)
            # Last: with the heartbeat gone, a reaper takes whatever a worker still grabbed meanwhile.
            storage.end_heartbeat()
        except broker_errors():
            logger.exception("%s: could not put running jobs back; another consumer will", queue.name)
        # The lease stays: a worker whose dequeue was already waiting may still take a message,
        # which then goes straight back (see taken()). Nothing is buffered any more: ack at once.
        self.policy = AckNow(self.acknowledge)


def log_like_huey() -> None:
    """Send our log lines where huey_consumer sends huey's, at its level.

    ``huey_consumer`` gives only the ``huey`` logger a handler (``-v``/``-q``
    set its level), so the run summaries and recovery warnings of
    ``meingym_tasks.*`` were dropped or printed bare. Nothing changes when the
    root logger already has handlers (``meingym-tasks worker`` configures it).
    """
    ours, huey_logger = logging.getLogger("meingym_tasks"), logging.getLogger("huey")
    if logging.getLogger().handlers or ours.handlers or not huey_logger.handlers:
        return
    for handler in huey_logger.handlers:
        ours.addHandler(handler)
    ours.setLevel(huey_logger.level)
    ours.propagate = False


class ReliableConsumer(Consumer):
    """huey's consumer with a lease: heartbeats, the reaper, the orphan check, release at exit.

    It also tells the queue's observer (the registry) that it started, is
    alive and stopped, and takes its acknowledgement policy from it.
    """

    huey: MeinGymHuey

    def __init__(self, huey: MeinGymHuey, **options: Any) -> None:
        super().__init__(huey, **options)
        host, pid = socket.gethostname(), os.getpid()
        self.info = ConsumerInfo(
            consumer_id=f"{host}:{pid}:{uuid.uuid4().hex[:8]}",
            queue=huey.name,
            host=host,
            pid=pid,
            workers=self.workers,
            worker_type=self.worker_type,
            started_at=utcnow(),
        )
        self.lease = huey.lease
        self.reliable = huey.settings.reliable_fetch
        self._beat_every = huey.settings.heartbeat_timeout / 3
        self._next_beat = self._next_alive = 0.0
        self._stopped = False

    def start(self) -> None:
        log_like_huey()
        observer = self.huey.observer
        observer.consumer_started(self.info)
        if self.reliable:
            self.lease.policy = observer.ack_policy(self.lease.acknowledge)
            self.lease.start(self.info.consumer_id)
            self._next_beat = time.monotonic() + self._beat_every
        if self.environment.forks:  # process workers must not share this process's database connection
            close_database()
        # Until here a stop signal ends the process at once (no job taken yet); from here on,
        # with workers starting, it is kept for huey (see HeldSignals).
        held = HeldSignals()
        try:
            super().start()  # ends by installing huey's signal handlers in place of ours
        except BaseException:
            held.restore()
            raise
        held.deliver()
        self._alive()  # after huey installed its signal handlers: alive means ready

    def loop(self, health_check_ts: float | None = None) -> float | None:
        health_check_ts = super().loop(health_check_ts)
        now = time.monotonic()
        if self.reliable and now >= self._next_beat:
            self._next_beat = now + self._beat_every
            self.lease.beat()
            self.lease.reap()
            if self.worker_type == "thread":  # forked workers hold their messages in other processes
                self.lease.requeue_orphans()
        if now >= self._next_alive:
            self._alive()
        return health_check_ts

    def stop(self, graceful: bool = False) -> None:
        self.lease.stopping = True  # no new job from here on; running ones finish (graceful) or go back
        super().stop(graceful)
        if self._stopped:
            return
        self._stopped = True
        # huey's run() reports interrupted jobs after stop(); report them now, so that their
        # records say "interrupted" before the messages go back below (run() then finds none).
        self.huey.notify_interrupted_tasks()
        try:
            self.huey.observer.consumer_stopped(self.info)  # writes what is buffered, then the rest
        except Exception:
            logger.exception("%s: the observer failed at stop", self.huey.name)
        if self.reliable:
            self.lease.release()

    def _alive(self) -> None:
        self._next_alive = time.monotonic() + ALIVE_INTERVAL
        try:
            self.huey.observer.consumer_alive(self.info)
        except Exception:
            logger.exception("%s: the observer failed on a heartbeat", self.huey.name)
