"""A huey Consumer that loses no job: leases, heartbeats, a reaper, and the registry.

* Reliable fetch (``MEINGYM_RELIABLE_FETCH``, on by default): the storage keeps
  every message this consumer took in its in-flight list until the job ended.
* A broker heartbeat every third of ``MEINGYM_HEARTBEAT_TIMEOUT``; the reaper,
  in every consumer and safe to run concurrently, moves the in-flight messages
  of consumers whose heartbeat expired back onto the queue (``interrupted``,
  then ``queued`` in the registry). A job recovered more than
  ``MEINGYM_MAX_RECOVERIES`` times is failed and dead-lettered instead.
* On a graceful stop, jobs still running when huey gives up waiting are put
  back on the queue by the consumer itself.
* The registry: buffered transitions and a heartbeat row for ``queues``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import Any

from huey import signals as S
from huey.consumer import Consumer

from meingym_tasks.clock import utcnow
from meingym_tasks.db.database import init_database
from meingym_tasks.queue.app import MeinGymHuey
from meingym_tasks.queue.brokers import broker_errors
from meingym_tasks.registry.models import ConsumerRecord
from meingym_tasks.registry.recorder import Recorder, recorder_for

logger = logging.getLogger("meingym_tasks.consumer")

HEARTBEAT_INTERVAL = 10.0
#: A consumer whose last registry heartbeat is older than this is not alive.
HEARTBEAT_TIMEOUT = 3 * HEARTBEAT_INTERVAL


class RegistryConsumer(Consumer):
    """Huey's consumer, plus reliable fetch, heartbeats, a reaper and a buffered registry writer."""

    huey: MeinGymHuey

    def __init__(self, huey: MeinGymHuey, **options: Any) -> None:
        super().__init__(huey, **options)
        self.recorder: Recorder = recorder_for(huey)
        self.consumer_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.registry_id = f"{socket.gethostname()}:{os.getpid()}:{huey.name}"
        self.started_at = utcnow()
        settings = huey.settings
        self.reliable = settings.reliable_fetch and hasattr(huey.storage, "lease_for")
        self.lease_ttl = settings.heartbeat_timeout
        self._next_beat = 0.0
        self._next_lease_beat = 0.0
        self._next_reap = 0.0
        self._suspects: set[bytes] = set()
        huey.on_consumer_exit(self._stopped)

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        self.recorder.start_buffering()
        if self.reliable:
            self.huey.storage.lease_for(self.consumer_id)
            self._beat_lease()
            self._reap()  # jobs of consumers that died while nobody was running
        super().start()
        self._beat()  # after huey installed its signal handlers: alive means ready

    def loop(self, health_check_ts: float | None = None) -> float | None:
        health_check_ts = super().loop(health_check_ts)
        now = time.monotonic()
        if self.reliable and now >= self._next_lease_beat:
            self._beat_lease()
        if self.reliable and now >= self._next_reap:
            self._reap()
            if self.worker_type == "thread":  # forked workers hold their messages in other processes
                self._requeue_orphans()
        if now >= self._next_beat:
            self._beat()
        return health_check_ts

    def stop(self, graceful: bool = False) -> None:
        self.huey.stopping = True  # no new job from here on; running ones finish (graceful) or go back
        super().stop(graceful)

    def _stopped(self) -> None:
        # First write out what we buffered (the interrupted jobs among it), then hand jobs back.
        self.recorder.stop_buffering()
        if self.reliable:
            self._release_inflight()
        try:
            ConsumerRecord.delete().where(ConsumerRecord.consumer_id == self.registry_id).execute()
        except Exception:
            logger.exception("registry: could not remove %s", self.registry_id)

    # -- reliability --------------------------------------------------------------------------------------

    def _beat_lease(self) -> None:
        self._next_lease_beat = time.monotonic() + self.lease_ttl / 3
        try:
            self.huey.storage.beat(self.lease_ttl)
        except broker_errors() as exc:
            self.huey.report_broker_error(exc, sleep=False)  # one log line per outage, not per beat

    def _reap(self) -> None:
        """Put the jobs of dead consumers back on the queue (any consumer may do this, concurrently)."""
        self._next_reap = time.monotonic() + max(1.0, self.lease_ttl / 3)
        storage = self.huey.storage
        try:
            for dead in storage.dead_consumers():
                recovered = 0
                while (data := storage.claim_one(dead)) is not None:
                    self._recover(data, dead)
                    recovered += 1
                storage.forget_consumer(dead)
                if recovered:
                    logger.warning("%s: recovered %d job(s) of dead consumer %s", self.huey.name, recovered, dead)
        except broker_errors() as exc:
            self.huey.report_broker_error(exc, sleep=False)

    def _requeue_orphans(self) -> None:
        """Put back messages in our own in-flight list that no worker holds any more.

        That happens when huey failed around a job (the broker went away while
        its result was stored). A message counts as orphaned only when two checks
        in a row find it unheld, so one a worker is just taking is never touched.
        """
        try:
            orphans = {data for data in self.huey.storage.inflight() if data not in self.huey.held}
            for data in orphans & self._suspects:
                self.huey.storage.requeue(data)
                logger.warning("%s: put an orphaned in-flight job back on the queue", self.huey.name)
            self._suspects = orphans - self._suspects
        except Exception:
            self._suspects = set()
            logger.debug("%s: orphan check skipped", self.huey.name, exc_info=True)

    def _recover(self, data: bytes, dead: str) -> None:
        storage = self.huey.storage
        try:
            task = self.huey.deserialize_task(data)
        except Exception as exc:
            self.huey.dead_letter(data, f"unreadable message recovered from {dead}: {exc}")
            storage.ack([data])
            return
        count = self.recorder.count_recovery(task.id)
        limit = self.huey.settings.max_recoveries
        if count is not None and count > limit:
            reason = f"the job's consumer died {count} times while running it (limit {limit}); not run again"
            logger.error("%s: %s: %s", self.huey.name, task.id, reason)
            self.recorder.fail_now(task, reason)
            self.huey.dead_letter(data, reason)
            storage.ack([data])
            return
        self.recorder.record_now(S.SIGNAL_INTERRUPTED, task)
        self.recorder.record_now(S.SIGNAL_ENQUEUED, task)  # before the message is back: see record_now
        storage.requeue(data)
        logger.warning("%s: job %s (%s) recovered from %s", self.huey.name, task.id, task.name, dead)

    def _release_inflight(self) -> None:
        """Put jobs that were still running when the graceful stop gave up back on the queue."""
        storage = self.huey.storage
        try:
            for data in storage.inflight():
                try:
                    task = self.huey.deserialize_task(data)
                except Exception:
                    logger.exception("%s: a held message does not decode; requeued as it is", self.huey.name)
                else:
                    self.recorder.record_now(S.SIGNAL_ENQUEUED, task)  # before it is back: see record_now
                    logger.warning("%s: job %s put back on the queue at shutdown", self.huey.name, task.id)
                storage.requeue(data)
            # Last: with the heartbeat gone, a reaper takes whatever a worker still grabbed meanwhile.
            storage.end_heartbeat()
        except Exception:
            logger.exception("%s: could not put running jobs back; another consumer will", self.huey.name)

    # -- registry heartbeat -----------------------------------------------------------------------------

    def _beat(self) -> None:
        self._next_beat = time.monotonic() + HEARTBEAT_INTERVAL
        try:
            init_database(self.huey.settings)
            row = {
                "consumer_id": self.registry_id,
                "queue": self.huey.name,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "workers": self.workers,
                "worker_type": self.worker_type,
                "started_at": self.started_at,
                "last_seen_at": utcnow(),
            }
            (
                ConsumerRecord.insert(row)
                .on_conflict(conflict_target=[ConsumerRecord.consumer_id], update={"last_seen_at": row["last_seen_at"]})
                .execute()
            )
        except Exception:
            logger.exception("registry: heartbeat of %s failed", self.registry_id)
