"""Section 1: no-op job throughput, plain huey against the full meingym-tasks stack.

For each broker (Redis, SQLite, PostgreSQL) and worker count (1 and 4
threads), each run measures both stacks back to back (alternating which goes
first), so every ratio compares two measurements a few seconds apart. A warm-up
measurement of each stack on each broker comes first and is not counted (first
connections, table creation, cold caches).

* **enqueue**: one producer calls the job N times in a row; for the full stack
  that is the declared job's argument check, the signed message and the
  registry transition its writer thread writes in batches. ``enqueue CPU``
  is the producer's CPU time (all threads) over the loop plus the writing of
  what the loop left buffered, per job;
* **process**: one consumer drains the N pre-filled jobs; the rate is taken
  from the first to the last completion (for the full stack, to the moment the
  last outcome is in the registry and acknowledged);
* **Redis commands per job**: ``INFO commandstats`` before the enqueue and
  after the drain, divided by N;
* **consumer CPU per job**: the consumer process's CPU time (all threads) over
  the drain, divided by N: steadier than the rates when others share the CPU;
* **SQL statements per job**: counted in the consumer (see
  :mod:`bench.counting`) in one extra, untimed run per broker and stack.

The machine's load (1-minute average) is recorded at the start of every
measurement. The raw floor is redis-py alone: LPUSH the N messages plain huey
would push, then BRPOP them.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from bench import child
from bench.noop import FULL_QUEUE, plain_queue
from bench.services import BenchEnv, command_counts, command_delta
from bench.stacks import REGISTRY_TABLES, full_checks, prepare, registry_of
from bench.stats import ratios, summarize

logger = logging.getLogger("bench.throughput")

__all__ = ["REGISTRY_TABLES", "run"]


def run(env: BenchEnv) -> dict[str, Any]:
    config = env.config
    floor = [raw_floor(env) for _ in range(config.runs)]
    rows = []
    statements: dict[str, dict[str, Any]] = {}
    for broker in config.brokers:
        for stack in ("plain", "full"):  # warm-up, not counted
            measure(env, stack, broker, config.workers[0], -1, jobs=min(config.jobs, config.warmup_jobs))
        for workers in config.workers:
            runs: dict[str, list[dict[str, Any]]] = {"plain": [], "full": []}
            for rep in range(config.runs):
                order = ("plain", "full") if rep % 2 == 0 else ("full", "plain")
                for stack in order:
                    measured = measure(env, stack, broker, workers, rep)
                    logger.info(
                        "throughput %s %s w=%d run %d: enqueue %.0f/s, process %.0f/s, %.0f us CPU/job, load %.2f",
                        broker, stack, workers, rep + 1, measured["enqueue_per_s"], measured["process_per_s"] or 0,
                        measured["cpu_us_per_job"] or 0, measured["load"],
                    )  # fmt: skip
                    runs[stack].append(measured)
            rows.append(summarize_row(broker, workers, runs, config.jobs))
        if broker != "redis":
            jobs = min(config.jobs, config.count_jobs)
            statements[broker] = {
                stack: counted(measure(env, stack, broker, 1, -2, jobs=jobs, count_sql=True), jobs)
                for stack in ("plain", "full")
            }
    return {
        "jobs": config.jobs,
        "raw_floor": {
            "lpush_per_s": summarize([f["lpush_per_s"] for f in floor]),
            "brpop_per_s": summarize([f["brpop_per_s"] for f in floor]),
            "commands_per_item": 2.0,
        },
        "rows": rows,
        "statements": statements,
    }


def counted(measured: dict[str, Any], jobs: int) -> dict[str, Any]:
    """SQL statements and commits per job of a counting run, by who made them (broker, registry)."""
    per_job = {
        label: {kind: round(n / jobs, 2) for kind, n in numbers.items()}
        for label, numbers in (measured.get("sql") or {}).items()
    }
    return {"jobs": jobs, "per_job": per_job, "checks": measured["checks"]}


def summarize_row(broker: str, workers: int, runs: dict[str, list[dict[str, Any]]], jobs: int) -> dict[str, Any]:
    row: dict[str, Any] = {"broker": broker, "workers": workers, "registry": registry_of(broker)}
    for stack, measured in runs.items():
        row[stack] = {
            "enqueue_per_s": summarize([m["enqueue_per_s"] for m in measured]),
            "enqueue_cpu_us_per_job": summarize([m["enqueue_cpu_us_per_job"] for m in measured]),
            "process_per_s": summarize([m["process_per_s"] for m in measured]),
            "process_per_s_to_last_completion": summarize([m["process_per_s_to_last"] for m in measured]),
            "consumer_cpu_us_per_job": summarize([m["cpu_us_per_job"] for m in measured]),
            "consumer_peak_rss_mb": summarize([m["vmhwm_mb"] for m in measured]),
            "consumer_system_share": summarize([m["system_share"] for m in measured]),
            "consumer_switches_per_job": summarize([m["switches_per_job"] for m in measured]),
            "load": summarize([m["load"] for m in measured]),
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
    # plain CPU / full CPU: like the rate ratio, above 1 is faster than plain; what the machine's load moves least.
    row["cpu_ratio"] = ratios([m["cpu_us_per_job"] for m in runs["plain"]], [m["cpu_us_per_job"] for m in runs["full"]])
    return row


def raw_floor(env: BenchEnv) -> dict[str, float]:
    """redis-py alone: LPUSH the messages plain huey would push, one by one, then BRPOP them."""
    env.flush_redis()
    plain = plain_queue("redis", env.redis_url)
    payloads = [plain.queue.serialize_task(plain.noop.s(i)) for i in range(env.config.jobs)]
    plain.queue.storage.pool.disconnect()
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


def measure(
    env: BenchEnv,
    stack: str,
    broker: str,
    workers: int,
    rep: int,
    jobs: int | None = None,
    count_sql: bool = False,
) -> dict[str, Any]:
    """Enqueue N no-op jobs, then drain them with one consumer; rates, commands and checks.

    ``rep`` names the scratch directory (-1: the warm-up, -2: the counting run).
    """
    jobs = jobs or env.config.jobs
    data_dir = env.scratch(f"throughput/{broker}-{stack}-w{workers}-r{rep}")
    extra = {"MEINGYM_BENCH_COUNT_SQL": "1"} if count_sql else {}
    prepared = prepare(env, stack, broker, data_dir, **extra)
    task = prepared.stack.noop
    load = os.getloadavg()[0]

    client = env.redis() if broker == "redis" else None
    before = command_counts(client) if client is not None else {}
    cpu_started = time.process_time()
    started = time.perf_counter()
    handles = [task(i) for i in range(jobs)]
    enqueue_seconds = time.perf_counter() - started
    if stack == "full":
        from meingym_tasks.registry.recorder import flush_all

        flush_all()  # the records the loop left buffered: part of what an enqueue costs
    enqueue_cpu = time.process_time() - cpu_started

    out = data_dir / "consumer.json"
    proc = child.spawn(
        stack, broker, prepared.location, workers, jobs, out, prepared.app_env, drain_timeout=env.config.step_timeout
    )
    profiler = child.profile(proc, data_dir.name)
    try:
        report = child.await_report(proc, out, env.config.step_timeout)
        after = command_counts(client) if client is not None else {}
    finally:
        child.stop_profile(profiler)
        child.stop(proc)
    commands = command_delta(before, after) if client is not None else {}
    if client is not None:
        client.close()

    checks = verify(handles, stack, jobs, report)
    prepared.close()
    span_drained = report["drained"] - report["first"]
    span_last = report["last"] - report["first"]
    return {
        "enqueue_per_s": jobs / enqueue_seconds,
        "enqueue_cpu_us_per_job": enqueue_cpu * 1e6 / jobs,
        "process_per_s": (jobs - 1) / span_drained if span_drained > 0 else None,
        "process_per_s_to_last": (jobs - 1) / span_last if span_last > 0 else None,
        "commands_per_job": sum(commands.values()) / jobs if commands else None,
        "commands": commands,
        "cpu_us_per_job": report["cpu_seconds"] * 1e6 / (jobs - 1) if report.get("cpu_seconds") else None,
        "vmhwm_mb": report["vmhwm_kb"] / 1024 if report.get("vmhwm_kb") else None,
        "system_share": report["system_seconds"] / report["cpu_seconds"] if report.get("cpu_seconds") else None,
        "switches_per_job": (report["voluntary_switches"] + report["involuntary_switches"]) / jobs
        if "voluntary_switches" in report
        else None,
        "load": round(load, 2),
        "sql": report.get("sql"),
        "checks": checks,
    }


def verify(handles: list[Any], stack: str, jobs: int, report: dict[str, Any]) -> dict[str, Any]:
    """Every job done once, every result equal to its argument, every record complete (full stack)."""
    results_ok = sum(1 for i, handle in enumerate(handles) if handle.get(preserve=True) == i)
    checks: dict[str, Any] = {
        "jobs": jobs,
        "completed": report["count"],
        "errors": report["errors"],
        "results_ok": results_ok,
    }
    if stack == "full":
        checks.update(full_checks(report, FULL_QUEUE))
    checks["ok"] = (
        report["count"] == jobs
        and report["errors"] == 0
        and results_ok == jobs
        and checks.get("records_complete", jobs) == jobs
        and checks.get("unacknowledged", 0) == 0  # the full stack must say how many it still held: 0
    )
    return checks


def close_plain(huey: Any) -> None:
    """Close a stock huey storage (the memory section's plain stack)."""
    from huey import RedisHuey

    if isinstance(huey, RedisHuey):
        huey.storage.pool.disconnect()
    else:
        huey.storage.close()
