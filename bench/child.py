"""A consumer process that reports when it has finished ``--jobs`` jobs (``python -m bench.child``).

It runs a normal huey consumer (``create_consumer`` with huey_consumer's
defaults: thread workers, the scheduler every second, health checks) for the
plain or the full stack, counts completions with huey's ``SIGNAL_COMPLETE`` (a
few hundred nanoseconds, the same for both stacks) and, once the last job is
done, writes a JSON report and keeps running until the bench stops it (SIGINT).

Times in the report are ``time.monotonic()`` of this process:

* ``first`` / ``last``: the first and the last completion;
* ``drained``: for the full stack, when every outcome is also in the registry
  and acknowledged to the broker (the registry writer flushes every 0.2 s);
  the same as ``last`` for plain huey. ``backlog_at_last`` counts the jobs
  whose outcome was still waiting for the registry writer at the last
  completion; ``held`` those still waiting when the report was written.

``cpu_seconds`` is the process's CPU time (all threads) from the first
completion to ``drained``: per job, it is far steadier than the rates on a
shared machine.

``marks`` holds the process's RSS after that many completions.

With ``MEINGYM_BENCH_COUNT_SQL=1`` the report also holds the SQL statements and
commits this process made, by who made them (see :mod:`bench.counting`); the
bench sets it only for runs that are not timed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from huey import Huey
from huey import signals as S

from bench.config import REPO
from bench.services import proc_status_kb, stop_process


def thread_cpu_seconds() -> dict[str, float]:
    """CPU time (user + system) of each live thread of this process since it started, by thread name."""
    tick = os.sysconf("SC_CLK_TCK")
    result = {}
    for thread in threading.enumerate():
        try:
            fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        result[thread.name] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return result


def held_messages(queue: Huey) -> set[bytes] | None:
    """The full stack's messages not yet acknowledged (outcome waiting for the registry); None for plain huey."""
    from meingym_tasks.queue.app import MeinGymHuey

    return queue.lease.held if isinstance(queue, MeinGymHuey) else None


class Counter:
    def __init__(self, queue: Huey, jobs: int, marks: list[int], out: Path, drain_timeout: float = 600) -> None:
        self.queue = queue
        self.held = held_messages(queue)
        self.jobs = jobs
        self.marks = set(marks)
        self.out = out
        self.count = 0
        self.errors = 0
        self.first: float | None = None
        self.last: float | None = None
        self.cpu_first: float | None = None
        self.rss: dict[str, int | None] = {}
        self.drain_timeout = drain_timeout
        self.backlog_at_last = 0
        self.usage_first: resource.struct_rusage | None = None
        self._lock = threading.Lock()

    def on_complete(self, name: str, task: Any, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            self.count += 1
            count = self.count
            if count == 1:
                self.first = now
                self.cpu_first = time.process_time()
                self.usage_first = resource.getrusage(resource.RUSAGE_SELF)
        if count in self.marks:
            self.rss[str(count)] = proc_status_kb(os.getpid(), "VmRSS")
        if count == self.jobs:
            self.last = now
            self.backlog_at_last = len(self.held or ())
            threading.Thread(target=self._report, name="bench-report", daemon=True).start()

    def on_error(self, name: str, task: Any, *args: Any) -> None:
        with self._lock:
            self.errors += 1

    def _report(self) -> None:
        held = self.held
        deadline = time.monotonic() + self.drain_timeout
        while held and time.monotonic() < deadline:  # outcomes not yet written to the registry and acked
            time.sleep(0.001)
        drained = time.monotonic()
        cpu = time.process_time()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        report: dict[str, Any] = {
            "count": self.count,
            "errors": self.errors,
            "first": self.first,
            "last": self.last,
            "drained": drained,
            "cpu_seconds": cpu - self.cpu_first if self.cpu_first is not None else None,
            "held": len(held) if held is not None else None,  # None: nothing to wait for (plain huey)
            "backlog_at_last": self.backlog_at_last,
            "rss_kb": self.rss,
            "vmhwm_kb": proc_status_kb(os.getpid(), "VmHWM"),
            "pid": os.getpid(),
            "thread_cpu_seconds": thread_cpu_seconds(),
        }
        if self.usage_first is not None:  # over the same span as cpu_seconds: user and kernel time, context switches
            first = self.usage_first
            report["user_seconds"] = usage.ru_utime - first.ru_utime
            report["system_seconds"] = usage.ru_stime - first.ru_stime
            report["voluntary_switches"] = usage.ru_nvcsw - first.ru_nvcsw
            report["involuntary_switches"] = usage.ru_nivcsw - first.ru_nivcsw
        if os.environ.get("MEINGYM_BENCH_COUNT_SQL") == "1":
            from bench import counting

            report["sql"] = counting.snapshot()
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(report))
        tmp.replace(self.out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.child")
    parser.add_argument("--stack", choices=("plain", "full"), required=True)
    parser.add_argument("--broker", choices=("redis", "sqlite", "postgres"), required=True)
    parser.add_argument("--location", required=True, help="plain stack: the Redis URL, SQLite file or PostgreSQL DSN")
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--marks", default="")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--drain-timeout", type=float, default=600)
    args = parser.parse_args(argv)
    # huey_consumer -q: warnings only, in both stacks (per-job INFO lines would cost both the same).
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if os.environ.get("MEINGYM_BENCH_COUNT_SQL") == "1":
        from bench import counting

        counting.install()

    queue: Huey
    if args.stack == "full":
        from bench.noop import full_queue

        queue = full_queue
    else:
        from bench.noop import plain_queue

        queue = plain_queue(args.broker, args.location).queue
    marks = [int(m) for m in args.marks.split(",") if m]
    counter = Counter(queue, args.jobs, marks, args.out, args.drain_timeout)
    queue.signal(S.SIGNAL_COMPLETE)(counter.on_complete)
    queue.signal(S.SIGNAL_ERROR)(counter.on_error)
    consumer = queue.create_consumer(workers=args.workers, worker_type="thread", periodic=True, scheduler_interval=1)
    consumer.run()


# --------------------------------------------------------------------------- the bench's side


def spawn(
    stack: str,
    broker: str,
    location: str,
    workers: int,
    jobs: int,
    out: Path,
    env: dict[str, str],
    marks: tuple[int, ...] = (),
    drain_timeout: float = 600,
    pass_fds: tuple[int, ...] = (),
) -> subprocess.Popen[bytes]:
    """Start ``python -m bench.child`` with ``env`` over ours; its log goes next to ``out``.

    ``pass_fds`` stay open in the child (the latency pipe).
    """
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "bench.child", "--stack", stack, "--broker", broker, "--location", location]
    command += ["--workers", str(workers), "--jobs", str(jobs), "--out", str(out)]
    command += ["--marks", ",".join(str(m) for m in marks), "--drain-timeout", str(drain_timeout)]
    log = open(out.with_suffix(".log"), "wb")  # noqa: SIM115 (the child keeps it)
    try:
        return subprocess.Popen(
            command, cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, pass_fds=pass_fds
        )
    finally:
        log.close()


def await_report(proc: subprocess.Popen[bytes], out: Path, timeout: float) -> dict[str, Any]:
    """The child's report once it has done all its jobs; RuntimeError if it dies or times out."""
    deadline = time.monotonic() + timeout
    while not out.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"the consumer exited with {proc.returncode}; see {out.with_suffix('.log')}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the consumer did not finish within {timeout:.0f} s; see {out.with_suffix('.log')}")
        time.sleep(0.02)
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def profile(proc: subprocess.Popen[bytes], name: str) -> subprocess.Popen[bytes] | None:
    """With ``MEINGYM_BENCH_PROFILE=DIR``: py-spy samples the consumer into ``DIR/<name>.txt`` (collapsed stacks).

    For finding where a job's time goes (``python -m bench.profile DIR`` sums
    the stacks up); never set in a run whose rates are published.
    """
    directory = os.environ.get("MEINGYM_BENCH_PROFILE", "").strip()
    if not directory:
        return None
    py_spy = Path(sys.executable).parent / "py-spy"
    Path(directory).mkdir(parents=True, exist_ok=True)
    output = Path(directory) / f"{name}.txt"
    command = [str(py_spy), "record", "-p", str(proc.pid), "-r", "500", "-f", "raw", "-t", "-g", "-o", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profile(profiler: subprocess.Popen[bytes] | None) -> None:
    if profiler is not None:
        stop_process(profiler, signal.SIGINT, 30)


def stop(proc: subprocess.Popen[bytes]) -> int:
    """Stop the consumer as systemd does (SIGINT: graceful), SIGKILL if it hangs."""
    return stop_process(proc, signal.SIGINT, 30)


if __name__ == "__main__":
    main()
