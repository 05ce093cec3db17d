"""The deploy runbook executed under a real systemd: docs/deploy.md, as written, in a container.

A Debian 12 root file system boots systemd as PID 1 of a container (``tests/nspawn.py``).
The test follows the blocks of docs/deploy.md marked ``runbook-test`` line by line in it
(``tests/runbook.py``): the service user, the checkout and its venv, the configuration file,
the units, ``daemon-reload``, ``enable`` and ``start``. The container shares the host's
network, so the services use the host's Redis (a test database number), a throwaway
PostgreSQL role and database, and an SMTP server run by the test; the test itself reaches
the web service's API on loopback. Then it works the installed units, in this order (the
numbers are those of issue 13's list):

1. ``config check`` passes, both consumers and the web service run, ``/readyz`` answers 200;
2. ``trigger update-all-actions --wait`` on seeded data, and a welcome email over SMTP;
3. ``systemctl stop`` of the actions consumer in the middle of a run, then ``start``;
   ``systemctl reload`` restarts huey in its process;
5. (begins) the nightly run a minute ahead, in ``actions.env``, and a restart of that consumer;
4. ``systemctl kill -s SIGKILL`` of the users consumer while it sends emails;
   a bad setting: the consumer stays down until ``reset-failed`` and a start;
5. the nightly run has started once, from the unit's scheduler;
7. the rolling upgrade to a second release, as written, with jobs flowing throughout;
6. every job's outcome is one journal line with its id;
8. ``systemd-analyze security`` inside the container agrees with the offline score;
5. (ends) the nightly run has still started only once after the later restarts.

Memory and CPU limits are not tested: the host's cgroups (v1) do not enforce them.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
import json
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from tests import nspawn
from tests.helpers import CLAIM_KEY, POSTGRES_ADMIN_URL, REQUIRE_SERVICES, free_port, require
from tests.runbook import Runbook, Shell, follow

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "docs" / "deploy.md"

# Every wait inside is bounded; this bounds each test with its share of the cold start
# (debootstrap, about a minute and a half) in the first one.
pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.systemd, pytest.mark.timeout(600)]

REPOSITORY = "/srv/meingym-tasks.git"  # the releases, bind-mounted read-only: `git clone` reads it
CONFIG_FILE = "/etc/meingym-tasks/meingym-tasks.env"
STATE_DIR = "/var/lib/meingym-tasks"
ACTIONS, USERS, WEB, MIGRATE = (
    "meingym-tasks-consumer@actions.service",
    "meingym-tasks-consumer@users.service",
    "meingym-tasks-web.service",
    "meingym-tasks-migrate.service",
)
SERVICES = (ACTIONS, USERS, WEB, MIGRATE)
MAX_EXPOSURE = 2.0

# The data: enough batches that a stop lands in the middle of a run.
SEED_USERS, SEED_ACTIONS, BATCH_SIZE = 20, 20_000, 20
BATCHES = SEED_ACTIONS // BATCH_SIZE

JOB_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def wait_for(condition: Callable[[], Any], timeout: float, what: str | Callable[[], str], poll: float = 0.2) -> Any:
    """Poll until ``condition()`` is true (and return it); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what() if callable(what) else what}")
        time.sleep(poll)


def skip_or_fail(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(reason + " (MEINGYM_TEST_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


# --------------------------------------------------------------------------- what the machine must have


@pytest.fixture(scope="module", autouse=True)
def a_machine_that_can_boot_a_container() -> None:
    """Skip (fail under MEINGYM_TEST_REQUIRE_SERVICES=1) before any work, saying what is missing."""
    problem = nspawn.problem()
    if problem:
        skip_or_fail(f"cannot boot a container here: {problem}")
    require("redis")
    require("postgres")


# --------------------------------------------------------------------------- services on the host


@pytest.fixture(scope="module")
def service_database_url() -> Iterator[str]:
    """A PostgreSQL role with a password and a database it owns, as the runbook's createuser/createdb make."""
    require("postgres")
    import psycopg

    suffix = uuid.uuid4().hex[:10]
    role, name, password = f"meingym_boot_{suffix}", f"meingym_boot_{suffix}", uuid.uuid4().hex
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{role}"')
    server = POSTGRES_ADMIN_URL.split("@", 1)[1].rsplit("/", 1)[0]
    try:
        yield f"postgresql://{role}:{password}@{server}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture(scope="module")
def service_broker_url(redis_test_url: str) -> Iterator[str]:
    """This session's Redis database number, empty (its claim kept, as conftest's broker fixture does)."""
    import redis

    client = redis.Redis.from_url(redis_test_url)
    claim = client.get(CLAIM_KEY)

    def flush() -> None:
        client.flushdb()
        client.set(CLAIM_KEY, claim or b"", ex=6 * 3600)

    flush()
    try:
        yield redis_test_url
    finally:
        flush()
        client.close()


class Inbox:
    """An SMTP server's mailbox that can hold each message ``delay`` seconds before answering 250."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.delay = 0.0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        if self.delay:
            await asyncio.sleep(self.delay)
        return "250 OK"

    def recipients(self) -> list[str]:
        return [str(message["To"]) for message in self.messages]


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


# --------------------------------------------------------------------------- the releases


def git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.name=meingym-tasks tests", "-c", "user.email=tests@meingym.example"]
    command = ["git", "-C", str(repo), *identity, "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]
    return subprocess.run([*command, *args], check=True, capture_output=True, text=True, timeout=60).stdout


def working_tree_files() -> list[str]:
    """This checkout as a clone of it would be, plus what is not committed yet (what the suite tests)."""
    listed = git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def release_v0_2_0(repo: Path) -> None:
    """The next release: a version bump and a migration that adds a table (old code keeps working)."""
    init = repo / "meingym_tasks" / "__init__.py"
    init.write_text(re.sub(r'__version__ = "[^"]*"', '__version__ = "0.2.0"', init.read_text()))
    from meingym_tasks.db.migrate import MIGRATIONS_DIR

    migration = repo / MIGRATIONS_DIR.relative_to(ROOT) / "9000_release_probe.py"
    migration.write_text(
        '"""v0.2.0 of the boot test: a table the next release adds."""\n\n\n'
        "def up(migrator, db):\n"
        '    db.execute_sql("CREATE TABLE release_probe (id INTEGER PRIMARY KEY)")\n\n\n'
        "def down(migrator, db):\n"
        '    db.execute_sql("DROP TABLE IF EXISTS release_probe")\n'
    )
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "v0.2.0")
    git(repo, "tag", "v0.2.0")


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository holding this working tree as v0.1.0 (v0.2.0 is added by the upgrade step)."""
    repo = tmp_path_factory.mktemp("releases") / "meingym-tasks.git"
    for name in working_tree_files():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "v0.1.0")
    git(repo, "tag", "v0.1.0")
    return repo


# --------------------------------------------------------------------------- the container


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory, releases: Path) -> Iterator[nspawn.Container]:
    """A booted container (a real systemd as PID 1), stopped and removed after the module."""
    artifacts = tmp_path_factory.mktemp("systemd-boot")
    started = time.monotonic()
    try:
        tarball = nspawn.rootfs_tarball(artifacts / "debootstrap.log")
    except (nspawn.ContainerError, subprocess.SubprocessError) as exc:
        skip_or_fail(f"cannot build the container's root file system: {exc}")
    built = time.monotonic()
    container = nspawn.Container(nspawn.unique_name(), artifacts / "rootfs", artifacts / "nspawn.log")
    try:
        container.unpack(tarball)
        nspawn.configure_pip(container.root)
        try:
            container.boot(read_only={releases: REPOSITORY})
        except nspawn.ContainerError as exc:
            skip_or_fail(f"this machine cannot boot a container: {exc}")
        print(
            f"\ncontainer {container.name}: root file system {built - started:.1f}s, "
            f"unpacked and booted {time.monotonic() - built:.1f}s; journal and transcript go to {artifacts}"
        )
        yield container
    finally:
        if container.leader:
            with contextlib.suppress(Exception):
                (artifacts / "journal.txt").write_text(container.journal("-o", "short-precise"))
        container.stop()


# --------------------------------------------------------------------------- the deployment


@dataclasses.dataclass
class Deployment:
    container: nspawn.Container
    shell: Shell
    runbook: Runbook
    releases: Path
    settings: dict[str, str]
    inbox: Inbox
    api: httpx.Client
    web: str
    #: Jobs each step enqueued, by step, for the journal step.
    jobs: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    nightly_due: datetime | None = None

    def cli(self, arguments: str, expect: int | None = 0, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``meingym-tasks ARGUMENTS`` through the runbook's alias (as the service user, with the config file)."""
        return self.shell.run(f"meingym-tasks {arguments}", expect=expect, timeout=timeout)

    def job(self, job_id: str) -> dict[str, Any]:
        answer = self.api.get(f"/api/jobs/{job_id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def enqueue(self, action: str, **body: Any) -> str:
        answer = self.api.post("/api/jobs", json={"action": action, **body})
        assert answer.status_code == 202, answer.text
        return str(answer.json()["job_id"])

    def wait_done(self, job_ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
        """Every job's record once none is left pending (complete, failed, ...)."""
        finished: dict[str, dict[str, Any]] = {}

        def all_done() -> bool:
            for job_id in job_ids:
                if job_id not in finished:
                    job = self.job(job_id)
                    if job["state"] in ("complete", "failed", "revoked", "expired"):
                        finished[job_id] = job
            return len(finished) == len(job_ids)

        wait_for(all_done, timeout, lambda: f"jobs to end: {len(job_ids) - len(finished)} still pending", poll=0.5)
        return finished

    def main_pid(self, unit: str) -> int:
        return int(self.container.show(unit, "MainPID")["MainPID"])

    def cmdline(self, unit: str) -> list[str]:
        """The unit's main process's command line, once systemd has executed it (not its own fork)."""

        def executed() -> list[str] | None:
            pid = self.main_pid(unit)
            found = self.container.run(f"cat /proc/{pid}/cmdline", check=False).stdout.split("\0")
            return found if pid and "/opt/meingym-tasks/" in " ".join(found) else None

        return list(wait_for(executed, 30, f"{unit} to run its ExecStart="))

    def environ(self, unit: str) -> dict[str, str]:
        """The environment the unit's program runs with."""
        self.cmdline(unit)
        entries = self.container.read(f"/proc/{self.main_pid(unit)}/environ").split("\0")
        return dict(entry.split("=", 1) for entry in entries if "=" in entry)


def cli_outcome(output: str) -> dict[str, Any]:
    """The ``job_id:``, ``status:`` and ``result:`` lines ``trigger --wait`` prints."""
    job_id = re.search(r"^job_id: (\S+)$", output, re.M)
    status = re.search(r"^status: (\w+)$", output, re.M)
    result = re.search(r"^result: (.*)$", output, re.M)
    assert job_id and status, output
    return {
        "job_id": job_id.group(1),
        "status": status.group(1),
        "result": ast.literal_eval(result.group(1)) if result else None,
    }


def runbook_settings(runbook: Runbook, printed_secret: str, broker: str, database: str) -> dict[str, str]:
    """The runbook's "At least" settings with this test's servers, then what only the test needs."""
    settings = runbook.settings("settings")
    expected_placeholders = {
        "MEINGYM_BROKER_URL": "REDIS-PASSWORD",
        "DATABASE_URL": "DB-PASSWORD",
        "MEINGYM_SECRET_KEY": "the line printed above",
    }
    for key, placeholder in expected_placeholders.items():
        assert placeholder in settings.get(key, ""), f"the runbook's settings changed: {key}={settings.get(key)}"
    settings |= {"MEINGYM_BROKER_URL": broker, "DATABASE_URL": database, "MEINGYM_SECRET_KEY": printed_secret}
    return settings


@pytest.fixture(scope="module")
def deployment(
    service_database_url: str,
    service_broker_url: str,
    smtp: tuple[Inbox, int],
    releases: Path,
    machine: nspawn.Container,
) -> Iterator[Deployment]:
    """The server installed by following the runbook's install, configure, check and units blocks."""
    runbook = Runbook(DEPLOY)
    shell = Shell(machine)
    inbox, smtp_port = smtp
    web_port = free_port()
    settings: dict[str, str] = {}

    def install_packages_but_the_servers(line: str) -> None:
        # Redis and PostgreSQL are the host's, reached over the shared network. The rest is in
        # the root file system (nspawn.PACKAGES), so apt-get has nothing to do; a package added
        # to the line and not there makes apt-get ask, and fail without a terminal.
        shell.run(line.replace(" redis-server", "").replace(" postgresql", ""))

    def database_made_by_the_test(line: str) -> None:
        # The container has no PostgreSQL; the service_database_url fixture made the role (with a
        # password) and the database it owns on the host's server.
        pass

    def edit_configuration(line: str) -> None:
        # The editor, scripted: the runbook's "At least" settings with this test's servers and
        # the secret the line before printed, then what only this test needs.
        secret = shell.last_output.strip()
        assert re.fullmatch(r"[A-Za-z0-9_-]{40,}", secret), f"the line before the editor printed {secret!r}"
        settings.update(runbook_settings(runbook, secret, service_broker_url, service_database_url))
        nightly = (datetime.now(UTC) + timedelta(hours=6)).strftime("%H:%M")
        extra = {
            "MEINGYM_WEB_PORT": str(web_port),  # the container shares the host's network: 8000 may be taken
            "SMTP_HOST": "127.0.0.1",  # the test's SMTP server
            "SMTP_PORT": str(smtp_port),
            "MEINGYM_TIMEZONE": "UTC",  # the nightly run: far off until the nightly step moves it
            "MEINGYM_NIGHTLY_AT": nightly,
            "MEINGYM_UPDATE_BATCH_SIZE": str(BATCH_SIZE),  # many batches: stops land mid-run
            "MEINGYM_HEARTBEAT_TIMEOUT": "10",  # a killed consumer's jobs come back after 10 s, not 30
        }
        settings.update(extra)
        text = "".join(f"{key}={value}\n" for key, value in settings.items())
        machine.append(line.split()[-1], "\n# Set by tests/test_systemd_boot.py in place of the editor:\n" + text)

    follow(
        shell,
        runbook,
        "install",
        stand_ins={
            "apt-get install python3-venv git procps redis-server postgresql": install_packages_but_the_servers,
            "sudo -u postgres createuser --pwprompt meingym": database_made_by_the_test,
            "sudo -u postgres createdb --owner meingym meingym": database_made_by_the_test,
        },
        replace={"<your meingym-tasks repository>": REPOSITORY},
    )
    follow(shell, runbook, "configure", stand_ins={"editor /etc/meingym-tasks/meingym-tasks.env": edit_configuration})
    before_start = follow(shell, runbook, "check", expect={"meingym-tasks config check": 1})
    units = follow(shell, runbook, "units")

    checks = before_start["meingym-tasks config check"].stdout
    failed = [line.split()[1] for line in checks.splitlines() if line.strip().startswith("FAILED")]
    assert failed == ["schema"], f"before the first start only the schema should fail:\n{checks}"
    assert "FAILED" not in units["meingym-tasks config check"].stdout
    assert cli_outcome(units["meingym-tasks trigger update-all-actions --wait"].stdout)["status"] == "complete"

    web = f"http://127.0.0.1:{web_port}"
    token = wait_for(
        lambda: machine.run(f"cat {STATE_DIR}/admin.token", check=False).stdout.strip(), 60, "the web's admin token"
    )
    try:
        with httpx.Client(base_url=web, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
            yield Deployment(machine, shell, runbook, releases, settings, inbox, api, web)
    finally:
        (machine.log.parent / "transcript.txt").write_text("\n\n".join(shell.transcript) + "\n")


# --------------------------------------------------------------------------- 1. it runs


def test_config_check_passes_and_the_consumers_and_the_web_service_run(deployment: Deployment) -> None:
    d = deployment
    check = d.cli("config check")

    assert "FAILED" not in check.stdout
    for unit in (ACTIONS, USERS, WEB):
        assert d.container.systemctl("is-active", unit, check=False) == "active", d.container.journal("-u", unit)
    assert d.container.show(MIGRATE, "ActiveState", "Result") == {"ActiveState": "active", "Result": "success"}
    ready = wait_for(lambda: _get(d.web + "/readyz"), 60, "/readyz to answer 200")
    assert ready.json()["status"] == "ready"
    # systemd read the configuration file (EnvironmentFile=) as the program's own parser does.
    for unit in (ACTIONS, USERS, WEB):
        environ = d.environ(unit)
        differing = {key: environ.get(key) for key, value in d.settings.items() if environ.get(key) != value}
        assert differing == {}, f"{unit} sees other values than the configuration file"


def _get(url: str) -> httpx.Response | None:
    with contextlib.suppress(httpx.HTTPError):
        answer = httpx.get(url, timeout=5)
        if answer.status_code == 200:
            return answer
    return None


# --------------------------------------------------------------------------- 2. jobs through the units


def test_update_all_actions_and_a_welcome_email_complete_through_the_units(deployment: Deployment) -> None:
    d = deployment
    d.cli(f"db seed --users {SEED_USERS} --actions {SEED_ACTIONS} --seed 42")

    run = cli_outcome(d.cli("trigger update-all-actions --wait").stdout)
    email = cli_outcome(d.cli("trigger send-welcome-email --user-id 1 --wait").stdout)

    assert run["status"] == "complete"
    assert run["result"]["actions_scored"] == SEED_ACTIONS
    assert run["result"]["batches"] == BATCHES
    assert email["status"] == "complete"
    recipient = email["result"]["recipient"]
    assert "outbox" not in str(email["result"]["delivered_to"]), email
    wait_for(lambda: recipient in " ".join(d.inbox.recipients()), 10, f"the email to {recipient} at the SMTP server")


# --------------------------------------------------------------------------- 3. stop mid-run


def test_a_stop_in_the_middle_of_a_run_then_a_start_completes_it_with_every_batch(deployment: Deployment) -> None:
    d = deployment
    triggered = d.cli("trigger update-all-actions").stdout
    run_id = re.search(r"^job_id: (\S+)$", triggered, re.M).group(1)  # type: ignore[union-attr]
    assert JOB_ID.fullmatch(run_id), triggered
    wait_for(lambda: (d.job(run_id)["progress"]["done"] or 0) > 0, 60, "the run's first batch", poll=0.05)

    d.container.systemctl("stop", ACTIONS)
    at_stop = d.job(run_id)
    stopped = d.container.show(ACTIONS, "ActiveState", "Result", "ExecMainCode", "ExecMainStatus")
    d.container.systemctl("start", ACTIONS)
    outcome = d.wait_done([run_id], timeout=180)[run_id]

    assert stopped == {"ActiveState": "inactive", "Result": "success", "ExecMainCode": "1", "ExecMainStatus": "0"}
    assert at_stop["state"] == "running", "the stop should land mid-run, with batches still queued"
    assert at_stop["progress"]["done"] < SEED_ACTIONS
    assert outcome["state"] == "complete", outcome
    assert outcome["result"]["actions_scored"] == SEED_ACTIONS
    assert outcome["result"]["batches"] == BATCHES
    log = d.container.journal("-o", "cat", "-t", "meingym-tasks-actions")
    assert "Received SIGINT" in log and "All workers have stopped" in log
    d.jobs["stop mid-run"] = [run_id]


def test_a_reload_restarts_huey_in_its_process(deployment: Deployment) -> None:
    """The runbook's "Reloading": SIGHUP, huey finishes its jobs and re-executes itself (same PID)."""
    d = deployment
    pid = d.main_pid(USERS)

    d.container.systemctl("reload", USERS)
    wait_for(
        lambda: "Consumer will restart" in d.container.journal("-o", "cat", "-u", USERS, "--since", "-1min"),
        30,
        "huey to restart on SIGHUP",
    )
    job = d.enqueue("process-user-data", user_id=1)

    assert d.wait_done([job], timeout=60)[job]["state"] == "complete"
    assert d.main_pid(USERS) == pid
    assert d.container.systemctl("is-active", USERS, check=False) == "active"


# --------------------------------------------------------------------------- 5. the nightly run, set up


def test_the_nightly_run_is_set_a_minute_ahead_for_the_actions_consumer(deployment: Deployment) -> None:
    """Step 5 begins: MEINGYM_NIGHTLY_AT a minute ahead in actions.env, and a restart (the runbook's
    "after changing the configuration, restart"); the next test runs while it comes due."""
    d = deployment
    # huey checks periodic jobs as the consumer starts, then every 60 s: with the restart less
    # than a minute before the due minute, the first check after it is the one that fires.
    now = datetime.now(UTC)
    if now.second >= 45:
        time.sleep(61 - now.second - now.microsecond / 1e6)
    due = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    d.container.run(
        "install -m 0640 -o root -g meingym /dev/stdin /etc/meingym-tasks/actions.env",
        input=f"MEINGYM_NIGHTLY_AT={due:%H:%M}\n",
    )
    d.container.systemctl("restart", ACTIONS)
    d.nightly_due = due

    assert d.environ(ACTIONS)["MEINGYM_NIGHTLY_AT"] == f"{due:%H:%M}"
    assert nightly_fired(d) == []


NIGHTLY_FIRED = "Enqueueing periodic task meingym_tasks.tasks.nightly-update-all-actions"


def nightly_fired(d: Deployment) -> list[float]:
    """When the scheduler enqueued the nightly job (huey logs each periodic enqueue; the
    registry leaves periodic jobs out, as housekeeping)."""
    lines = d.container.journal("-o", "short-unix", "-t", "meingym-tasks-actions", "--grep", NIGHTLY_FIRED)
    return [float(line.split()[0]) for line in lines.splitlines() if NIGHTLY_FIRED in line]


def runs_since(d: Deployment, since: datetime) -> list[dict[str, Any]]:
    """update-all-actions runs enqueued at or after ``since``."""
    answer = d.api.get("/api/jobs", params={"name": "update-all-actions", "limit": 50})
    assert answer.status_code == 200, answer.text
    return [job for job in answer.json()["jobs"] if datetime.fromisoformat(job["enqueued_at"]) >= since]


# --------------------------------------------------------------------------- 4. SIGKILL


def test_a_users_consumer_killed_mid_work_is_restarted_and_every_job_completes(deployment: Deployment) -> None:
    d = deployment
    restarts_before = int(d.container.show(USERS, "NRestarts")["NRestarts"])
    pid_before = d.main_pid(USERS)
    received_before = len(d.inbox.messages)
    d.inbox.delay = 1.0  # each email holds a worker for a second: the kill lands with emails in flight
    try:
        emails = [d.enqueue("send-welcome-email", user_id=user) for user in range(2, SEED_USERS + 1)]
        stats = [d.enqueue("process-user-data", user_id=1 + n % SEED_USERS) for n in range(100)]
        wait_for(lambda: len(d.inbox.messages) >= received_before + 2, 60, "the first emails to arrive")
        d.container.run(f"systemctl kill -s SIGKILL {USERS}")
    finally:
        d.inbox.delay = 0.0

    wait_for(
        lambda: (
            int(d.container.show(USERS, "NRestarts")["NRestarts"]) > restarts_before
            and d.container.systemctl("is-active", USERS, check=False) == "active"
        ),
        60,
        "systemd to restart the users consumer",
    )
    outcomes = d.wait_done(emails + stats, timeout=180)

    assert d.main_pid(USERS) != pid_before
    assert {job["state"] for job in outcomes.values()} == {"complete"}
    # The jobs the killed consumer held were put back by its successor (the API leaves the count
    # out; the CLI's records carry it).
    listed = json.loads(d.cli("jobs --queue users --limit 500 --json").stdout)["jobs"]
    recovered = {job["job_id"] for job in listed if job.get("recoveries")}
    assert recovered and recovered <= set(emails + stats), listed
    recipients = " ".join(d.inbox.recipients())
    assert all(f"demo{user}@" in recipients for user in range(2, SEED_USERS + 1)), recipients
    log = d.container.journal("-o", "cat", "-u", USERS)
    assert "status=9/KILL" in log and "Scheduled restart job" in log
    d.jobs["sigkill"] = emails + stats


# --------------------------------------------------------------------------- a consumer that cannot start


def test_a_consumer_that_cannot_start_stays_down_until_reset_failed_and_a_start(deployment: Deployment) -> None:
    """The runbook's "Failures": Restart=on-failure, but a bad setting (here in the per-queue
    file, where `config check` does not look) leaves the consumer down, failed, once
    StartLimitBurst starts fell within StartLimitIntervalSec; `systemctl reset-failed` and a
    start bring it back.
    """
    d = deployment
    d.container.run(
        "install -m 0640 -o root -g meingym /dev/stdin /etc/meingym-tasks/users.env", input="MEINGYM_WORKERS=lots\n"
    )
    d.container.systemctl("restart", USERS, check=False)
    wait_for(
        lambda: d.container.show(USERS, "ActiveState")["ActiveState"] == "failed",
        120,
        "systemd to give up on the users consumer",
        poll=1,
    )
    log = d.container.journal("-o", "cat", "-u", USERS)
    restarts = int(d.container.show(USERS, "NRestarts")["NRestarts"])
    d.container.run("rm /etc/meingym-tasks/users.env")
    d.container.systemctl("reset-failed", USERS)
    d.container.systemctl("start", USERS)

    assert "Start request repeated too quickly" in log and "'lots'" in log
    assert restarts >= 1, "Restart=on-failure tried again before giving up"
    assert d.environ(USERS)["MEINGYM_WORKERS"] == d.settings["MEINGYM_WORKERS"]
    assert d.container.systemctl("is-active", USERS, check=False) == "active"


# --------------------------------------------------------------------------- 5. the nightly run fired


def test_the_nightly_run_starts_once_from_the_units_scheduler(deployment: Deployment) -> None:
    d = deployment
    assert d.nightly_due is not None, "the nightly set-up step did not run"
    remaining = (d.nightly_due - datetime.now(UTC)).total_seconds()

    fired = wait_for(
        lambda: nightly_fired(d),
        max(remaining, 0) + 60 + 30,  # the check after the due minute, within a minute of it
        "the scheduler to enqueue the nightly job",
        poll=1,
    )
    runs = wait_for(lambda: runs_since(d, d.nightly_due), 30, "the nightly job to start a run")
    run = d.wait_done([runs[0]["job_id"]], timeout=180)[runs[0]["job_id"]]

    assert len(fired) == 1 and fired[0] >= d.nightly_due.timestamp()
    assert len(runs) == 1
    assert run["state"] == "complete" and run["result"]["batches"] == BATCHES
    d.jobs["nightly"] = [run["job_id"]]


# --------------------------------------------------------------------------- 7. rolling upgrade


class Producer(threading.Thread):
    """Enqueues process-user-data through the API every ``every`` seconds; keeps the accepted ids.

    Requests refused while the web service restarts are retried by the next tick, as a client would.
    """

    def __init__(self, web: str, token: str, every: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.web, self.token, self.every = web, token, every
        self.accepted: list[str] = []
        self.refused = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.web, headers={"Authorization": f"Bearer {self.token}"}, timeout=10) as api:
            n = 0
            while not self.stop.wait(self.every):
                n += 1
                try:
                    answer = api.post("/api/jobs", json={"action": "process-user-data", "user_id": 1 + n % SEED_USERS})
                except httpx.HTTPError:
                    self.refused += 1
                    continue
                if answer.status_code == 202:
                    self.accepted.append(answer.json()["job_id"])
                else:
                    self.refused += 1


def test_the_rolling_upgrade_as_written_keeps_jobs_flowing_and_loses_none(deployment: Deployment) -> None:
    d = deployment
    release_v0_2_0(d.releases)
    token = d.api.headers["Authorization"].split()[-1]
    producer = Producer(d.web, token)
    producer.start()
    try:
        # 1. Beside the running release.
        follow(d.shell, d.runbook, "upgrade-install")
        old = {unit: d.cmdline(unit) for unit in (ACTIONS, USERS)}
        # A run in progress when the consumers restart, and jobs that come due meanwhile.
        run_id = d.enqueue("update-all-actions")
        delayed = [d.enqueue("process-user-data", user_id=user, delay=2) for user in range(1, 11)]
        wait_for(lambda: (d.job(run_id)["progress"]["done"] or 0) > 0, 60, "the run's first batch", poll=0.05)
        before_switch = d.job(run_id)["state"]
        # 2. Migrate first (the switch and the restart).
        switch = follow(d.shell, d.runbook, "upgrade-switch")
        new = {unit: d.cmdline(unit) for unit in (ACTIONS, USERS)}
        # 3. Check it.
        check = follow(d.shell, d.runbook, "upgrade-check")
        checked = cli_outcome(check["meingym-tasks trigger update-all-actions --wait"].stdout)
        d.jobs["upgrade runs"] = [run_id, checked["job_id"]]
    finally:
        producer.stop.set()
        producer.join(30)

    outcomes = d.wait_done([run_id, *delayed, *producer.accepted], timeout=240)

    assert before_switch == "running", "the restart should land in the middle of the run"
    assert "venv-0.1.0" in old[ACTIONS][0] and "venv-0.1.0" in old[USERS][0], old
    assert "venv-0.2.0" in new[ACTIONS][0] and "venv-0.2.0" in new[USERS][0], new
    assert d.cli("--version").stdout.split()[-1] == "0.2.0"
    assert switch, "the switch block ran"
    assert "FAILED" not in check["meingym-tasks config check"].stdout
    assert checked["status"] == "complete"
    migrate_log = d.container.journal("-o", "cat", "-t", "meingym-tasks-migrate")
    assert "applied: 9000_release_probe" in migrate_log
    migrated = int(d.container.show(MIGRATE, "ExecMainExitTimestampMonotonic")["ExecMainExitTimestampMonotonic"])
    for unit in (ACTIONS, USERS, WEB):
        started = int(d.container.show(unit, "ExecMainStartTimestampMonotonic")["ExecMainStartTimestampMonotonic"])
        assert started > migrated, f"{unit} started before the migration had finished"
    assert len(producer.accepted) > 20, "jobs were flowing"
    lost = {job_id: job["state"] for job_id, job in outcomes.items() if job["state"] != "complete"}
    assert lost == {}
    assert outcomes[run_id]["result"]["batches"] == BATCHES
    d.jobs["upgrade"] = [*delayed, *producer.accepted]
    print(f"\nrolling upgrade: {len(producer.accepted)} jobs accepted, {producer.refused} refused while restarting")


# --------------------------------------------------------------------------- 6. the journal


def test_every_job_outcome_is_one_journal_line_with_the_job_id(deployment: Deployment) -> None:
    d = deployment
    assert d.jobs.get("upgrade"), "the upgrade step did not run"
    one = d.jobs["upgrade"][-1]
    logs = follow(
        d.shell,
        d.runbook,
        "logs",
        stand_ins={"journalctl -u meingym-tasks-consumer@actions -f": lambda line: None},  # follows forever
        replace={"2ea629aa-bee4-4e78-808f-c4574c2be17e": one},
    )
    users = d.container.journal("-o", "cat", "-t", "meingym-tasks-users")
    actions = d.container.journal("-o", "cat", "-t", "meingym-tasks-actions")

    grep = logs["journalctl -t meingym-tasks-users --grep 2ea629aa-bee4-4e78-808f-c4574c2be17e"].stdout
    assert f"Executing meingym_tasks.tasks.process-user-data: {one}" in grep
    assert re.search(rf"process-user-data: {one} .* executed in", grep), grep

    def outcome_lines(log: str, job_id: str) -> int:
        return len(re.findall(rf"^.*{job_id}.*(?:executed in|Unhandled exception in task)", log, re.M))

    # Graceful stops and restarts: exactly one outcome line per job.
    counted = {job_id: outcome_lines(users, job_id) for job_id in d.jobs["upgrade"]}
    assert {job_id: n for job_id, n in counted.items() if n != 1} == {}
    # SIGKILL: the killed attempt logged no outcome; a job killed after its outcome was logged
    # but before it was acknowledged runs (and logs) again.
    assert all(outcome_lines(users, job_id) >= 1 for job_id in d.jobs["sigkill"])
    for job_id in d.jobs["stop mid-run"] + d.jobs["nightly"]:
        assert outcome_lines(actions, job_id) == 1, job_id


# --------------------------------------------------------------------------- 8. the sandbox


def documented_exposure() -> dict[str, float]:
    """The table of scores in docs/deploy.md's Sandbox section."""
    row = re.compile(r"^\| `(meingym-tasks-[^`]+\.service)`\s*\|\s*(\d+\.\d+)\s*\|", re.M)
    return {unit: float(score) for unit, score in row.findall(DEPLOY.read_text())}


def overall(output: str) -> float:
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", output)
    assert match, output
    return float(match.group(1))


def test_systemd_analyze_security_in_the_container_agrees_with_the_offline_score(deployment: Deployment) -> None:
    d = deployment
    security = follow(d.shell, d.runbook, "security")
    online = {unit: overall(d.container.run(f"systemd-analyze security --no-pager {unit}").stdout) for unit in SERVICES}
    offline = {
        unit: overall(
            d.container.run(f"systemd-analyze security --offline=true --no-pager /etc/systemd/system/{unit}").stdout
        )
        for unit in SERVICES
    }
    print(f"\nexposure, running: {online}\nexposure, offline: {offline}")

    assert overall(security[f"systemd-analyze security {ACTIONS}"].stdout) == online[ACTIONS]
    assert online == offline
    assert max(online.values()) <= MAX_EXPOSURE
    assert documented_exposure() == online, "docs/deploy.md's Sandbox table says otherwise"
    # And in force on the running processes: the service user, no capabilities, seccomp.
    uid = d.container.run("id -u meingym").stdout.strip()
    for unit in (ACTIONS, USERS, WEB):
        d.cmdline(unit)
        status = d.container.read(f"/proc/{d.main_pid(unit)}/status")
        fields = dict(re.findall(r"^(Uid|NoNewPrivs|Seccomp|CapEff|CapBnd):\s*(\S+)", status, re.M))
        assert fields == {
            "Uid": uid,
            "NoNewPrivs": "1",
            "Seccomp": "2",
            "CapEff": "0000000000000000",
            "CapBnd": "0000000000000000",
        }, unit


# --------------------------------------------------------------------------- 5. still once


def test_the_nightly_run_started_once_through_every_restart(deployment: Deployment) -> None:
    """The actions consumer restarted after the nightly run came due, within the hour in which a
    consumer that was down still starts it; the claim in Redis kept it to one run."""
    d = deployment
    assert d.nightly_due is not None and d.jobs.get("nightly"), "the nightly steps did not run"
    time.sleep(2)  # a consumer checks its periodic jobs as it starts, then once a minute

    ours = set(d.jobs["nightly"]) | set(d.jobs.get("upgrade runs", []))
    assert len(nightly_fired(d)) == 1
    assert {job["job_id"] for job in runs_since(d, d.nightly_due)} == ours
