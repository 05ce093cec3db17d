"""Network partitions: a consumer host cut off from Redis and PostgreSQL while it works, then healed.

Real consumers (``meingym-tasks worker``) run on test hosts, network namespaces
on a private LAN (``tests/netns.py``); a private Redis and PostgreSQL listen on
the server's LAN address, and this process enqueues from the server. A cut
host loses every packet both ways, as with a failed cable or switch port: its
connections hang rather than fail, the hard case.

What must hold (docs/reliability.md):

* A partition longer than ``MEINGYM_HEARTBEAT_TIMEOUT``: the other host takes
  over the cut one's jobs; every accepted job completes; a job that ran on both
  sides is a second attempt with its reason on its record, never silent; the
  cut host touches no other consumer's in-flight messages (checked command by
  command with ``MONITOR``) and works again by itself once healed.
* A shorter partition: nothing runs twice.
* A slow, lossy host (200 ms more per round trip, 5 % of packets lost): every
  job completes, and the slow host is not mistaken for a dead one.
* The scheduler host cut off at the nightly run's minute: the run still starts
  exactly once per night.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from meingym_tasks.db.database import database, init_database
from meingym_tasks.db.migrate import migrate
from meingym_tasks.domain.models import Action, User
from meingym_tasks.domain.seed import seed_demo_data
from meingym_tasks.jobs import counts, schedule_user_processing
from meingym_tasks.names import PROCESS_USER_DATA
from meingym_tasks.queue import queues
from meingym_tasks.queue.queues import actions_queue, users_queue
from meingym_tasks.registry.models import JobAttempt, JobRecord
from meingym_tasks.registry.recorder import flush_all
from meingym_tasks.settings import Settings
from tests.helpers import executions, wait_until
from tests.netns import PREFIX, DelayRelay, Host, Network, PostgresCluster, RedisServer, require_netns

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

MEINGYM_TASKS = Path(sys.executable).parent / "meingym-tasks"
SECRET = "partition-test-secret-key-0123456789"
#: The heartbeat timeout of the long-partition tests: short, to keep them short.
HEARTBEAT = 3
#: What a takeover may take after the cut: the timeout, the reaper's beat interval (a third of it),
#: a socket timeout for the last beat the cut host sent, and slack for a busy machine.
TAKEOVER_WITHIN = HEARTBEAT + HEARTBEAT / 3 + 5 + 5
USERS_QUEUE = "users-processing"


@dataclasses.dataclass
class Lan:
    """The test hosts, the server's Redis and PostgreSQL, and how a host reaches them."""

    net: Network
    redis: RedisServer
    pg: PostgresCluster
    folder: Path

    def env(
        self, host: Host, redis_port: int | None = None, pg_port: int | None = None, **extra: str
    ) -> dict[str, str]:
        """The environment of a consumer on ``host``: its own data dir, the shared broker, database and key."""
        server = self.net.server_address
        return {
            **os.environ,
            "MEINGYM_DATA_DIR": str(self.folder / host.name),
            "MEINGYM_SECRET_KEY": SECRET,
            "MEINGYM_BROKER_URL": f"redis://{server}:{redis_port or self.redis.port}/0",
            "DATABASE_URL": self.pg.url("meingym", server, pg_port),
            "MEINGYM_HEARTBEAT_TIMEOUT": str(HEARTBEAT),
            "MEINGYM_WORKERS": "2",
            "MEINGYM_SCHEDULER": "false",
            **extra,
        }

    def worker(self, host: Host, queue: str = "users", **env: Any) -> int:
        """Start ``meingym-tasks worker QUEUE`` on ``host``; its PID."""
        argv = [str(MEINGYM_TASKS), "worker", queue]
        return host.start(argv, self.env(host, **env), self.log(host)).pid

    def log(self, host: Host) -> Path:
        return self.folder / "logs" / f"{host.name}.log"

    def logs(self, host: Host) -> str:
        path = self.log(host)
        return path.read_text(errors="replace") if path.exists() else ""


def bind(folder: Path, url: str, database_url: str) -> Settings:
    """Bind this process's queues and database (the server, a producer) to the LAN's services."""
    settings = Settings.from_env(
        {"MEINGYM_DATA_DIR": str(folder / "server"), "MEINGYM_SECRET_KEY": SECRET,
         "MEINGYM_BROKER_URL": url, "DATABASE_URL": database_url}
    )  # fmt: skip
    queues.configure(settings)
    init_database(settings)
    return settings


@pytest.fixture
def lan(tmp_path: Path) -> Iterator[Lan]:
    require_netns()
    with Network(["a", "b", "c"]) as net:
        server = net.server_address
        with (
            RedisServer(tmp_path / "redis", [server]) as redis_server,
            PostgresCluster([server], f"{PREFIX}.{net.number}.0/24") as pg,
        ):
            pg.create_database("meingym")
            bind(tmp_path, redis_server.url(server), pg.url("meingym", server))
            migrate(database)
            try:
                yield Lan(net, redis_server, pg, tmp_path)
            finally:
                for host in net.hosts.values():
                    host.stop()
                queues.reset()
                if not database.is_closed():
                    database.close()


# --------------------------------------------------------------------------- observing


class CommandLog:
    """Every command Redis runs, with the client address it came from (Redis ``MONITOR``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.entries: list[tuple[float, str, str]] = []  # (monotonic time, client address, command)
        self._marker = f"end-of-monitor-{uuid.uuid4().hex}"
        self._thread = threading.Thread(target=self._run, name="redis-monitor", daemon=True)
        self._started = threading.Event()

    def _run(self) -> None:
        client = redis.Redis.from_url(self.url)
        try:
            with client.monitor() as monitor:
                self._started.set()
                for entry in monitor.listen():
                    if self._marker in entry["command"]:
                        return
                    self.entries.append((time.monotonic(), entry["client_address"], entry["command"]))
        except redis.exceptions.ConnectionError:
            return  # the server went away: the test's teardown

    def __enter__(self) -> CommandLog:
        self._thread.start()
        self._started.wait(10)
        time.sleep(0.2)  # MONITOR is registered once the server answered it
        return self

    def __exit__(self, *exc: object) -> None:
        redis.Redis.from_url(self.url).echo(self._marker)
        self._thread.join(10)

    def save(self, path: Path) -> None:
        path.write_text("".join(f"{at:.3f} {client} {command[:400]}\n" for at, client, command in self.entries))

    def by(self, address: str, since: float = 0.0, until: float = float("inf")) -> list[str]:
        return [command for at, client, command in self.entries if client == address and since <= at < until]


def consumer_of(hostname: str, queue: str = USERS_QUEUE) -> str | None:
    """The lease (consumer id) of the consumer on ``hostname``, from the broker's consumer set."""
    members = users_queue.storage.conn.smembers(f"huey.consumers.{queue}")
    ours = sorted(m.decode() for m in members if m.decode().startswith(f"{hostname}:"))
    return ours[-1] if ours else None


def held_by(consumer_id: str) -> list[str]:
    """The job ids in a consumer's in-flight list."""
    return [users_queue.deserialize_task(data).id for data in users_queue.storage.inflight(consumer_id)]


def states() -> dict[str, int]:
    flush_all()
    return {state: n for state, n in counts()[USERS_QUEUE].items() if n}


def make_users(count: int) -> list[int]:
    User.insert_many([{"email": f"p{n}@example.org", "name": f"P {n}"} for n in range(count)]).execute()
    return [u.id for u in User.select(User.id).order_by(User.id)]


def enqueue(users: list[int], jobs: int) -> list[str]:
    return [schedule_user_processing(users[n % len(users)])["job_id"] for n in range(jobs)]


def all_complete(ids: list[str]) -> bool:
    flush_all()
    return JobRecord.select().where(JobRecord.job_id.in_(ids), JobRecord.state == "complete").count() == len(ids)


# --------------------------------------------------------------------------- long partition


def test_a_host_cut_off_longer_than_the_heartbeat_timeout_is_taken_over_and_rejoins_by_itself(lan: Lan) -> None:
    a, b = lan.net["a"], lan.net["b"]
    users = make_users(50)
    jobs = enqueue(users, 1500)
    with CommandLog(lan.redis.url(lan.net.server_address)) as monitor:
        lan.worker(a)
        b_pid = lan.worker(b)
        wait_until(lambda: states().get("complete", 0) >= 200, 120, lambda: f"200 jobs done; states {states()}")
        b_lease = wait_until(lambda: consumer_of(b.hostname), 10, "host b's lease")
        wait_until(lambda: held_by(b_lease), 10, "host b to hold jobs")

        b.cut()
        cut_at = time.monotonic()
        time.sleep(0.5)  # what b sent just before the cut has landed; nothing after it can
        held_at_cut = set(held_by(b_lease))
        wait_until(lambda: "of dead consumer " + b_lease in lan.logs(a), TAKEOVER_WITHIN, "host a to take over")
        taken_over_after = time.monotonic() - cut_at
        during = enqueue(users, 300)  # accepted while b is away: a runs them
        time.sleep(max(0.0, 3 * HEARTBEAT + 1 - (time.monotonic() - cut_at)))  # cut for 10 s in all
        b.heal()
        healed_at, healed_utc = time.monotonic(), datetime.now(UTC).replace(tzinfo=None)
        after = enqueue(users, 600)
        every = jobs + during + after
        wait_until(lambda: all_complete(every), 180, lambda: f"every job to complete; states {states()}")
        wait_until(lambda: _ran_after(f"{b.hostname}:{b_pid}", healed_utc), 60, "host b to run jobs again")
        # From here on a stopping consumer hands what it holds to the other one, by design.
        stopping_at = time.monotonic()
        for host in (a, b):
            host.stop()

    runs_a, runs_b = executions(lan.logs(a), PROCESS_USER_DATA), executions(lan.logs(b), PROCESS_USER_DATA)
    both_sides = set(runs_a) & set(runs_b)
    twice = {job for job in set(runs_a) | set(runs_b) if runs_a.get(job, 0) + runs_b.get(job, 0) > 1}
    recovered_lines = re.findall(rf"job (\S+) \(\S+\) recovered from {re.escape(b_lease)}", lan.logs(a))
    recovered = set(recovered_lines)
    reasons = _takeover_attempts(twice | recovered)
    b_after_cut = monitor.by(b.address, since=cut_at, until=stopping_at)
    monitor.save(lan.folder / "redis-commands.txt")  # for whoever reads a failure
    foreign = sorted(
        {key for command in b_after_cut for key in re.findall(r"huey\.inflight\.[\w-]+\.(\S+)", command)} - {b_lease}
    )
    print(
        f"\nlong partition: {len(held_at_cut)} job(s) in host b's lease at the cut, taken over after "
        f"{taken_over_after:.1f} s; {len(both_sides)} ran on both sides, each recorded; b back by itself "
        f"({_outage(lan.logs(b))}, {lan.logs(b).count('orphaned in-flight job')} of its own orphaned job(s) put back); "
        f"{len(every)} jobs, all complete"
    )

    assert states() == {"complete": len(every)}
    assert recovered and len(recovered_lines) == len(recovered)  # a took over b's jobs, each once
    assert both_sides and both_sides <= twice <= recovered  # only taken-over jobs ran twice, and some did
    for job in twice:  # never silent: a second attempt, and why
        record = JobRecord.get_by_id(job)
        assert record.attempts >= 2 and record.recoveries == 1, (job, record.attempts, record.recoveries)
        assert f"interrupted: the lease of consumer {b_lease} expired" in reasons[job], reasons[job]
        # Every run after the first has its reason on the record: the takeover, or b's attempt failing (its
        # database was cut off too) and being retried; nothing runs more often than that.
        assert runs_a.get(job, 0) + runs_b.get(job, 0) <= 1 + len(reasons[job]), (job, runs_a, runs_b, reasons[job])
    assert foreign == []  # b acknowledged, requeued or moved no message of another consumer
    assert any("BLMOVE" in command for command in monitor.by(b.address, healed_at, stopping_at))  # b works again
    assert "broker available again" in lan.logs(b)


def _ran_after(consumer: str, moment: datetime) -> bool:
    flush_all()
    return JobRecord.select().where(JobRecord.consumer == consumer, JobRecord.started_at > moment).exists()


def _takeover_attempts(job_ids: set[str]) -> dict[str, list[str]]:
    """The reasons on the attempt rows of each job (a takeover's up to "expired", a failure's error)."""
    found: dict[str, list[str]] = {job: [] for job in job_ids}
    for row in JobAttempt.select().where(JobAttempt.job_id.in_(list(job_ids))).order_by(JobAttempt.id):
        found[row.job_id].append(row.error.split(" (", 1)[0])
    return found


def _outage(log: str) -> str:
    match = re.search(r"broker available again after ([\d.]+) s", log)
    return f"after {match.group(1)} s without a broker" if match else "no outage logged"


# --------------------------------------------------------------------------- short partition


def test_a_partition_shorter_than_the_heartbeat_timeout_runs_nothing_twice(lan: Lan) -> None:
    a, b = lan.net["a"], lan.net["b"]
    users = make_users(50)
    jobs = enqueue(users, 1000)
    slow_heartbeat = {"MEINGYM_HEARTBEAT_TIMEOUT": "10"}
    lan.worker(a, **slow_heartbeat)
    lan.worker(b, **slow_heartbeat)
    wait_until(lambda: states().get("complete", 0) >= 200, 120, lambda: f"200 jobs done; states {states()}")
    b_lease = wait_until(lambda: consumer_of(b.hostname), 10, "host b's lease")
    wait_until(lambda: held_by(b_lease), 10, "host b to hold jobs")

    b.cut()
    time.sleep(0.5)  # what b sent just before the cut has landed
    held_at_cut = set(held_by(b_lease))
    time.sleep(1.5)  # well under the 10 s timeout, with room for TCP's retransmission backoff after it
    b.heal()
    wait_until(lambda: all_complete(jobs), 180, lambda: f"every job to complete; states {states()}")
    for host in (a, b):
        host.stop()

    runs_a, runs_b = executions(lan.logs(a), PROCESS_USER_DATA), executions(lan.logs(b), PROCESS_USER_DATA)
    print(f"\nshort partition: {len(held_at_cut)} job(s) held by host b at the cut; none ran twice")
    assert states() == {"complete": len(jobs)}
    assert "recovered" not in lan.logs(a) + lan.logs(b)  # no takeover
    assert set(runs_a) | set(runs_b) == set(jobs)
    assert not set(runs_a) & set(runs_b) and all(n == 1 for n in (runs_a | runs_b).values())
    assert held_at_cut <= set(runs_b)  # what b held at the cut, b finished


# --------------------------------------------------------------------------- slow network


def test_a_slow_lossy_host_still_completes_every_job_and_is_not_taken_for_dead(lan: Lan) -> None:
    require_netns(loss=True)
    a, c = lan.net["a"], lan.net["c"]
    server = lan.net.server_address
    users = make_users(50)
    jobs = enqueue(users, 600)
    delay = 0.1  # each way: 200 ms more per round trip
    with (
        DelayRelay(server, (server, lan.redis.port), delay) as to_redis,
        DelayRelay(server, (server, lan.pg.port), delay) as to_postgres,
    ):
        c.lose(5)
        slow = {"redis_port": to_redis.port, "pg_port": to_postgres.port, "MEINGYM_HEARTBEAT_TIMEOUT": "10"}
        c_pid = lan.worker(c, **slow)
        wait_until(lambda: _ran(f"{c.hostname}:{c_pid}") >= 5, 120, "the slow host to run jobs")
        lan.worker(a, MEINGYM_HEARTBEAT_TIMEOUT="10")
        wait_until(lambda: all_complete(jobs), 240, lambda: f"every job to complete; states {states()}")
        ran_on_c = _ran(f"{c.hostname}:{c_pid}")
        for host in (a, c):
            host.stop()

    runs = executions(lan.logs(a) + lan.logs(c), PROCESS_USER_DATA)
    print(f"\nslow host (+{2 * delay * 1000:.0f} ms per round trip, 5 % loss): ran {ran_on_c} of {len(jobs)} jobs")
    assert states() == {"complete": len(jobs)}
    assert "recovered" not in lan.logs(a)  # never mistaken for a dead consumer
    assert all(n == 1 for n in runs.values()) and set(runs) == set(jobs)


def _ran(consumer: str) -> int:
    flush_all()
    return int(JobRecord.select().where(JobRecord.consumer == consumer, JobRecord.state == "complete").count())


# --------------------------------------------------------------------------- the nightly run

#: huey checks periodic jobs every 60 s; the nightly test's consumers check every 2 s (same code otherwise).
PERIODIC_EVERY = 2
FAST_PERIODIC = (
    f"import huey.consumer; huey.consumer.Scheduler.periodic_task_seconds = {PERIODIC_EVERY}; "
    "from meingym_tasks.cli import main; main()"
)


def test_the_nightly_run_starts_once_when_the_scheduler_host_is_cut_off_at_its_minute(lan: Lan) -> None:
    """Two systems on one LAN, each due at the same minute, each with its scheduler on host a, which is cut off.

    ``sole``: a is the only scheduler; it claims the night once it is back.
    ``pair``: b's scheduler is on too; it claims the night while a is away, and a
    does not claim it again once back.
    """
    a, b = lan.net["a"], lan.net["b"]
    server = lan.net.server_address
    systems = {"sole": (0, "meingym"), "pair": (1, "meingym_pair")}
    lan.pg.create_database("meingym_pair")
    for _, (number, name) in systems.items():
        bind(lan.folder, lan.redis.url(server, number), lan.pg.url(name, server))
        migrate(database)
        seed_demo_data(users=5, actions=200, seed=1)
        assert Action.select().count() == 200

    due = _next_minute(datetime.now(UTC), at_least=timedelta(seconds=12))
    nightly = {
        "MEINGYM_TIMEZONE": "UTC",
        "MEINGYM_NIGHTLY_AT": due.strftime("%H:%M"),
        "MEINGYM_UPDATE_BATCH_SIZE": "50",
    }
    for system, (number, name) in systems.items():
        url = {"MEINGYM_BROKER_URL": f"redis://{server}:{lan.redis.port}/{number}",
               "DATABASE_URL": lan.pg.url(name, server)}  # fmt: skip
        for host, scheduler in ((a, True), (b, system == "pair")):
            env = lan.env(host, **nightly, **url, MEINGYM_SCHEDULER=str(scheduler).lower())
            env["MEINGYM_DATA_DIR"] += f"-{system}"
            host.start([sys.executable, "-c", FAST_PERIODIC, "worker", "actions"], env, lan.log(host))

    _sleep_until(due - timedelta(seconds=3))
    a.cut()
    _sleep_until(due + timedelta(seconds=3 * HEARTBEAT))
    a.heal()
    healed_utc = datetime.now(UTC).replace(tzinfo=None)
    outcome = {}
    for system, (number, name) in systems.items():
        bind(lan.folder, lan.redis.url(server, number), lan.pg.url(name, server))
        wait_until(lambda: _runs(complete=True) == 1, 120, f"{system}: the night's run to complete")
    time.sleep(4 * PERIODIC_EVERY)  # more checks by both schedulers, a's among them, all within the catch-up hour
    for system, (number, name) in systems.items():
        bind(lan.folder, lan.redis.url(server, number), lan.pg.url(name, server))
        owner = actions_queue.storage.peek_data(f"nightly:{due.date().isoformat()}")
        started = JobRecord.get(JobRecord.name == "update-all-actions").started_at
        outcome[system] = (_runs(), bytes(owner).decode().split(":")[0], started > healed_utc)
    for host in (a, b):
        host.stop()

    print(f"\nnightly run with the scheduler host cut off at {due:%H:%M}: {outcome}")
    assert outcome["sole"] == (1, a.hostname, True)  # a started the night once it was back
    assert outcome["pair"] == (1, b.hostname, False)  # b started it meanwhile; a did not again
    assert "could not claim the nightly run" in lan.logs(a)  # a tried while cut off, and said so


def _runs(complete: bool = False) -> int:
    flush_all()
    query = JobRecord.select().where(JobRecord.name == "update-all-actions")
    if complete:
        query = query.where(JobRecord.state == "complete")
    return int(query.count())


def _next_minute(now: datetime, at_least: timedelta) -> datetime:
    """The first whole minute at least ``at_least`` from ``now`` (naive UTC)."""
    start = (now + at_least).replace(second=0, microsecond=0, tzinfo=None)
    return start if start >= (now + at_least).replace(tzinfo=None) else start + timedelta(minutes=1)


def _sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC).replace(tzinfo=None)).total_seconds()))
