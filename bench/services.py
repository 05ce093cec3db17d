"""What the bench runs against: a private Redis, a throwaway PostgreSQL database, the machine.

A private ``redis-server`` (the machine's own binary, on a free loopback port,
no persistence, like the local service) keeps ``INFO commandstats`` ours alone
while other people use the shared Redis. ``MEINGYM_BENCH_REDIS_URL`` points the
bench at an existing database instead; that database is flushed between
measurements and its command counts include everybody else's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import peewee
import redis

from bench.config import REPO, BenchConfig
from meingym_tasks.db.database import database, init_database
from meingym_tasks.db.migrate import migrate
from meingym_tasks.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Any, timeout: float, interval: float = 0.05, what: str = "condition") -> None:
    """Poll ``predicate()`` until it is true; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT, timeout: float = 30) -> int:
    """Send ``sig`` to a process we started and wait; SIGKILL when it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return int(proc.returncode)


@contextlib.contextmanager
def redis_server(workdir: Path, url: str | None = None) -> Iterator[str]:
    """A Redis database URL: a private server for the duration, or ``url`` as given."""
    if url is not None:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: install Redis or set MEINGYM_BENCH_REDIS_URL")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    command += ["--dir", str(workdir), "--logfile", str(workdir / "redis.log")]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    private = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(private, socket_connect_timeout=1)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.exceptions.ConnectionError:
                if proc.poll() is not None:
                    raise SystemExit(f"redis-server exited with {proc.returncode}; see {workdir}/redis.log") from None
                return False

        wait_until(up, 15, what="the private redis-server")
        client.close()
        yield private
    finally:
        stop_process(proc, signal.SIGTERM, 15)


def command_counts(client: redis.Redis) -> dict[str, int]:
    """Calls per command since the server started (``INFO commandstats``)."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def command_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Commands run between two snapshots, without the ``INFO`` calls that took them."""
    delta = {name: calls - before.get(name, 0) for name, calls in after.items()}
    delta["info"] = delta.get("info", 0) - 1
    return {name: calls for name, calls in sorted(delta.items()) if calls > 0}


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A throwaway PostgreSQL database, dropped afterwards (also when the bench fails)."""
    import psycopg

    name = f"meingym_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        if database.obj is not None and not database.is_closed():
            database.close()
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bind_database(settings: Settings) -> peewee.Database:
    """Bind the project database to ``settings`` and bring its schema up to date."""
    bound = init_database(settings)
    migrate(bound)
    return bound


def clear_postgres(db: peewee.Database, *tables: str) -> None:
    existing = set(db.get_tables())
    wanted = [t for t in tables if t in existing]
    if wanted:
        db.execute_sql("TRUNCATE " + ", ".join(f'"{t}"' for t in wanted) + " RESTART IDENTITY CASCADE")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_mb() -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return None


def machine_info(redis_url: str, postgres_url: str | None) -> dict[str, Any]:
    """Cores, memory, load, and the versions of everything measured."""
    import sqlite3

    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_mb": _memory_mb(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "packages": {p: _version(p) for p in ("huey", "peewee", "redis", "psycopg", "fastapi", "uvicorn", "httpx")},
    }
    info["commit"] = os.environ.get("MEINGYM_BENCH_COMMIT") or git_commit()  # the label wins: code from elsewhere
    with contextlib.suppress(Exception):
        client = redis.Redis.from_url(redis_url)
        info["redis_server"] = client.info("server")["redis_version"]
        client.close()
    if postgres_url is not None:
        with contextlib.suppress(Exception):
            import psycopg

            with psycopg.connect(postgres_url, connect_timeout=5) as conn:
                info["postgresql"] = conn.execute("show server_version").fetchone()[0]  # type: ignore[index]
                settings = {}
                for name in ("shared_buffers", "synchronous_commit", "fsync", "max_wal_size", "work_mem"):
                    settings[name] = conn.execute(f"show {name}").fetchone()[0]  # type: ignore[index]
                info["postgresql_settings"] = settings
    return info


def git_commit() -> str:
    """This checkout's commit, noting uncommitted changes to the package."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "meingym_tasks"], cwd=REPO, capture_output=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = head.stdout.decode().strip() or "unknown"
    return commit + (" + uncommitted changes" if dirty.stdout.strip() else "")


def proc_status_kb(pid: int, field: str) -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` (VmRSS, VmHWM), or None when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclasses.dataclass
class BenchEnv:
    """Where this bench run measures: its config, scratch directory and the servers."""

    config: BenchConfig
    workdir: Path
    redis_url: str
    postgres_url: str | None
    secret: str = "meingym-bench-secret-not-for-production"

    def app_env(self, data_dir: Path, broker_url: str, database_url: str, **extra: str) -> dict[str, str]:
        """The environment of a meingym-tasks process (producer, consumer, web) for one measurement."""
        data_dir.mkdir(parents=True, exist_ok=True)
        return {
            "MEINGYM_DATA_DIR": str(data_dir),
            "MEINGYM_BROKER_URL": broker_url,
            "DATABASE_URL": database_url,
            "MEINGYM_SECRET_KEY": self.secret,
            "MEINGYM_SCHEDULER": "false",  # no nightly run starting in the middle of a measurement
            **extra,
        }

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def flush_redis(self) -> None:
        client = self.redis()
        try:
            client.flushdb()
        finally:
            client.close()

    def scratch(self, name: str) -> Path:
        """A fresh, empty directory under the work directory."""
        path = self.workdir / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path
