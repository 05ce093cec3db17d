"""Redis behind Sentinel: the primary killed under load, every process follows the failover by itself.

A primary, a replica and three sentinels, each a private ``redis-server`` on
loopback; two real consumers (``meingym-tasks worker users``), the web service
(``meingym-tasks web``) and a producer in this process, all configured with one
``redis+sentinel://`` URL. The primary is killed (SIGKILL) while jobs flow.

* With ``MEINGYM_REDIS_WAIT_REPLICAS=1`` no job whose enqueue returned a job id
  is lost: each was on the replica before the producer heard "accepted".
* Without it, replication is asynchronous and the last jobs the primary took
  may never reach the replica: the test counts them and reports the number.

Either way work resumes on the promoted replica within the sentinels' failover
time (plus the consumers' reconnect backoff), with the same consumer, web and
producer processes: none is restarted. The numbers are printed (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import peewee
import pytest
import redis

from meingym_tasks.domain.models import User
from meingym_tasks.exceptions import BrokerUnavailable
from meingym_tasks.jobs import schedule_user_processing
from meingym_tasks.names import PROCESS_USER_DATA
from meingym_tasks.queue import queues
from meingym_tasks.queue.queues import users_queue
from meingym_tasks.registry.models import COMPLETE, JobAttempt, JobRecord
from meingym_tasks.registry.recorder import flush_all
from meingym_tasks.settings import Settings
from tests.helpers import executions, free_port, wait_until
from tests.netns import DelayRelay

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

MEINGYM_TASKS = Path(sys.executable).parent / "meingym-tasks"
SERVICE = "mymaster"
#: Sentinel's ``down-after-milliseconds``: how long the primary must be silent before a failover starts.
DOWN_AFTER_MS = 1000
#: The consumers' reconnect backoff is at most 5 s (queue/health.py); the slack on top of the failover.
RECONNECT_SLACK = 7.0
TOKEN = "sentinel-test-admin-token-0123456789"
#: One way, primary to replica: the replica is a network away, and so behind by this much.
REPLICATION_DELAY = 0.01
#: Enqueues per round of the cost measurement.
ENQUEUES = 1000


class RedisHA:
    """A primary, a replica and three sentinels on loopback: private redis-server processes."""

    link: DelayRelay | None = None

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.data_ports = [free_port(), free_port()]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def _spawn(self, port: int, argv: list[str]) -> None:
        with open(self.folder / f"redis-{port}.log", "ab") as log:
            self.procs[port] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def start_data(self, port: int, replica_of: int | None = None) -> None:
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.folder),
                "--dbfilename", f"dump-{port}.rdb", "--save", "", "--appendonly", "no"]  # fmt: skip
        if replica_of is not None:
            argv += ["--replicaof", "127.0.0.1", str(replica_of)]
        self._spawn(port, argv)
        wait_until(lambda: _pings(port), 10, f"redis-server on {port}")

    def start(self) -> RedisHA:
        primary, replica = self.data_ports
        self.start_data(primary)
        # The replica is a network away: its replication stream lags REPLICATION_DELAY behind the primary.
        self.link = DelayRelay("127.0.0.1", ("127.0.0.1", primary), REPLICATION_DELAY).start()
        self.start_data(replica, replica_of=self.link.port)
        for port in self.sentinel_ports:
            config = self.folder / f"sentinel-{port}.conf"  # sentinels rewrite their file: one each
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.folder}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            self._spawn(port, ["redis-server", str(config), "--sentinel"])
        # Ready when every sentinel knows the replica and the two other sentinels (hello messages, ~2 s).
        wait_until(self._formed, 30, "the sentinels to find the replica and each other")
        return self

    def _formed(self) -> bool:
        try:
            for port in self.sentinel_ports:
                state = redis.Redis(port=port, socket_timeout=1).sentinel_master(SERVICE)
                if state["num-slaves"] < 1 or state["num-other-sentinels"] < 2:
                    return False
            return bool(redis.Redis(port=self.data_ports[1]).info("replication")["master_link_status"] == "up")
        except (redis.exceptions.ConnectionError, KeyError):
            return False

    def primary(self) -> int:
        """The primary's port, as the first sentinel that answers names it."""
        for port in self.sentinel_ports:
            try:
                _, primary = redis.Redis(port=port, socket_timeout=1).sentinel_get_master_addr_by_name(SERVICE)
                return int(primary)
            except redis.exceptions.ConnectionError:
                continue
        raise AssertionError("no sentinel answers")

    def kill(self, port: int) -> None:
        """The server's machine goes away: the process dies and what was on the wire to the replica is lost."""
        self.procs[port].send_signal(signal.SIGKILL)
        if self.link is not None and self.link.target[1] == port:
            self.link.close()
        self.procs[port].wait()

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _pings(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.2).ping())
    except redis.exceptions.ConnectionError:
        return False


@pytest.fixture
def redis_ha(tmp_path: Path) -> Iterator[RedisHA]:
    ha = RedisHA(tmp_path / "redis-ha")
    try:
        yield ha.start()
    finally:
        ha.close()


class Producer:
    """Enqueues process-user-data jobs from this process, up to ``rate`` a second in ``threads`` threads.

    Several threads, so that an enqueue that waits for a replica (one
    replication round trip) does not set the pace alone.
    """

    def __init__(self, users: list[int], rate: float, threads: int = 4) -> None:
        self.users = users
        self.pause = threads / rate
        self.accepted: list[tuple[float, str]] = []  # (monotonic time, job id) of every job id returned
        self.refused: list[tuple[float, str]] = []  # (monotonic time, error) of every BrokerUnavailable
        self.durations: list[float] = []  # seconds each accepted enqueue took
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)]

    def _run(self, offset: int) -> None:
        n = offset
        while not self._stop.is_set():
            n += len(self._threads)
            started = time.monotonic()
            try:
                job_id = schedule_user_processing(self.users[n % len(self.users)])["job_id"]
            except BrokerUnavailable as exc:
                self.refused.append((time.monotonic(), str(exc)))
            else:
                self.accepted.append((time.monotonic(), job_id))
                self.durations.append(time.monotonic() - started)
            time.sleep(max(0.0, self.pause - (time.monotonic() - started)))

    def __enter__(self) -> Producer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def accepted_since(self, moment: float) -> int:
        return sum(1 for t, _ in self.accepted if t > moment)


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def post_job(port: int, user_id: int) -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{port}/api/jobs",
        json={"action": "process-user-data", "user_id": user_id},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )


def completed_ids(ids: list[str]) -> set[str]:
    flush_all()
    done: set[str] = set()
    for start_at in range(0, len(ids), 1000):
        chunk = ids[start_at : start_at + 1000]
        query = JobRecord.select(JobRecord.job_id).where(JobRecord.job_id.in_(chunk), JobRecord.state == COMPLETE)
        done.update(row.job_id for row in query)
    return done


def broker_idle(ha: RedisHA) -> bool:
    """Nothing queued, scheduled or in flight on the current primary."""
    client = redis.Redis(port=ha.primary())
    queue = users_queue.storage
    inflight = [key for key in client.scan_iter("huey.inflight.users-processing.*") if client.llen(key)]
    return client.llen(queue.queue_key) == 0 and client.zcard(queue.schedule_key) == 0 and not inflight


@pytest.mark.parametrize("wait_replicas", [1, 0], ids=["wait-for-replica", "no-wait"])
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_consumers_producers_and_the_web_follow_a_failover_of_the_primary_under_load(
    wait_replicas: int,
    make_env: Callable[..., dict[str, str]],
    database_url: str,
    db: peewee.Database,
    redis_ha: RedisHA,
    tmp_path: Path,
) -> None:
    env = make_env(
        MEINGYM_BROKER_URL=redis_ha.url,
        DATABASE_URL=database_url,
        MEINGYM_HEARTBEAT_TIMEOUT="3",
        MEINGYM_REDIS_WAIT_REPLICAS=str(wait_replicas),
        MEINGYM_REDIS_WAIT_TIMEOUT_MS="500",
        MEINGYM_ADMIN_TOKEN=TOKEN,
    )
    queues.configure(Settings.from_env(env))
    User.insert_many([{"email": f"ha{n}@example.org", "name": f"HA {n}"} for n in range(20)]).execute()
    users = [u.id for u in User.select(User.id)]
    logs = tmp_path / "logs"
    logs.mkdir()
    web_port = free_port()
    consumers = [start([str(MEINGYM_TASKS), "worker", "users"], env, logs / f"consumer-{n}.log") for n in range(2)]
    web = start([str(MEINGYM_TASKS), "web", "--port", str(web_port)], env, logs / "web.log")
    procs = [*consumers, web]
    try:
        wait_until(lambda: _answers(web_port), 30, "the web service")
        assert post_job(web_port, users[0]).status_code == 202
        first_primary = redis_ha.primary()
        with Producer(users, rate=300) as producer:
            wait_until(lambda: len(completed_ids([j for _, j in producer.accepted])) >= 200, 60, "200 jobs done")

            enqueue_ms = statistics.median(producer.durations) * 1000

            killed_at, killed_utc = time.monotonic(), datetime.now(UTC).replace(tzinfo=None)
            redis_ha.kill(first_primary)
            wait_until(lambda: redis_ha.primary() != first_primary, 30, "the sentinels to promote the replica")
            switched = time.monotonic() - killed_at
            # The old primary comes back (as systemd would restart it); the sentinels make it a replica.
            redis_ha.start_data(first_primary)
            wait_until(lambda: producer.accepted_since(killed_at) >= 1, 60, "an enqueue accepted after the failover")
            accepting = min(t for t, _ in producer.accepted if t > killed_at) - killed_at
            wait_until(lambda: producer.accepted_since(killed_at + accepting) >= 200, 60, "200 jobs after it")

        web_job = _post_until_accepted(web_port, users[1], 30)
        ready = httpx.get(f"http://127.0.0.1:{web_port}/readyz", timeout=10)
        check = subprocess.run(
            [str(MEINGYM_TASKS), "config", "check", "--json"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

        accepted = [job_id for _, job_id in producer.accepted] + [web_job]
        if wait_replicas:
            wait_until(lambda: len(completed_ids(accepted)) == len(accepted), 120, "every accepted job to complete")
        else:  # some may be gone: wait until the broker has nothing left to run, twice in a row
            wait_until(lambda: broker_idle(redis_ha), 120, "the broker to run dry")
            time.sleep(2)
            wait_until(lambda: broker_idle(redis_ha), 30, "the broker to stay dry")
        done = completed_ids(accepted)
        alive_throughout = [proc.poll() is None for proc in procs]
    finally:
        stop(procs)

    lost = sorted(set(accepted) - done)
    consumer_logs = [path.read_text(errors="replace") for path in sorted(logs.glob("consumer-*.log"))]
    runs = executions("".join(consumer_logs), PROCESS_USER_DATA)
    twice = sorted(job_id for job_id, count in runs.items() if count > 1)
    # Each consumer says how long it found no broker: from the kill until it reached the promoted replica.
    outages = [float(m) for log in consumer_logs for m in re.findall(r"broker available again after ([\d.]+) s", log)]
    resumed = max(outages, default=float("inf"))
    promoted_utc = killed_utc + timedelta(seconds=switched)
    after = {
        row.consumer.split(":")[1]
        for row in JobRecord.select(JobRecord.consumer).where(JobRecord.started_at > promoted_utc).distinct()
        if row.consumer
    }
    for job_id in twice:
        record = JobRecord.get_by_id(job_id)
        print(job_id, record.state, record.attempts, record.recoveries,
              [a.error[:60] for a in JobAttempt.select().where(JobAttempt.job_id == job_id)])  # fmt: skip
    print(
        f"\nfailover ({'WAIT 1' if wait_replicas else 'no WAIT'}): sentinels promoted the replica "
        f"{switched:.1f} s after the kill; consumers back after {resumed:.1f} s; first enqueue accepted after "
        f"{accepting:.1f} s, {len(producer.refused)} refused meanwhile; "
        f"{len(lost)} of {len(accepted)} accepted job(s) lost; {len(twice)} run twice; "
        f"an enqueue took {enqueue_ms:.1f} ms (median) with the replica {REPLICATION_DELAY * 1000:g} ms away"
    )

    assert alive_throughout == [True, True, True]  # no consumer, nor the web service, was restarted
    assert {str(proc.pid) for proc in consumers} <= after  # both took jobs from the promoted replica
    assert switched <= DOWN_AFTER_MS / 1000 + 10
    assert len(outages) == 2 and resumed <= switched + RECONNECT_SLACK  # one outage each, over by then
    assert ready.status_code == 200, ready.text
    assert check.returncode == 0, check.stdout + check.stderr
    broker = json.loads(check.stdout)["checks"]["broker"]
    assert broker["sentinel"]["primary"] == f"127.0.0.1:{redis_ha.primary()}" != f"127.0.0.1:{first_primary}"
    assert broker["sentinel"]["sentinels_answering"] == 3
    if wait_replicas:
        assert lost == []
    assert len(lost) <= len(accepted) // 10  # a failover loses the last moment of jobs at most, not the queue


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _started_after(moment: datetime) -> datetime | None:
    flush_all()
    first = JobRecord.select(peewee.fn.MIN(JobRecord.started_at)).where(JobRecord.started_at > moment).scalar()
    return first  # type: ignore[no-any-return]


def _post_until_accepted(port: int, user_id: int, timeout: float) -> str:
    """POST a job until the web service accepts it (503 while it reconnects); its job id."""
    answers: list[Any] = []

    def accepted() -> str | None:
        response = post_job(port, user_id)
        answers.append(response.status_code)
        return str(response.json()["job_id"]) if response.status_code == 202 else None

    return str(wait_until(accepted, timeout, lambda: f"the web service to accept a job; answers {answers[-5:]}"))


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_waiting_for_a_replica_costs_a_round_trip_and_refuses_the_job_when_none_confirms(
    make_env: Callable[..., dict[str, str]], database_url: str, db: peewee.Database, tmp_path: Path
) -> None:
    """What ``MEINGYM_REDIS_WAIT_REPLICAS=1`` costs a producer per enqueue, and what it does without a replica."""
    folder = tmp_path / "redis"
    folder.mkdir()
    primary, replica = free_port(), free_port()
    ha = RedisHA(folder)
    ha.start_data(primary)
    ha.start_data(replica, replica_of=primary)
    try:
        wait_until(lambda: redis.Redis(port=replica).info("replication")["master_link_status"] == "up", 30, "sync")
        User.insert_many([{"email": f"w{n}@example.org", "name": f"W {n}"} for n in range(10)]).execute()
        users = [u.id for u in User.select(User.id)]
        cost: dict[int, float] = {}
        for wait in (0, 1, 0, 1):  # twice each, interleaved: the second round is the one kept (warm)
            queues.configure(Settings.from_env(make_env(
                MEINGYM_BROKER_URL=f"redis://127.0.0.1:{primary}/0", DATABASE_URL=database_url,
                MEINGYM_REDIS_WAIT_REPLICAS=str(wait), MEINGYM_REDIS_WAIT_TIMEOUT_MS="500",
            )))  # fmt: skip
            durations = []
            for n in range(ENQUEUES):
                started = time.perf_counter()
                schedule_user_processing(users[n % len(users)])
                durations.append(time.perf_counter() - started)
            cost[wait] = statistics.median(durations)
        replicated = redis.Redis(port=replica).llen(users_queue.storage.queue_key)

        ha.kill(replica)
        started = time.perf_counter()
        with pytest.raises(BrokerUnavailable, match=r"0 of 1 Redis replica\(s\) confirmed the job within 500 ms"):
            schedule_user_processing(users[0])
        refused_after = time.perf_counter() - started
    finally:
        ha.close()

    print(
        f"\nan enqueue (schedule_user_processing, replica on loopback): {cost[0] * 1e6:.0f} us without WAIT, "
        f"{cost[1] * 1e6:.0f} us with WAIT 1 (+{(cost[1] - cost[0]) * 1e6:.0f} us); without a replica, "
        f"refused after {refused_after * 1000:.0f} ms"
    )
    assert replicated == 4 * ENQUEUES  # every job of every round is on the replica
    assert 0.5 <= refused_after < 2.0  # WAIT's timeout, then the refusal: no hang
    assert cost[1] < cost[0] + 0.005  # on loopback one replication round trip is well under 5 ms
