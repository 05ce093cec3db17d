"""Run consumers in the foreground, for development (what ``npm run workers`` did).

One queue runs in this process (the queue's ReliableConsumer); ``all`` starts one
child process per queue and passes SIGINT/SIGTERM on to them, so Ctrl-C stops
both gracefully.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from meingym_tasks.consumers import actions, users
from meingym_tasks.names import ACTIONS_QUEUE
from meingym_tasks.settings import Settings


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")


def run_consumer(queue_name: str, settings: Settings, workers: int | None = None) -> None:
    """Run the consumer of one queue until SIGINT (graceful) or SIGTERM."""
    queue = actions if queue_name == ACTIONS_QUEUE else users
    queue.configure(settings)
    consumer = queue.create_consumer(
        workers=workers or settings.workers,
        worker_type=settings.worker_type,
        periodic=True,
        scheduler_interval=1,
    )
    consumer.run()


def start_children(
    queue_names: Sequence[str], extra_args: Sequence[str] = (), log_dir: Path | None = None
) -> list[subprocess.Popen[bytes]]:
    """One ``meingym-tasks worker <queue>`` process per queue, logging to ``log_dir`` if given.

    Each gets its own session so that a terminal's Ctrl-C reaches only us and
    is forwarded once: huey reads a second SIGINT as "stop now".
    """
    children = []
    for name in queue_names:
        output = None
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            output = open(log_dir / f"consumer-{name}.log", "ab")  # noqa: SIM115 (the child keeps it)
        command = [sys.executable, "-m", "meingym_tasks", "worker", name, *extra_args]
        children.append(subprocess.Popen(command, start_new_session=True, stdout=output, stderr=output))
        if output is not None:
            output.close()
    return children


def stop_children(children: Sequence[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    """Ask each child to stop gracefully (SIGINT) and wait for it."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
    for child in children:
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run_children(queue_names: Sequence[str], extra_args: Sequence[str] = ()) -> int:
    """Start ``meingym-tasks worker <queue>`` per queue; forward stop signals; wait for all."""
    children = start_children(queue_names, extra_args)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    codes = [child.wait() for child in children]
    return max(codes, default=0)
