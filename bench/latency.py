"""Section 2: start latency, from the producer's call to the job's first line, with one idle consumer.

For each broker and run, plain huey and the full stack are measured back to
back (alternating which goes first). One consumer with one thread worker runs;
the producer enqueues ``stamp(time.time())`` only once the previous job has
started, after a random pause of 5 to 15 ms, so every job meets an idle
consumer. The job writes ``time.time() - sent`` to a pipe the producer reads:
no result round trip, the same for both stacks. The first few jobs (the
consumer's start) are not counted. Reported: p50 and p99 per run, summarized
over the runs, and each run's p99 ratio full/plain.

What the broker decides: Redis (``BRPOP`` / ``BLMOVE``) and PostgreSQL
(``LISTEN``) wake a waiting consumer at once; huey's SQLite storage has no way
to wake one, so its worker polls, backing off from 0.1 s (huey's
``initial_delay``), and the latency there is mostly the poll interval.
"""

from __future__ import annotations

import logging
import os
import random
import select
import struct
import time
from typing import Any

from bench import child
from bench.noop import FULL_QUEUE
from bench.services import BenchEnv
from bench.stacks import full_checks, prepare, registry_of
from bench.stats import percentile, ratios, summarize

logger = logging.getLogger("bench.latency")

#: Jobs at the start of each measurement that are not counted (the consumer is starting).
WARMUP = 5
PAUSE = (0.005, 0.015)


def run(env: BenchEnv) -> dict[str, Any]:
    config = env.config
    rows = []
    for broker in config.brokers:
        runs: dict[str, list[dict[str, Any]]] = {"plain": [], "full": []}
        for rep in range(config.runs):
            order = ("plain", "full") if rep % 2 == 0 else ("full", "plain")
            for stack in order:
                measured = measure(env, stack, broker, rep)
                logger.info(
                    "latency %s %s run %d: p50 %.2f ms, p99 %.2f ms, load %.2f",
                    broker, stack, rep + 1, measured["p50_ms"], measured["p99_ms"], measured["load"],
                )  # fmt: skip
                runs[stack].append(measured)
        row: dict[str, Any] = {"broker": broker, "registry": registry_of(broker)}
        for stack, stack_runs in runs.items():
            row[stack] = {
                "p50_ms": summarize([m["p50_ms"] for m in stack_runs]),
                "p99_ms": summarize([m["p99_ms"] for m in stack_runs]),
                "max_ms": summarize([m["max_ms"] for m in stack_runs]),
                "load": summarize([m["load"] for m in stack_runs]),
                "checks": [m["checks"] for m in stack_runs],
            }
        row["p50_ratio"] = ratios([m["p50_ms"] for m in runs["full"]], [m["p50_ms"] for m in runs["plain"]])
        row["p99_ratio"] = ratios([m["p99_ms"] for m in runs["full"]], [m["p99_ms"] for m in runs["plain"]])
        rows.append(row)
    return {"samples": config.latency_samples, "workers": 1, "pause_ms": [p * 1000 for p in PAUSE], "rows": rows}


def read_latency(fd: int, timeout: float) -> float:
    """The next latency the consumer wrote to the pipe (seconds); TimeoutError after ``timeout``."""
    buffer = b""
    deadline = time.monotonic() + timeout
    while len(buffer) < 8:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise TimeoutError(f"no job started within {timeout:.0f} s")
        chunk = os.read(fd, 8 - len(buffer))
        if not chunk:
            raise RuntimeError("the consumer closed the latency pipe")
        buffer += chunk
    return float(struct.unpack("d", buffer)[0])


def measure(env: BenchEnv, stack: str, broker: str, rep: int) -> dict[str, Any]:
    samples = env.config.latency_samples
    total = samples + WARMUP
    data_dir = env.scratch(f"latency/{broker}-{stack}-r{rep}")
    read_end, write_end = os.pipe()
    prepared = prepare(env, stack, broker, data_dir, MEINGYM_BENCH_LATENCY_FD=str(write_end))
    stamp = prepared.stack.stamp
    load = os.getloadavg()[0]
    out = data_dir / "consumer.json"
    proc = child.spawn(
        stack,
        broker,
        prepared.location,
        1,
        total,
        out,
        prepared.app_env,
        drain_timeout=env.config.step_timeout,
        pass_fds=(write_end,),
    )
    os.close(write_end)
    pause = random.Random(f"{broker}-{stack}-{rep}")
    latencies: list[float] = []
    handles = []
    try:
        for i in range(total):
            time.sleep(pause.uniform(*PAUSE))
            handles.append(stamp(time.time()))
            # the first job waits for the consumer to start
            latency = read_latency(read_end, env.config.step_timeout if i == 0 else 60)
            if i >= WARMUP:
                latencies.append(latency)
        report = child.await_report(proc, out, env.config.step_timeout)
    finally:
        child.stop(proc)
        os.close(read_end)
    checks: dict[str, Any] = {"jobs": total, "completed": report["count"], "errors": report["errors"]}
    checks["results"] = sum(1 for handle in handles if handle.get(preserve=True) is not None)
    if stack == "full":
        checks.update(full_checks(report, FULL_QUEUE))
    checks["ok"] = (
        report["count"] == total
        and report["errors"] == 0
        and checks["results"] == total
        and checks.get("records_complete", total) == total
        and checks.get("unacknowledged", 0) == 0
    )
    prepared.close()
    return {
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
        "load": round(load, 2),
        "checks": checks,
    }


__all__ = ["run"]
