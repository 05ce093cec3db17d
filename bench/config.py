"""The sizes of a bench run, from the environment (``MEINGYM_BENCH_*``), full or smoke."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

SECTIONS = ("throughput", "latency", "update", "api", "memory")
BROKERS = ("redis", "sqlite", "postgres")
DEFAULT_POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What to measure and how much; ``smoke`` is the CI mode (tiny sizes, one run)."""

    smoke: bool = False
    runs: int = 3
    #: Section 1: no-op jobs per measurement, and the thread-worker counts compared.
    jobs: int = 20_000
    workers: tuple[int, ...] = (1, 4)
    brokers: tuple[str, ...] = BROKERS
    #: Jobs of the uncounted warm-up measurement of each stack on each broker, and of the SQL-counting run.
    warmup_jobs: int = 1_000
    count_jobs: int = 2_000
    #: Section 2: jobs enqueued one at a time to an idle consumer, per stack, broker and run.
    latency_samples: int = 300
    #: Section 2: actions of the big run, of the consumer-scaling run and its batch size.
    actions: int = 1_000_000
    scaling_actions: int = 100_000
    scaling_batch: int = 10_000
    #: Workers of each update-all-actions consumer (MEINGYM_WORKERS' default).
    update_workers: int = 2
    #: Section 3: job records in the registry, requests per latency figure, POST seconds.
    api_records: int = 1_000_000
    api_requests: int = 300
    api_post_seconds: float = 10.0
    api_post_clients: int = 8
    #: Section 4: consumer RSS after this many jobs.
    memory_marks: tuple[int, ...] = (1_000, 10_000, 100_000)
    memory_workers: int = 4
    memory_runs: int = 3
    sections: tuple[str, ...] = SECTIONS
    postgres_admin_url: str = DEFAULT_POSTGRES_ADMIN_URL
    #: None: start a private redis-server (clean INFO commandstats); else use this database, which is flushed.
    redis_url: str | None = None
    #: Upper bound, in seconds, for any single wait (a consumer draining, a job finishing).
    step_timeout: float = 1800.0

    @classmethod
    def from_env(cls, smoke: bool, environ: Mapping[str, str] | None = None) -> BenchConfig:
        env = os.environ if environ is None else environ
        base = cls.smoke_defaults() if smoke else cls()

        def integer(name: str, default: int) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = int(raw.replace("_", ""))
            except ValueError:
                raise SystemExit(f"{name}={raw!r} is not allowed; expected a whole number >= 1") from None
            if value < 1:
                raise SystemExit(f"{name}={raw!r} is not allowed; expected a whole number >= 1")
            return value

        sections = tuple(s.strip() for s in env.get("MEINGYM_BENCH_SECTIONS", "").split(",") if s.strip())
        unknown = set(sections) - set(SECTIONS)
        if unknown:
            raise SystemExit(f"MEINGYM_BENCH_SECTIONS={','.join(sections)!r}: expected some of {', '.join(SECTIONS)}")
        brokers = tuple(b.strip() for b in env.get("MEINGYM_BENCH_BROKERS", "").split(",") if b.strip())
        if set(brokers) - set(BROKERS):
            raise SystemExit(f"MEINGYM_BENCH_BROKERS={','.join(brokers)!r}: expected some of {', '.join(BROKERS)}")
        raw_workers = env.get("MEINGYM_BENCH_WORKERS", "").strip()
        if raw_workers and not all(w.strip().isdigit() and int(w) >= 1 for w in raw_workers.split(",")):
            raise SystemExit(f"MEINGYM_BENCH_WORKERS={raw_workers!r}: expected worker counts such as 1,4")
        workers = tuple(int(w) for w in raw_workers.split(",")) if raw_workers else ()
        marks = base.memory_marks
        if env.get("MEINGYM_BENCH_MEMORY_JOBS", "").strip():
            last = integer("MEINGYM_BENCH_MEMORY_JOBS", marks[-1])
            marks = tuple(sorted({max(1, last // 100), max(1, last // 10), last}))
        return dataclasses.replace(
            base,
            runs=integer("MEINGYM_BENCH_RUNS", base.runs),
            jobs=integer("MEINGYM_BENCH_JOBS", base.jobs),
            brokers=brokers or base.brokers,
            workers=workers or base.workers,
            latency_samples=integer("MEINGYM_BENCH_LATENCY_SAMPLES", base.latency_samples),
            actions=integer("MEINGYM_BENCH_ACTIONS", base.actions),
            scaling_actions=integer("MEINGYM_BENCH_SCALING_ACTIONS", base.scaling_actions),
            api_records=integer("MEINGYM_BENCH_API_RECORDS", base.api_records),
            memory_marks=marks,
            memory_runs=integer("MEINGYM_BENCH_MEMORY_RUNS", base.memory_runs),
            sections=sections or base.sections,
            postgres_admin_url=env.get("MEINGYM_BENCH_POSTGRES_URL", "").strip() or base.postgres_admin_url,
            redis_url=env.get("MEINGYM_BENCH_REDIS_URL", "").strip() or None,
            step_timeout=float(integer("MEINGYM_BENCH_STEP_TIMEOUT", int(base.step_timeout))),
        )

    @classmethod
    def smoke_defaults(cls) -> BenchConfig:
        return cls(
            smoke=True,
            runs=1,
            jobs=200,
            warmup_jobs=50,
            count_jobs=100,
            latency_samples=20,
            actions=10_000,
            scaling_actions=10_000,
            scaling_batch=2_000,
            api_records=2_000,
            api_requests=20,
            api_post_seconds=1.5,
            api_post_clients=2,
            memory_marks=(50, 100, 200),
            memory_runs=1,
            step_timeout=90.0,
        )

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self) | {"postgres_admin_url": "(admin URL)", "redis_url": self.redis_url}


REPO = Path(__file__).resolve().parent.parent
