"""Section 1: no-op job throughput, plain huey against the full meingym-tasks stack.

For each broker (Redis, SQLite) and worker count (1 and 4 threads), each run
measures both stacks back to back (alternating which goes first), so every
ratio compares two measurements a few seconds apart:

* **enqueue**: one producer calls the job N times in a row (for the full stack
  this includes the synchronous registry insert every producer does);
* **process**: one consumer drains the N pre-filled jobs; the rate is taken
  from the first to the last completion (for the full stack, to the moment the
  last outcome is in the registry and acknowledged);
* **Redis commands per job**: ``INFO commandstats`` before the enqueue and
  after the drain, divided by N;
* **consumer CPU per job**: the consumer process's CPU time (all threads) over
  the drain, divided by N: steadier than the rates when others share the CPU.

The full stack records into PostgreSQL when the broker is Redis (production)
and into SQLite when the broker is SQLite (the embedded default). The raw
floor is redis-py alone: LPUSH the N messages plain huey would push, then
BRPOP them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from huey import Huey, RedisHuey
from huey.api import TaskWrapper

from bench import child
from bench.noop import FULL_QUEUE, full_queue, noop, plain_queue
from bench.services import BenchEnv, bind_database, clear_postgres, command_counts, command_delta
from bench.stats import ratios, summarize
from meingym_tasks.db.database import database
from meingym_tasks.registry.models import COMPLETE, JobRecord
from meingym_tasks.settings import Settings

logger = logging.getLogger("bench.throughput")

REGISTRY_TABLES = ("job_record", "job_attempt", "job_consumer", "job_dead_letter")


def run(env: BenchEnv) -> dict[str, Any]:
    config = env.config
    floor = [raw_floor(env) for _ in range(config.runs)]
    rows = []
    for broker in ("redis", "sqlite"):
        for workers in config.workers:
            runs: dict[str, list[dict[str, Any]]] = {"plain": [], "full": []}
            for rep in range(config.runs):
                order = ("plain", "full") if rep % 2 == 0 else ("full", "plain")
                for stack in order:
                    measured = measure(env, stack, broker, workers, rep)
                    logger.info(
                        "throughput %s %s w=%d run %d: enqueue %.0f/s, process %.0f/s",
                        broker, stack, workers, rep + 1, measured["enqueue_per_s"], measured["process_per_s"],
                    )  # fmt: skip
                    runs[stack].append(measured)
            rows.append(summarize_row(broker, workers, runs, config.jobs))
    return {
        "jobs": config.jobs,
        "raw_floor": {
            "lpush_per_s": summarize([f["lpush_per_s"] for f in floor]),
            "brpop_per_s": summarize([f["brpop_per_s"] for f in floor]),
            "commands_per_item": 2.0,
        },
        "rows": rows,
    }


def summarize_row(broker: str, workers: int, runs: dict[str, list[dict[str, Any]]], jobs: int) -> dict[str, Any]:
    row: dict[str, Any] = {"broker": broker, "workers": workers, "registry": registry_of(broker)}
    for stack, measured in runs.items():
        row[stack] = {
            "enqueue_per_s": summarize([m["enqueue_per_s"] for m in measured]),
            "process_per_s": summarize([m["process_per_s"] for m in measured]),
            "process_per_s_to_last_completion": summarize([m["process_per_s_to_last"] for m in measured]),
            "consumer_cpu_us_per_job": summarize([m["cpu_us_per_job"] for m in measured]),
            "consumer_peak_rss_mb": summarize([m["vmhwm_mb"] for m in measured]),
            "checks": [m["checks"] for m in measured],
        }
        if broker == "redis":
            row[stack]["commands_per_job"] = summarize([m["commands_per_job"] for m in measured])
            names = sorted({name for m in measured for name in m["commands"]})
            row[stack]["commands"] = {
                name: summarize([m["commands"].get(name, 0) / jobs for m in measured])["median"] for name in names
            }
    row["enqueue_ratio"] = ratios(
        [m["enqueue_per_s"] for m in runs["full"]], [m["enqueue_per_s"] for m in runs["plain"]]
    )
    row["process_ratio"] = ratios(
        [m["process_per_s"] for m in runs["full"]], [m["process_per_s"] for m in runs["plain"]]
    )
    return row


def registry_of(broker: str) -> str:
    return "postgresql" if broker == "redis" else "sqlite"


def raw_floor(env: BenchEnv) -> dict[str, float]:
    """redis-py alone: LPUSH the messages plain huey would push, one by one, then BRPOP them."""
    env.flush_redis()
    huey, task = plain_queue("redis", env.redis_url)
    payloads = [huey.serialize_task(task.s(i)) for i in range(env.config.jobs)]
    client = env.redis()
    key = "bench.raw-floor"
    try:
        started = time.perf_counter()
        for payload in payloads:
            client.lpush(key, payload)
        pushed = time.perf_counter()
        popped = 0
        for _ in payloads:
            if client.brpop([key], timeout=1) is not None:
                popped += 1
        done = time.perf_counter()
    finally:
        client.close()
    if popped != len(payloads):
        raise RuntimeError(f"raw floor: popped {popped} of {len(payloads)} items")
    return {"lpush_per_s": len(payloads) / (pushed - started), "brpop_per_s": len(payloads) / (done - pushed)}


def measure(env: BenchEnv, stack: str, broker: str, workers: int, rep: int) -> dict[str, Any]:
    """Enqueue N no-op jobs, then drain them with one consumer; rates, commands and checks."""
    jobs = env.config.jobs
    data_dir = env.scratch(f"throughput/{broker}-{stack}-w{workers}-r{rep}")
    if broker == "redis":
        env.flush_redis()
        location = env.redis_url
        database_url = str(env.postgres_url)
    else:
        location = str(data_dir / "queue.db")
        database_url = f"sqlite:///{data_dir / 'meingym.db'}"
    app_env = env.app_env(data_dir, env.redis_url if broker == "redis" else f"sqlite:///{location}", database_url)

    huey: Huey
    task: TaskWrapper
    if stack == "full":
        settings = Settings.from_env(app_env)
        bound = bind_database(settings)
        if broker == "redis":
            clear_postgres(bound, *REGISTRY_TABLES)
        full_queue.configure(settings)
        huey, task = full_queue, noop
    else:
        huey, task = plain_queue(broker, location)

    client = env.redis() if broker == "redis" else None
    before = command_counts(client) if client is not None else {}
    started = time.perf_counter()
    handles = [task(i) for i in range(jobs)]
    enqueue_seconds = time.perf_counter() - started

    out = data_dir / "consumer.json"
    proc = child.spawn(stack, broker, location, workers, jobs, out, app_env, drain_timeout=env.config.step_timeout)
    try:
        report = child.await_report(proc, out, env.config.step_timeout)
        after = command_counts(client) if client is not None else {}
    finally:
        child.stop(proc)
    commands = command_delta(before, after) if client is not None else {}
    if client is not None:
        client.close()

    checks = verify(huey, handles, stack, jobs, report)
    if stack == "full":
        full_queue.close()
        if not database.is_closed():
            database.close()
    else:
        close_plain(huey)
    span_drained = report["drained"] - report["first"]
    span_last = report["last"] - report["first"]
    return {
        "enqueue_per_s": jobs / enqueue_seconds,
        "process_per_s": (jobs - 1) / span_drained if span_drained > 0 else None,
        "process_per_s_to_last": (jobs - 1) / span_last if span_last > 0 else None,
        "commands_per_job": sum(commands.values()) / jobs if commands else None,
        "commands": commands,
        "cpu_us_per_job": report["cpu_seconds"] * 1e6 / (jobs - 1) if report.get("cpu_seconds") else None,
        "vmhwm_mb": report["vmhwm_kb"] / 1024 if report.get("vmhwm_kb") else None,
        "checks": checks,
    }


def verify(huey: Huey, handles: list[Any], stack: str, jobs: int, report: dict[str, Any]) -> dict[str, Any]:
    """Every job done once, every result equal to its argument, every record complete (full stack)."""
    results_ok = sum(1 for i, handle in enumerate(handles) if handle.get(preserve=True) == i)
    checks: dict[str, Any] = {
        "jobs": jobs,
        "completed": report["count"],
        "errors": report["errors"],
        "results_ok": results_ok,
    }
    if stack == "full":
        checks["records_complete"] = (
            JobRecord.select().where(JobRecord.queue == FULL_QUEUE, JobRecord.state == COMPLETE).count()
        )
        checks["unacknowledged"] = report["held"]
        checks["registry_backlog_at_last_job"] = report.get("backlog_at_last")
    checks["ok"] = (
        report["count"] == jobs
        and report["errors"] == 0
        and results_ok == jobs
        and checks.get("records_complete", jobs) == jobs
        and checks.get("unacknowledged", 0) == 0  # the full stack must say how many it still held: 0
    )
    return checks


def close_plain(huey: Huey) -> None:
    """Close a stock huey storage: huey's RedisStorage has no close(), its pool disconnects."""
    if isinstance(huey, RedisHuey):
        huey.storage.pool.disconnect()
    else:
        huey.storage.close()


__all__ = ["run"]
