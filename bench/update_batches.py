"""``python -m bench.update_batches 50000,200000``: update-all-actions on SQLite at several batch sizes, paired.

Seeds 1M actions (``MEINGYM_BENCH_ACTIONS``) in a scratch SQLite database once,
then for each batch size measures the one-UPDATE floor and the job
(``MEINGYM_BENCH_RUNS`` times each, alternating, as ``make bench`` does) and
prints each size's job/floor ratio: median (min-max). It chose SQLite's
default batch size (see ``default_update_batch_size`` in settings.py); the
floor moves between machines and runs, so only sizes measured in one run
compare.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from bench import update
from bench.config import BenchConfig
from bench.services import BenchEnv, bind_database
from meingym_tasks.domain.seed import seed_demo_data
from meingym_tasks.queue import queues
from meingym_tasks.settings import Settings


def main(sizes: list[int]) -> None:
    config = BenchConfig.from_env(False)
    with tempfile.TemporaryDirectory(prefix="meingym-batches-") as work:
        env = BenchEnv(config, Path(work), "redis://unused", None)  # SQLite only: no server
        data_dir = env.scratch("sqlite")
        base_env = env.app_env(data_dir, f"sqlite:///{data_dir / 'queue.db'}", f"sqlite:///{data_dir / 'meingym.db'}")
        settings = Settings.from_env(base_env)
        bind_database(settings)
        queues.configure(settings)
        try:
            seed_demo_data(100, config.actions, seed=42)
            for size in sizes:
                measured = update.measure(env, "sqlite", base_env, config.actions, 1, size, full_check=False)
                ratio = measured["ratio"]
                print(
                    f"{size:>9,} ids per batch ({measured['batches']} batches): job/floor "
                    f"{ratio['median']:.2f} ({ratio['min']:.2f}-{ratio['max']:.2f}), "
                    f"floor {measured['floor_seconds']['median']:.2f} s, job {measured['job_seconds']['median']:.2f} s",
                    flush=True,
                )
        finally:
            queues.reset()


if __name__ == "__main__":
    main([int(size) for size in (sys.argv[1] if len(sys.argv) > 1 else "50000,200000").split(",")])
