"""One log line per broker outage, and a backoff while it lasts.

huey logs a traceback for every failed poll; a consumer whose broker is away
for a minute would write thousands. Every part of the queue core that talks to
the broker reports here instead.
"""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("meingym_tasks.queue")

MAX_BACKOFF = 5.0


class BrokerHealth:
    """The broker's state as one queue in this process has seen it."""

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name
        self._down_since: float | None = None
        self._delay = 0.0
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def report_error(self, exc: BaseException, sleep: bool = True) -> None:
        """Log the first error of an outage (one line); back off (up to 5 s) when ``sleep``."""
        with self._lock:
            if self._down_since is None:
                self._down_since = time.monotonic()
                logger.error("%s: broker unavailable (%s); retrying with backoff", self.queue_name, exc)
            if sleep:
                self._delay = min(max(self._delay * 2, 0.1), MAX_BACKOFF)
            delay = self._delay
        if sleep:
            time.sleep(delay)

    def report_ok(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is not None:
                logger.warning(
                    "%s: broker available again after %.1f s", self.queue_name, time.monotonic() - self._down_since
                )
                self._down_since = None
                self._delay = 0.0
