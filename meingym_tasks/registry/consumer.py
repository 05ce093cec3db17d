"""A huey Consumer that keeps the registry: buffered transitions and a heartbeat."""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from huey.consumer import Consumer

from meingym_tasks.database import init_database
from meingym_tasks.queues import MeinGymHuey
from meingym_tasks.registry.models import ConsumerRecord
from meingym_tasks.registry.recorder import Recorder, recorder_for, utcnow

logger = logging.getLogger("meingym_tasks.registry")

HEARTBEAT_INTERVAL = 10.0
#: A consumer whose last heartbeat is older than this is not alive.
HEARTBEAT_TIMEOUT = 3 * HEARTBEAT_INTERVAL


class RegistryConsumer(Consumer):
    """Huey's consumer, plus a heartbeat row and a buffered registry writer."""

    def __init__(self, huey: MeinGymHuey, **options: Any) -> None:
        super().__init__(huey, **options)
        self.recorder: Recorder = recorder_for(huey)
        self.consumer_id = f"{socket.gethostname()}:{os.getpid()}:{huey.name}"
        self.started_at = utcnow()
        self._next_beat = 0.0
        huey.on_consumer_exit(self._stopped)

    def start(self) -> None:
        self.recorder.start_buffering()
        super().start()
        self._beat()  # after huey installed its signal handlers: alive means ready

    def loop(self, health_check_ts: float | None = None) -> float | None:
        health_check_ts = super().loop(health_check_ts)
        if time.monotonic() >= self._next_beat:
            self._beat()
        return health_check_ts

    def _beat(self) -> None:
        self._next_beat = time.monotonic() + HEARTBEAT_INTERVAL
        try:
            init_database(self.huey.settings)
            row = {
                "consumer_id": self.consumer_id,
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
            logger.exception("registry: heartbeat of %s failed", self.consumer_id)

    def _stopped(self) -> None:
        self.recorder.stop_buffering()
        try:
            ConsumerRecord.delete().where(ConsumerRecord.consumer_id == self.consumer_id).execute()
        except Exception:
            logger.exception("registry: could not remove %s", self.consumer_id)
