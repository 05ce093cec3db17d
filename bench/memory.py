"""Section 4: does a consumer's memory grow with the number of jobs it has run?

One consumer (4 thread workers, Redis broker, registry in PostgreSQL: the
production stack) runs the no-op job while this process enqueues them, and
reports its own RSS (``VmRSS``) when it has completed 1,000, 10,000 and
100,000 jobs, and its peak (``VmHWM``) at the end. Plain huey runs the same
jobs as a reference. Growth is RSS at the last mark minus RSS at the first.
The registry backlog (outcomes not yet written when the last job completed)
and the time the writer then needs to catch up are reported too: a buffer that
grows is memory that grows.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from huey import Huey
from huey.api import TaskWrapper

from bench import child
from bench.noop import FULL_QUEUE, full_queue, noop, plain_queue
from bench.services import BenchEnv, bind_database, clear_postgres
from bench.stats import summarize
from bench.throughput import REGISTRY_TABLES, close_plain
from meingym_tasks.db.database import database
from meingym_tasks.registry.models import COMPLETE, JobRecord
from meingym_tasks.settings import Settings

logger = logging.getLogger("bench.memory")

#: Results compared with their argument after each run (all of them when fewer).
SAMPLE = 1_000


def run(env: BenchEnv) -> dict[str, Any]:
    marks = env.config.memory_marks
    stacks: dict[str, list[dict[str, Any]]] = {"plain": [], "full": []}
    for rep in range(env.config.memory_runs):
        for stack in ("full", "plain"):
            measured = measure(env, stack, rep)
            logger.info("memory %s run %d: RSS MB at %s: %s", stack, rep + 1, marks, measured["rss_mb"])
            stacks[stack].append(measured)
    result: dict[str, Any] = {"marks": list(marks), "workers": env.config.memory_workers, "broker": "redis"}
    for stack, runs in stacks.items():
        result[stack] = {
            "rss_mb": {str(m): summarize([r["rss_mb"].get(str(m)) for r in runs]) for m in marks},
            "growth_mb": summarize([r["growth_mb"] for r in runs]),
            "peak_rss_mb": summarize([r["peak_mb"] for r in runs]),
            "registry_backlog_at_last_job": summarize([r["backlog_at_last_job"] for r in runs]),
            "registry_drain_seconds": summarize([r["drain_seconds"] for r in runs]),
            "checks": [r["checks"] for r in runs],
        }
    return result


def measure(env: BenchEnv, stack: str, rep: int) -> dict[str, Any]:
    marks = env.config.memory_marks
    jobs = marks[-1]
    data_dir = env.scratch(f"memory/{stack}-r{rep}")
    env.flush_redis()
    app_env = env.app_env(data_dir, env.redis_url, str(env.postgres_url))
    huey: Huey
    task: TaskWrapper
    if stack == "full":
        settings = Settings.from_env(app_env)
        clear_postgres(bind_database(settings), *REGISTRY_TABLES)
        full_queue.configure(settings)
        huey, task = full_queue, noop
    else:
        plain = plain_queue("redis", env.redis_url)
        huey, task = plain.queue, plain.noop
    out = data_dir / "consumer.json"
    proc = child.spawn(
        stack, "redis", env.redis_url, env.config.memory_workers, jobs, out, app_env, marks, env.config.step_timeout
    )
    try:
        handles = [task(i) for i in range(jobs)]  # the consumer runs them as they arrive
        report = child.await_report(proc, out, env.config.step_timeout)
    finally:
        child.stop(proc)
    sample = random.Random(rep).sample(range(jobs), min(SAMPLE, jobs))
    checks: dict[str, Any] = {
        "jobs": jobs,
        "completed": report["count"],
        "errors": report["errors"],
        "results_checked": len(sample),
        "results_ok": sum(1 for i in sample if handles[i].get(preserve=True) == i),
    }
    if stack == "full":
        checks["records_complete"] = (
            JobRecord.select().where(JobRecord.queue == FULL_QUEUE, JobRecord.state == COMPLETE).count()
        )
        checks["unacknowledged"] = report["held"]
        full_queue.close()
        if not database.is_closed():
            database.close()
    else:
        close_plain(huey)
    checks["ok"] = (
        report["count"] == jobs
        and report["errors"] == 0
        and checks["results_ok"] == len(sample)
        and checks.get("records_complete", jobs) == jobs
        and checks.get("unacknowledged", 0) == 0  # the full stack must say how many it still held: 0
    )
    rss = {mark: kb / 1024 for mark, kb in report["rss_kb"].items() if kb}
    first, last = str(marks[0]), str(marks[-1])
    return {
        "backlog_at_last_job": report.get("backlog_at_last"),
        "drain_seconds": report["drained"] - report["last"],
        "rss_mb": rss,
        "growth_mb": rss[last] - rss[first] if first in rss and last in rss else None,
        "peak_mb": report["vmhwm_kb"] / 1024 if report.get("vmhwm_kb") else None,
        "checks": checks,
    }


__all__ = ["run"]
