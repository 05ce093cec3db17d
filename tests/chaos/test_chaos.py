"""No job lost: real consumer processes killed, stopped and starved of their servers.

Every test here is bounded in time and runs only on loopback. Side effects are
counted in the database: each welcome-email job must leave exactly one marker
row and one .eml file, however often its consumer died.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import peewee
import pytest
import redis
from huey.registry import Message
from huey.serializer import SignedSerializer

from meingym_tasks.db.database import database
from meingym_tasks.domain.models import SentEmail, User
from meingym_tasks.exceptions import BrokerUnavailable
from meingym_tasks.jobs import counts, dead_letters, schedule_user_processing, schedule_welcome_email
from meingym_tasks.queue import queues
from meingym_tasks.queue.queues import users_queue
from meingym_tasks.settings import Settings
from tests.helpers import free_port, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

HUEY_CONSUMER = Path(sys.executable).parent / "huey_consumer"
#: How long the Redis outage lasts (the issue asks for 30 s; shorten locally with the variable).
OUTAGE_SECONDS = float(os.environ.get("MEINGYM_CHAOS_OUTAGE_SECONDS", "30"))


class Consumers:
    """huey_consumer processes of the users queue that a test starts, kills and restarts."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = {**os.environ, **env}
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, queue: str = "users", workers: int = 2) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"consumer-{queue}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [str(HUEY_CONSUMER), f"meingym_tasks.consumers.{queue}", "-w", str(workers), "-k", "thread"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "".join(path.read_text(errors="replace") for path in sorted(self.log_dir.glob("*.log")))

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def consumers(app_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Consumers]]:
    made: list[Consumers] = []

    def make(**extra: str) -> Consumers:
        group = Consumers({**app_env, "MEINGYM_HEARTBEAT_TIMEOUT": "3", **extra}, tmp_path / f"logs-{len(made)}")
        made.append(group)
        return group

    yield make
    for group in made:
        group.stop_all()


def bind(app_env: dict[str, str], **extra: str) -> Settings:
    settings = Settings.from_env({**app_env, "MEINGYM_HEARTBEAT_TIMEOUT": "3", **extra})
    queues.configure(settings)
    return settings


def completed() -> int:
    return counts()["users-processing"]["complete"]


def states() -> dict[str, int]:
    return {state: n for state, n in counts()["users-processing"].items() if n}


def outbox_files(settings: Settings) -> int:
    return len(list(settings.outbox_dir.glob("*.eml"))) if settings.outbox_dir.exists() else 0


def enqueue_mixed(users: list[int], jobs: int) -> list[str]:
    """Half process-user-data, half send-welcome-email, round-robin over ``users``."""
    ids = []
    for n in range(jobs):
        user = users[n % len(users)]
        schedule = schedule_welcome_email if n % 2 else schedule_user_processing
        ids.append(schedule(user)["job_id"])
    return ids


def make_users(count: int) -> list[int]:
    User.insert_many(
        [
            {"email": f"chaos{n}@example.org", "name": f"Chaos {n}", "created": "2026-11-29 00:00:00"}
            for n in range(count)
        ]
    ).execute()
    return [u.id for u in User.select(User.id).order_by(User.id)]


SETUPS = pytest.mark.parametrize(
    ("broker_url", "database_url"),
    [("sqlite", "sqlite"), ("redis", "postgres"), ("postgres", "postgres")],
    indirect=True,
)


@SETUPS
def test_a_consumer_killed_mid_run_loses_no_job_and_sends_no_email_twice(
    app_env: dict[str, str], db: peewee.Database, consumers: Callable[..., Consumers]
) -> None:
    settings = bind(app_env)
    jobs = 2_000
    enqueue_mixed(make_users(100), jobs)
    group = consumers()
    victim = group.start()
    group.start()

    wait_until(lambda: completed() >= jobs // 4, 180, "a quarter of the jobs")
    victim.send_signal(signal.SIGKILL)  # no goodbye: its in-flight jobs stay leased to a dead consumer
    victim.wait()
    group.start()  # a replacement, as systemd's Restart=on-failure would start
    wait_until(lambda: completed() == jobs, 240, lambda: f"every job to complete; states now {states()}")

    assert counts()["users-processing"]["failed"] == 0
    assert SentEmail.select().count() == jobs // 2
    assert outbox_files(settings) == jobs // 2
    assert dead_letters()["counts"]["users-processing"] == 0
    assert users_queue.pending_count() == 0


@SETUPS
def test_a_graceful_stop_mid_run_then_a_restart_loses_nothing(
    app_env: dict[str, str], db: peewee.Database, consumers: Callable[..., Consumers]
) -> None:
    settings = bind(app_env)
    jobs = 300
    enqueue_mixed(make_users(20), jobs)
    group = consumers()
    first = group.start()

    wait_until(lambda: completed() >= 50, 120, "50 jobs")
    first.send_signal(signal.SIGINT)
    assert first.wait(60) == 0
    stuck = {state: n for state, n in counts()["users-processing"].items() if state in ("running", "interrupted")}
    group.start()
    wait_until(lambda: completed() == jobs, 180, "every job to complete")

    assert stuck == {"running": 0, "interrupted": 0}
    assert SentEmail.select().count() == outbox_files(settings) == jobs // 2


# --------------------------------------------------------------------------- Redis outage


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[[str], None]]:
    """A redis-server of our own (AOF, fsync always) that the test stops and starts."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    folder = tmp_path / "redis"
    folder.mkdir()
    command = [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
        "--appendonly", "yes", "--appendfsync", "always", "--save", "",
    ]  # fmt: skip
    server: list[subprocess.Popen[bytes]] = []

    def control(action: str) -> None:
        if action == "start":
            server.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
            wait_until(lambda: _pings(port), 10, "redis-server to start")
        else:
            server[-1].terminate()  # SIGTERM: redis writes its AOF and exits
            server[-1].wait(10)

    control("start")
    control.url = f"redis://127.0.0.1:{port}/0"  # type: ignore[attr-defined]
    yield control
    if server and server[-1].poll() is None:
        server[-1].kill()
        server[-1].wait()


def _pings(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.2).ping())
    except redis.exceptions.ConnectionError:
        return False


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_consumers_ride_out_a_redis_outage_and_every_accepted_job_completes(
    make_env: Callable[..., dict[str, str]],
    database_url: str,
    db: peewee.Database,
    private_redis: Any,
    consumers: Callable[..., Consumers],
) -> None:
    env = make_env(MEINGYM_BROKER_URL=private_redis.url, DATABASE_URL=database_url, MEINGYM_HEARTBEAT_TIMEOUT="3")
    queues.configure(Settings.from_env(env))
    users = make_users(10)
    group = Consumers(env, Path(env["MEINGYM_DATA_DIR"]) / "logs")
    try:
        group.start()
        group.start()
        before = enqueue_mixed(users, 200)

        private_redis("stop")
        with pytest.raises(BrokerUnavailable, match="the queue broker is unavailable"):
            schedule_user_processing(users[0])
        time.sleep(OUTAGE_SECONDS)
        private_redis("start")

        after = enqueue_mixed(users, 100)
        wait_until(lambda: completed() == len(before) + len(after), 180, "every accepted job")
    finally:
        group.stop_all()

    logs = group.logs()
    assert all(proc.returncode == 0 for proc in group.procs)
    assert logs.count("broker unavailable") == 2  # one line per consumer per outage
    assert logs.count("broker available again") == 2
    assert SentEmail.select().count() == 150


# --------------------------------------------------------------------------- PostgreSQL connection loss


@pytest.mark.parametrize(("broker_url", "database_url"), [("redis", "postgres")], indirect=True)
def test_jobs_survive_their_database_connections_being_cut(
    app_env: dict[str, str], db: peewee.Database, consumers: Callable[..., Consumers]
) -> None:
    bind(app_env)
    jobs = 200
    enqueue_mixed(make_users(20), jobs)
    group = consumers()
    group.start()
    group.start()

    wait_until(lambda: completed() >= 20, 120, "the first jobs")
    name = db.database
    for _ in range(5):  # cut every connection of the consumers, again and again
        db.execute_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        time.sleep(0.3)
    database.close()
    wait_until(lambda: completed() == jobs, 180, "every job to complete after the cuts")

    assert SentEmail.select().count() == jobs // 2
    assert counts()["users-processing"]["failed"] == 0


# --------------------------------------------------------------------------- bad messages


def foreign_messages(settings: Settings) -> dict[str, bytes]:
    """Messages no producer of ours would write: each must be dead-lettered, none executed."""
    ours = users_queue.serializer
    theirs = SignedSerializer(secret="somebody else's key", salt="meingym-tasks")
    job = Message("00000000-0000-4000-8000-00000000000a", "meingym_tasks.tasks.process-user-data", None, 0, 0, None,
                  (1,), {}, None, None, None, None, None, None, 0)  # fmt: skip
    return {
        "garbage": b"\x00 this is not a huey message",
        "signed with another key": theirs.serialize(job),
        "unknown job": ours.serialize(job._replace(name="meingym_tasks.tasks.format-hard-disk")),
        "wrong arguments": ours.serialize(job._replace(args=(1, 2, 3))),
    }


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bad_messages_are_dead_lettered_and_the_consumer_keeps_running(
    app_env: dict[str, str], broker_url: str, db: peewee.Database, consumers: Callable[..., Consumers]
) -> None:
    settings = bind(app_env)
    for message in foreign_messages(settings).values():
        users_queue.storage.enqueue(message)  # straight into the broker, past every check of ours
    group = consumers()
    group.start()
    good = schedule_user_processing(make_users(1)[0])["job_id"]

    wait_until(lambda: completed() == 1, 60, "the good job")
    letters = dead_letters(queue="users-processing")

    assert group.procs[0].poll() is None  # still running
    assert letters["counts"]["users-processing"] == 4
    reasons = " | ".join(d["reason"] for d in letters["dead_letters"])
    assert "Signature" in reasons and "not found in TaskRegistry" in reasons and "positional" in reasons
    assert good
