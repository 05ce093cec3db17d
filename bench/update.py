"""Section 2: update-all-actions through real consumers, against the single-statement floor.

Per database (PostgreSQL with the Redis broker, as in production; SQLite with
the SQLite broker, the embedded default), on seeded actions:

* **floor**: one ``UPDATE action SET score = <the same SQL expression>`` over
  the whole table, timed in this process;
* **job**: ``update-all-actions`` triggered like the CLI does, run by real
  ``huey_consumer meingym_tasks.consumers.actions`` processes (started and
  registered beforehand); its time is the wall time from the trigger to its
  record seen finished here (polled every 50 ms). The run record's own
  started-to-finished time is kept too.

Before every timed statement the table is vacuumed and checkpointed, so that
neither side pays for the other's dead rows. Runs alternate which goes first.
After each job run every action must have been rescored (no NULL score, no
``scored_at`` older than the trigger) and a sample of rows (all of them in the
smoke mode) must equal the Python scorer, ``Action.python_score()``; once per
database, every stored score is compared with the SQL expression.
"""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import peewee

from bench.services import BenchEnv, bind_database, clear_postgres, proc_status_kb, stop_process, wait_until
from bench.stats import ratios, summarize
from meingym_tasks.db.database import database
from meingym_tasks.domain.models import Action, Exercise, utcnow, write_transaction
from meingym_tasks.domain.rescoring import action_score_expression
from meingym_tasks.domain.seed import seed_demo_data
from meingym_tasks.names import ACTIONS_QUEUE
from meingym_tasks.queue import queues
from meingym_tasks.registry.models import COMPLETE, FINISHED, ConsumerRecord, JobRecord
from meingym_tasks.settings import Settings

logger = logging.getLogger("bench.update")

TABLES = ("action", "user_stats", "sent_email", "user", "exercise", "job_record", "job_attempt", "job_consumer")
#: Rows compared with the Python scorer after every run (all rows in the smoke mode).
SAMPLE = 5_000
USERS = 1_000


def run(env: BenchEnv) -> dict[str, Any]:
    return {"databases": [run_database(env, kind) for kind in ("postgresql", "sqlite")]}


def run_database(env: BenchEnv, kind: str) -> dict[str, Any]:
    config = env.config
    data_dir = env.scratch(f"update/{kind}")
    if kind == "postgresql":
        env.flush_redis()
        broker_url, database_url = env.redis_url, str(env.postgres_url)
    else:
        broker_url, database_url = f"sqlite:///{data_dir / 'queue.db'}", f"sqlite:///{data_dir / 'meingym.db'}"
    base_env = env.app_env(data_dir, broker_url, database_url)
    settings = Settings.from_env(base_env)
    db = bind_database(settings)
    if kind == "postgresql":
        clear_postgres(db, *TABLES)
    queues.configure(settings)
    result: dict[str, Any] = {"database": kind, "broker": "redis" if kind == "postgresql" else "sqlite"}
    try:
        small = min(config.scaling_actions, config.actions)
        started = time.perf_counter()
        seed_demo_data(USERS, small, seed=42)
        seeded = small
        scaling = []
        for consumers in (1, 2):
            scaling.append(
                measure(env, kind, base_env, seeded, consumers, config.scaling_batch, full_check=consumers == 1)
            )
        result["scaling"] = {"actions": seeded, "batch_size": config.scaling_batch, "runs": scaling}
        if config.actions > seeded:
            seed_demo_data(0, config.actions - seeded, seed=43)
            seeded = config.actions
        result["seed_seconds"] = time.perf_counter() - started
        batch = settings.update_batch_size
        result["large"] = measure(env, kind, base_env, seeded, 1, batch, full_check=True)
    finally:
        queues.reset()
        if not database.is_closed():
            database.close()
    return result


def measure(
    env: BenchEnv,
    kind: str,
    base_env: dict[str, str],
    actions: int,
    consumers: int,
    batch_size: int,
    full_check: bool,
) -> dict[str, Any]:
    """Floor and job ``runs`` times, paired; ratio, peak RSS, batches and the correctness checks."""
    config = env.config
    job_env = {**base_env, "MEINGYM_UPDATE_BATCH_SIZE": str(batch_size)}
    floors: list[float | None] = []
    jobs: list[dict[str, Any]] = []
    for rep in range(config.runs):
        steps = ("floor", "job") if rep % 2 == 0 else ("job", "floor")
        for step in steps:
            settle(kind)
            if step == "floor":
                floors.append(floor_seconds())
            else:
                jobs.append(run_job(env, kind, job_env, consumers, full_check and rep == config.runs - 1))
        logger.info(
            "update %s %d actions, %d consumer(s), run %d: floor %.2f s, job %.2f s",
            kind, actions, consumers, rep + 1, floors[-1] or 0, jobs[-1]["wall_seconds"],
        )  # fmt: skip
    job_seconds = [j["wall_seconds"] for j in jobs]
    return {
        "actions": actions,
        "consumers": consumers,
        "workers_per_consumer": config.update_workers,
        "batch_size": batch_size,
        "floor_seconds": summarize(floors),
        "job_seconds": summarize(job_seconds),
        "job_record_seconds": summarize([j["record_seconds"] for j in jobs]),
        "ratio": ratios(job_seconds, floors),
        "floor_actions_per_s": summarize([actions / f if f else None for f in floors]),
        "job_actions_per_s": summarize([actions / s if s else None for s in job_seconds]),
        "consumer_peak_rss_mb": summarize([j["peak_rss_mb"] for j in jobs]),
        "batches": jobs[-1]["batches"],
        "checks": [j["checks"] for j in jobs],
    }


def settle(kind: str) -> None:
    """Leave no dead rows or pending checkpoint from the previous step to the next one."""
    if kind == "postgresql":
        database.execute_sql("VACUUM ANALYZE action")
        database.execute_sql("CHECKPOINT")
    else:
        database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    database.close()


def floor_seconds() -> float:
    """One statement scoring every action with the job's own SQL expression."""
    query = Action.update(score=action_score_expression(), scored_at=utcnow())
    started = time.perf_counter()
    with write_transaction():
        query.execute()
    seconds = time.perf_counter() - started
    database.close()
    return seconds


def start_consumer(env: BenchEnv, job_env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A real consumer of the actions queue, as the systemd unit starts it (quiet logging)."""
    huey_consumer = Path(sys.executable).parent / "huey_consumer"
    command = [str(huey_consumer), "meingym_tasks.consumers.actions", "-w", str(env.config.update_workers)]
    command += ["-k", "thread", "-q"]
    with open(log, "ab") as output:
        return subprocess.Popen(command, env={**os.environ, **job_env}, stdout=output, stderr=subprocess.STDOUT)


def run_job(env: BenchEnv, kind: str, job_env: dict[str, str], consumers: int, full_check: bool) -> dict[str, Any]:
    from meingym_tasks.jobs.tasks import trigger_update_all_actions

    log_dir = Path(job_env["MEINGYM_DATA_DIR"])
    procs = [start_consumer(env, job_env, log_dir / f"consumer-{i}.log") for i in range(consumers)]
    try:
        pids = [p.pid for p in procs]

        def registered() -> bool:
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a consumer exited with {proc.returncode}; see {log_dir}")
            alive = ConsumerRecord.select().where(ConsumerRecord.queue == ACTIONS_QUEUE, ConsumerRecord.pid.in_(pids))
            return int(alive.count()) == consumers

        wait_until(registered, 60, 0.1, "the consumers' first heartbeat")
        database.close()
        triggered_at = utcnow() - timedelta(seconds=1)  # naive UTC, as stored; a second of clock slack
        started = time.perf_counter()
        job_id = trigger_update_all_actions()["job_id"]
        database.close()

        def finished() -> bool:
            state = JobRecord.select(JobRecord.state).where(JobRecord.job_id == job_id).scalar()
            database.close()
            return state in FINISHED

        wait_until(finished, env.config.step_timeout, 0.05, "update-all-actions to finish")
        wall = time.perf_counter() - started
        peak = [proc_status_kb(pid, "VmHWM") for pid in pids]
    finally:
        for proc in procs:
            stop_process(proc)
    record = JobRecord.get(JobRecord.job_id == job_id)
    seconds = (record.finished_at - record.started_at).total_seconds() if record.started_at else None
    summary = record.result or {}
    checks = check_scores(triggered_at, full_check, env.config.smoke)
    checks["state"] = record.state
    checks["actions_scored"] = summary.get("actions_scored")
    checks["batches_complete"] = (
        JobRecord.select().where(JobRecord.parent_id == job_id, JobRecord.state == COMPLETE).count()
    )
    checks["ok"] = checks["ok"] and record.state == COMPLETE and summary.get("actions_scored") == checks["actions"]
    database.close()
    return {
        "record_seconds": seconds,
        "wall_seconds": wall,
        "batches": summary.get("batches"),
        "peak_rss_mb": max((p for p in peak if p is not None), default=0) / 1024 or None,
        "checks": checks,
    }


def check_scores(triggered_at: Any, full_check: bool, smoke: bool) -> dict[str, Any]:
    """Every action rescored by this run; sampled rows (all when ``smoke``) equal to the Python scorer."""
    total = Action.select().count()
    unscored = Action.select().where(Action.score.is_null()).count()
    stale = Action.select().where(Action.scored_at < triggered_at).count()
    query = Action.select(Action, Exercise).join(Exercise)
    if not smoke and total > SAMPLE:
        low, high = Action.select(peewee.fn.MIN(Action.id), peewee.fn.MAX(Action.id)).scalar(as_tuple=True)
        ids = random.Random(total).sample(range(low, high + 1), SAMPLE)
        query = query.where(Action.id.in_(ids))
    checked = mismatched = 0
    for action in query.iterator():
        checked += 1
        if action.score != action.python_score():
            mismatched += 1
    checks: dict[str, Any] = {
        "actions": total,
        "unscored": unscored,
        "not_rescored": stale,
        "python_checked": checked,
        "python_mismatched": mismatched,
    }
    if full_check:  # every stored score against the SQL expression, as one scan
        differing = Action.select().where(Action.score != action_score_expression()).count()
        checks["sql_mismatched"] = differing
    checks["ok"] = unscored == 0 and stale == 0 and mismatched == 0 and checked > 0 and not checks.get("sql_mismatched")
    return checks


__all__ = ["run"]
