"""The benchmarks in their tiny mode (``make bench-smoke``), so the bench code cannot rot.

What is asserted is that the bench measured the right thing, never how fast:
every no-op job ran once and returned its argument, every registry record
ended complete, every start latency was measured on every broker, every
action was rescored to exactly the Python scorer's value, and the results
files were written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import POSTGRES_ADMIN_URL, REQUIRE_SERVICES, require

pytestmark = [pytest.mark.slow, pytest.mark.services]

REPO = Path(__file__).resolve().parent.parent
SMOKE_JOBS = 200
SMOKE_ACTIONS = 10_000


def test_the_smoke_bench_measures_every_section_correctly(tmp_path: Path) -> None:
    require("postgres")
    if shutil.which("redis-server") is None:  # the bench runs a private server for clean command counts
        message = "redis-server is not installed"
        if REQUIRE_SERVICES:
            pytest.fail(message + " (MEINGYM_TEST_REQUIRE_SERVICES=1)")
        pytest.skip(message)
    env = {**os.environ, "MEINGYM_BENCH_POSTGRES_URL": POSTGRES_ADMIN_URL}
    for name in list(env):
        if name.startswith("MEINGYM_BENCH_") and name != "MEINGYM_BENCH_POSTGRES_URL":
            del env[name]  # the smoke sizes, whatever the developer's shell says
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-4000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    assert results["mode"] == "smoke" and results["checks_ok"] is True

    throughput = results["throughput"]
    assert {(r["broker"], r["workers"]) for r in throughput["rows"]} == {
        (broker, workers) for broker in ("redis", "sqlite", "postgres") for workers in (1, 4)
    }
    for row in throughput["rows"]:
        for stack in ("plain", "full"):
            for check in row[stack]["checks"]:
                assert check["jobs"] == check["completed"] == check["results_ok"] == SMOKE_JOBS, (row, stack)
                assert check["errors"] == 0
        for check in row["full"]["checks"]:
            assert check["records_complete"] == SMOKE_JOBS and check["unacknowledged"] == 0
        if row["broker"] == "redis":  # counted, and at least the push and the pop of every job
            assert row["plain"]["commands_per_job"]["median"] >= 2
            assert row["full"]["commands_per_job"]["median"] >= 2
    for broker in ("sqlite", "postgres"):  # SQL counted in the consumer: at least a statement per job
        for stack in ("plain", "full"):
            counted = throughput["statements"][broker][stack]
            assert counted["checks"]["ok"], counted
            assert counted["per_job"]["broker"]["statements"] >= 1

    latency = results["latency"]
    assert {r["broker"] for r in latency["rows"]} == {"redis", "sqlite", "postgres"}
    for row in latency["rows"]:
        for stack in ("plain", "full"):
            assert all(check["ok"] for check in row[stack]["checks"]), (row["broker"], stack, row[stack]["checks"])
            assert 0 < row[stack]["p50_ms"]["median"] <= row[stack]["p99_ms"]["median"]

    for db in results["update"]["databases"]:
        for measured in [*db["scaling"]["runs"], db["large"]]:
            assert measured["batches"] >= 1
            for check in measured["checks"]:
                assert check["state"] == "complete"
                assert check["actions"] == check["actions_scored"] == SMOKE_ACTIONS
                assert check["python_checked"] == SMOKE_ACTIONS and check["python_mismatched"] == 0
                assert check["unscored"] == 0 and check["not_rescored"] == 0
                assert check.get("sql_mismatched", 0) == 0
                assert check["batches_complete"] >= measured["batches"]

    memory = results["memory"]
    for stack in ("plain", "full"):
        for check in memory[stack]["checks"]:
            assert check["completed"] == check["jobs"] == memory["marks"][-1]
            assert check["results_ok"] == check["results_checked"]
        assert all(memory[stack]["rss_mb"][str(mark)]["median"] for mark in memory["marks"])

    api = results["api"]
    assert api["status"] in ("measured", "not yet"), api
    if api["status"] == "measured":
        assert api["checks"]["ok"], api["checks"]
        assert api["post"]["accepted"] > 0 and api["post"]["rejected"] == 0

    assert (tmp_path / "chart.svg").read_text().startswith("<svg")
    assert "| target |" in (tmp_path / "latest.md").read_text()
