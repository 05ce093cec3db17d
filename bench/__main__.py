"""``python -m bench [--smoke] [--out DIR] [--update-docs]``: run the benchmarks, print and write the results.

Sizes come from ``MEINGYM_BENCH_*`` (see :mod:`bench.config`). The run starts a
private redis-server and creates a throwaway PostgreSQL database (both gone
afterwards), measures the sections, prints the tables and writes
``latest.json``, ``latest.md`` and ``chart.svg`` to ``--out``. The exit code
is 1 when a section failed or a correctness check did not hold (a missed
performance target is reported, not failed).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import chart, report
from bench.config import REPO, BenchConfig
from bench.services import BenchEnv, machine_info, postgres_database, redis_server

logger = logging.getLogger("bench")

MODULES = {
    "throughput": "bench.throughput",
    "latency": "bench.latency",
    "update": "bench.update",
    "api": "bench.http_api",
    "memory": "bench.memory",
}


def checks_ok(value: Any) -> bool:
    """False when any check below ``value`` (a dict with ``ok``) says ``ok: false``."""
    if isinstance(value, dict):
        return value.get("ok") is not False and all(checks_ok(v) for v in value.values())
    if isinstance(value, list):
        return all(checks_ok(v) for v in value)
    return True


def reduced(config: BenchConfig) -> str:
    """Which sizes differ from the issue's, said in words (empty when none)."""
    full = BenchConfig()
    notes = []
    for field, label in (
        ("jobs", "no-op jobs"),
        ("runs", "runs per figure"),
        ("actions", "actions"),
        ("scaling_actions", "actions of the consumer-scaling run"),
        ("api_records", "job records for the API"),
        ("memory_runs", "memory runs"),
    ):
        if getattr(config, field) != getattr(full, field):
            notes.append(f"{label} {getattr(config, field):,} instead of {getattr(full, field):,}")
    if config.memory_marks != full.memory_marks:
        notes.append(f"memory marks {config.memory_marks} instead of {full.memory_marks}")
    return "; ".join(notes)


def write_outputs(results: dict[str, Any], out: Path, update_docs: bool) -> None:
    (out / "chart.svg").write_text(chart.svg(results))
    block = report.markdown(results)
    (out / "latest.md").write_text(block)
    if update_docs and not report.update_docs(REPO / "docs" / "performance.md", block):
        logger.warning("docs/performance.md has no results markers; not updated")


def previous_run(path: Path | None) -> dict[str, Any] | None:
    """What the report shows of an earlier run: when, where, its targets and its throughput."""
    if path is None or not path.exists():
        return None
    earlier = json.loads(path.read_text())
    if "previous" in earlier:
        del earlier["previous"]
    keep = ("finished_at", "command", "mode", "minutes", "config", "machine", "load_average_end", "targets")
    kept = {key: earlier[key] for key in keep if key in earlier}
    if isinstance(earlier.get("throughput"), dict):
        kept["throughput"] = earlier["throughput"]
    return kept


def render(source: Path, out: Path, update_docs: bool, previous: Path | None = None) -> int:
    results = json.loads(source.read_text())
    if previous is not None:
        results["previous"] = previous_run(previous)
    results["targets"] = report.targets(results)
    out.mkdir(parents=True, exist_ok=True)
    write_outputs(results, out, update_docs)
    print(report.terminal(results))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run (CI)")
    parser.add_argument("--out", type=Path, help="where to write latest.json, latest.md, chart.svg")
    parser.add_argument("--update-docs", action="store_true", help="rewrite the results block of docs/performance.md")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the sections of the existing latest.json that this run does not measure (MEINGYM_BENCH_SECTIONS)",
    )
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="measure nothing: rewrite latest.md, chart.svg (and docs) from JSON"
    )
    parser.add_argument(
        "--previous",
        type=Path,
        metavar="JSON",
        help="an earlier run's latest.json, whose targets and throughput are shown beside this run's "
        "(default: previous.json in the output directory, when there is one)",
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        return render(args.render, args.out or args.render.parent, args.update_docs, args.previous)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    for noisy in ("peewee", "huey", "meingym_tasks"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    config = BenchConfig.from_env(args.smoke)
    out = args.out or (REPO / "var" / "bench-smoke" if config.smoke else REPO / "bench" / "results")
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="meingym-bench-"))
    started = time.monotonic()
    results: dict[str, Any] = {
        "command": "make bench-smoke" if config.smoke else "make bench",
        "mode": "smoke" if config.smoke else "full",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": config.as_dict(),
        "reduced": "" if config.smoke else reduced(config),
    }
    failed = False
    try:
        with (
            redis_server(workdir / "redis", config.redis_url) as redis_url,
            postgres_database(config.postgres_admin_url) as postgres_url,
        ):
            env = BenchEnv(config, workdir, redis_url, postgres_url)
            results["machine"] = machine_info(redis_url, postgres_url)
            for section in config.sections:
                logger.info("section %s", section)
                begun = time.monotonic()
                try:
                    results[section] = importlib.import_module(MODULES[section]).run(env)
                except Exception:
                    failed = True
                    logger.exception("section %s failed", section)
                    results[section] = {"status": "failed", "error": traceback.format_exc()}
                results[section]["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
                results[section]["minutes"] = round((time.monotonic() - begun) / 60, 1)
                results[section]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        if os.environ.get("MEINGYM_BENCH_KEEP") != "1":
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            logger.info("kept the work directory %s", workdir)
    previous = out / "latest.json"
    if args.merge and previous.exists():
        earlier = json.loads(previous.read_text())
        for section in MODULES:
            if section not in results and section in earlier:
                results[section] = earlier[section]
        results["merged"] = sorted((set(MODULES) - set(config.sections)) & set(earlier))
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["minutes"] = (time.monotonic() - started) / 60
    results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    results["targets"] = report.targets(results)
    results["previous"] = previous_run(args.previous or out / "previous.json")
    results["checks_ok"] = checks_ok({k: v for k, v in results.items() if k in MODULES})

    (out / "latest.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    write_outputs(results, out, args.update_docs)
    print(report.terminal(results))
    if not results["checks_ok"]:
        logger.error("a correctness check failed: see %s", out / "latest.json")
    return 1 if failed or not results["checks_ok"] else 0


if __name__ == "__main__":
    sys.exit(main())
