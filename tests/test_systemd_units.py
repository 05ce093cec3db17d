"""The systemd units: verified and scored by systemd-analyze, and their exact commands run.

The units name the installed paths (``/opt/meingym-tasks/venv``,
``/etc/meingym-tasks/meingym-tasks.env``). ``systemd-analyze verify`` insists
that every ``ExecStart=`` binary exists, so the units are rendered into a temp
directory with this checkout's venv in place of ``/opt/meingym-tasks/venv`` and
nothing else changed. The run tests read ``ExecStart=``, ``Environment=``,
``EnvironmentFile=``, ``KillSignal=`` and ``TimeoutStopSec=`` from the unit
files, expand them as systemd does (specifiers, then ``${VAR}``/``$VAR``) and
run the resulting command against the real Redis and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import peewee
import pytest

from meingym_tasks.settings import read_env_file
from tests.helpers import REQUIRE_SERVICES, throwaway_postgres_database

ROOT = Path(__file__).parent.parent
UNITS_DIR = ROOT / "systemd"
EXAMPLE = ROOT / "config" / "meingym-tasks.env.example"

INSTALLED_VENV = "/opt/meingym-tasks/venv"
CONFIG_FILE = "/etc/meingym-tasks/meingym-tasks.env"
STATE_DIR = "/var/lib/meingym-tasks"
TARGET = "meingym-tasks.target"
MIGRATE = "meingym-tasks-migrate.service"
WEB = "meingym-tasks-web.service"
CONSUMERS = ["meingym-tasks-consumer@actions.service", "meingym-tasks-consumer@users.service"]
SERVICES = [*CONSUMERS, WEB, MIGRATE]
UNITS = [*SERVICES, TARGET]
MAX_EXPOSURE = 2.0
# systemd's PATH for system services; nothing else of the caller's environment reaches them.
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# --------------------------------------------------------------------------- reading units


@dataclasses.dataclass
class Unit:
    """One unit (a template is read under its instance name), parsed as systemd reads it."""

    name: str
    path: Path
    sections: dict[str, list[tuple[str, str]]]

    def values(self, section: str, key: str) -> list[str]:
        """Every assignment of ``key``; an empty assignment resets the list, as in systemd."""
        found: list[str] = []
        for name, value in self.sections.get(section, []):
            if name == key:
                found = [] if value == "" else [*found, value]
        return found

    def get(self, section: str, key: str) -> str | None:
        assigned = [value for name, value in self.sections.get(section, []) if name == key]
        return assigned[-1] if assigned else None

    def words(self, section: str, key: str) -> list[str]:
        return [word for value in self.values(section, key) for word in value.split()]

    @property
    def instance(self) -> str:
        prefix = self.name.split(".")[0]
        return prefix.partition("@")[2]


def unit_file(name: str) -> Path:
    """``foo@bar.service`` is read from the template ``foo@.service``."""
    prefix, suffix = name.rsplit(".", 1)
    if "@" in prefix:
        prefix = prefix.partition("@")[0] + "@"
    return UNITS_DIR / f"{prefix}.{suffix}"


def load_unit(name: str) -> Unit:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    pending = ""
    for raw in unit_file(name).read_text().splitlines():
        line = (pending + " " + raw.strip()) if pending else raw.strip()
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{unit_file(name)}: {line!r} is not Key=Value"
        sections[current].append((key.strip(), value.strip()))
    return Unit(name, unit_file(name), sections)


def expand_specifiers(text: str, unit: Unit, state_dir: str = "/var/lib") -> str:
    """The specifiers the units use; any other one fails the test instead of passing unnoticed."""
    known = {"i": unit.instance, "I": unit.instance, "n": unit.name, "N": unit.name.rsplit(".", 1)[0]}
    known |= {"p": unit.name.split("@")[0].split(".")[0], "S": state_dir, "%": "%"}

    def replace(match: re.Match[str]) -> str:
        letter = match.group(1)
        assert letter in known, f"{unit.path}: specifier %{letter} is not handled by this test"
        return known[letter]

    return re.sub(r"%(.)", replace, text)


def split_words(text: str) -> list[str]:
    """systemd's word splitting: whitespace, "double" and 'single' quotes."""
    words, word, quote, started = [], "", "", False
    for char in text:
        if quote:
            if char == quote:
                quote = ""
            else:
                word += char
        elif char in "\"'":
            quote, started = char, True
        elif char.isspace():
            if started or word:
                words.append(word)
            word, started = "", False
        else:
            word += char
    assert not quote, f"unbalanced quotes in {text!r}"
    if started or word:
        words.append(word)
    return words


def expand_command(line: str, env: dict[str, str]) -> list[str]:
    """An Exec*= line as systemd runs it: ``$VAR`` alone splits into words, ``${VAR}`` substitutes."""
    assert not line.startswith(("-", "@", ":", "+", "!")), f"Exec prefix in {line!r} is not handled by this test"
    argv: list[str] = []
    for word in split_words(line):
        whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if whole:
            argv.extend(env.get(whole.group(1), "").split())
        else:
            argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), word))
    return argv


def service_environment(unit: Unit, files: dict[str, Path], state_dir: str) -> dict[str, str]:
    """``Environment=``, then each ``EnvironmentFile=`` in order (read from ``files``, by installed path)."""
    env: dict[str, str] = {}
    for value in unit.values("Service", "Environment"):
        for assignment in split_words(expand_specifiers(value, unit, state_dir)):
            key, _, val = assignment.partition("=")
            env[key] = val
    for value in unit.values("Service", "EnvironmentFile"):
        optional = value.startswith("-")
        installed = expand_specifiers(value.removeprefix("-"), unit, state_dir)
        local = files.get(installed)
        if local is None or not local.exists():
            assert optional, f"{unit.name}: required EnvironmentFile {installed} was not provided"
            continue
        env.update(read_env_file(local))
    return env


def seconds(timespan: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min|m|h)?", timespan)
    assert match, f"time span {timespan!r} is not handled by this test"
    return float(match.group(1)) * {None: 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}[match.group(2)]


def venv() -> str:
    return sys.prefix


def localize(argv: list[str]) -> list[str]:
    """The installed venv path replaced by this checkout's venv; nothing else changes."""
    return [word.replace(INSTALLED_VENV, venv(), 1) if word.startswith(INSTALLED_VENV) else word for word in argv]


@dataclasses.dataclass
class Service:
    """What systemd would execute for a unit, with this test's files in place of the installed ones."""

    unit: Unit
    env: dict[str, str]
    argv: list[str]
    workdir: Path

    def command(self, key: str, **extra: str) -> list[str]:
        line = self.unit.get("Service", key)
        assert line is not None, f"{self.unit.name} has no {key}="
        return localize(
            expand_command(expand_specifiers(line, self.unit, str(self.workdir.parent)), {**self.env, **extra})
        )

    def popen(self, log: Path) -> subprocess.Popen[bytes]:
        self.workdir.mkdir(parents=True, exist_ok=True)  # what StateDirectory= does
        with log.open("wb") as out:
            return subprocess.Popen(
                self.argv, env={"PATH": SYSTEMD_PATH, **self.env}, cwd=self.workdir, stdout=out, stderr=out
            )


def prepare(name: str, tmp_path: Path, config: dict[str, str], per_queue: dict[str, str] | None = None) -> Service:
    """Write the configuration file(s) and build the service's environment and ExecStart argv."""
    unit = load_unit(name)
    state_dir = tmp_path / "state"
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    config_file = etc / "meingym-tasks.env"
    config_file.write_text("".join(f"{key}={value}\n" for key, value in config.items()))
    files = {CONFIG_FILE: config_file}
    if unit.instance:
        queue_file = etc / f"{unit.instance}.env"
        if per_queue:
            queue_file.write_text("".join(f"{key}={value}\n" for key, value in per_queue.items()))
        files[f"/etc/meingym-tasks/{unit.instance}.env"] = queue_file
    env = service_environment(unit, files, str(state_dir))
    workdir = Path(expand_specifiers(unit.get("Service", "WorkingDirectory") or str(tmp_path), unit, str(state_dir)))
    service = Service(unit, env, [], workdir)
    service.argv = service.command("ExecStart")
    return service


# --------------------------------------------------------------------------- systemd-analyze


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        reason = "systemd-analyze is not installed (Debian: apt-get install systemd)"
        if REQUIRE_SERVICES:
            pytest.fail(reason + " (MEINGYM_TEST_REQUIRE_SERVICES=1)")
        pytest.skip(reason)
    return path


def render(directory: Path, broken: dict[str, tuple[str, str]] | None = None) -> Path:
    """Copy the units with this venv in place of the installed one (``broken``: edits for a control)."""
    directory.mkdir(parents=True, exist_ok=True)
    for source in UNITS_DIR.iterdir():
        text = source.read_text().replace(INSTALLED_VENV, venv())
        if broken and source.name in broken:
            old, new = broken[source.name]
            assert old in text
            text = text.replace(old, new)
        (directory / source.name).write_text(text)
    return directory


def verify_problems(analyze: str, directory: Path) -> list[str]:
    """What ``systemd-analyze verify`` says about our units: its exit status and every line naming them.

    verify exits 0 on unknown keys and unparsable values ("ignoring"), so its
    messages count as failures too. Lines about the host's own units are not ours.
    """
    paths = [str(directory / name) for name in UNITS]
    result = subprocess.run(
        [analyze, "verify", "--man=no", "--generators=no", *paths], capture_output=True, text=True, timeout=60
    )
    lines = (result.stdout + result.stderr).splitlines()
    problems = [line for line in lines if str(directory) in line or "meingym-tasks" in line]
    if result.returncode != 0:
        problems.append(f"exit status {result.returncode}: {result.stderr.strip()}")
    return problems


def exposure(analyze: str, path: Path) -> tuple[float, int]:
    """The overall exposure score, and the exit status of ``--threshold`` (in tenths) at MAX_EXPOSURE."""
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", f"--threshold={round(MAX_EXPOSURE * 10)}", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1)), result.returncode


def test_systemd_analyze_verify_passes_on_every_unit(systemd_analyze: str, tmp_path: Path) -> None:
    directory = render(tmp_path / "units")

    assert verify_problems(systemd_analyze, directory) == []


@pytest.mark.parametrize(
    ("unit", "edit"),
    [
        ("meingym-tasks-consumer@.service", ("KillSignal=SIGINT", "KillSignal=SIGINTERRUPT")),
        ("meingym-tasks-web.service", ("ProtectSystem=strict", "ProtectSytem=strict")),
        ("meingym-tasks-migrate.service", ("/bin/meingym-tasks db", "/bin/meingym-task db")),
        ("meingym-tasks-consumer@.service", ("PartOf=meingym-tasks.target", "PartOf=meingym-tasks.target\n[Servce]")),
    ],
)
def test_the_verify_check_catches_a_broken_unit(
    systemd_analyze: str, tmp_path: Path, unit: str, edit: tuple[str, str]
) -> None:
    directory = render(tmp_path / "units", broken={unit: edit})

    assert verify_problems(systemd_analyze, directory) != []


@pytest.mark.parametrize("name", SERVICES)
def test_the_exposure_score_is_at_most_2(systemd_analyze: str, tmp_path: Path, name: str) -> None:
    directory = render(tmp_path / "units")

    score, status = exposure(systemd_analyze, directory / name)

    print(f"{name}: exposure {score}")
    assert score <= MAX_EXPOSURE
    assert status == 0  # systemd-analyze's own --threshold agrees


# --------------------------------------------------------------------------- what the units say


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_is_part_of_the_target_reads_the_config_file_and_is_sandboxed(name: str) -> None:
    unit = load_unit(name)

    assert unit.values("Unit", "PartOf") == [TARGET]
    assert unit.values("Install", "WantedBy") == [TARGET]
    assert CONFIG_FILE in unit.values("Service", "EnvironmentFile")  # required: no "-" prefix
    assert unit.get("Service", "User") == "meingym"
    assert unit.get("Service", "StateDirectory") == "meingym-tasks"
    assert [expand_specifiers(v, unit) for v in unit.values("Service", "ReadWritePaths")] == [STATE_DIR]
    hardening = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "PrivateDevices": "yes",
        "MemoryDenyWriteExecute": "yes",
        "RestrictNamespaces": "yes",
        "SystemCallArchitectures": "native",
    }
    assert {key: unit.get("Service", key) for key in hardening} == hardening
    assert unit.get("Service", "CapabilityBoundingSet") == ""  # empty: no capability at all
    assert unit.words("Service", "RestrictAddressFamilies") == ["AF_UNIX", "AF_INET", "AF_INET6"]
    executable = unit.get("Service", "ExecStart") or ""
    assert executable.startswith(INSTALLED_VENV + "/bin/"), "the venv's binary, directly"
    assert not re.search(r"\b(sh|bash)\b", executable.split()[0])


@pytest.mark.parametrize("name", CONSUMERS)
def test_a_consumer_stops_gracefully_reloads_and_restarts_with_a_limit(name: str, tmp_path: Path) -> None:
    unit = load_unit(name)
    argv = prepare(name, tmp_path, {}).argv

    # huey stops gracefully on its graceful signal (SIGINT unless -g TERM) and interrupts
    # running jobs on the other one; systemd must send the graceful one.
    options = set(itertools.pairwise(argv))
    huey_graceful = "SIGTERM" if {("-g", "TERM"), ("--graceful-signal", "TERM")} & options else "SIGINT"
    assert (unit.get("Service", "KillSignal") or "SIGTERM") == huey_graceful
    assert unit.get("Service", "KillMode") in (None, "control-group", "mixed")
    assert seconds(unit.get("Service", "TimeoutStopSec") or "90") >= 300  # minutes above one batch or email
    assert split_words(unit.get("Service", "ExecReload") or "") == ["/bin/kill", "-HUP", "$MAINPID"]
    assert unit.get("Service", "Restart") == "on-failure"
    assert int(unit.get("Unit", "StartLimitBurst") or 0) > 0
    assert seconds(unit.get("Unit", "StartLimitIntervalSec") or "0") > 0
    assert "meingym-tasks-migrate.service" in unit.words("Unit", "Requires")
    assert "meingym-tasks-migrate.service" in unit.words("Unit", "After")

    assert argv[:2] == [f"{venv()}/bin/huey_consumer", f"meingym_tasks.consumers.{unit.instance}"]
    assert argv[2:] == ["--workers", "2", "--worker-type", "thread"]  # the defaults, from Environment=
    assert not {"-n", "--no-periodic"} & set(argv), "periodic housekeeping runs on every machine"


def test_the_config_file_and_a_per_queue_file_set_workers_and_worker_type(tmp_path: Path) -> None:
    service = prepare(
        CONSUMERS[0], tmp_path, {"MEINGYM_WORKERS": "6", "MEINGYM_WORKER_TYPE": "process"}, {"MEINGYM_WORKERS": "9"}
    )

    assert service.argv[2:] == ["--workers", "9", "--worker-type", "process"]


def test_the_web_service_listens_on_loopback_by_default(tmp_path: Path) -> None:
    unit = load_unit(WEB)
    service = prepare(WEB, tmp_path, {})

    assert service.argv == [f"{venv()}/bin/meingym-tasks", "web", "--host", "127.0.0.1", "--port", "8000"]
    assert "meingym-tasks-migrate.service" in unit.words("Unit", "Requires")
    assert "meingym-tasks-migrate.service" in unit.words("Unit", "After")
    assert prepare(WEB, tmp_path, {"MEINGYM_WEB_HOST": "10.0.0.5"}).argv[3] == "10.0.0.5"


def test_migrate_is_a_oneshot_that_stays_active() -> None:
    unit = load_unit(MIGRATE)

    assert unit.get("Service", "Type") == "oneshot"
    assert unit.get("Service", "RemainAfterExit") == "yes"
    assert unit.get("Service", "ExecStart") == f"{INSTALLED_VENV}/bin/meingym-tasks db migrate"


def test_the_target_starts_with_the_machine() -> None:
    assert load_unit(TARGET).values("Install", "WantedBy") == ["multi-user.target"]


def test_every_variable_the_units_read_is_in_the_example_configuration() -> None:
    documented = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", EXAMPLE.read_text(), re.MULTILINE))
    read = set()
    for name in UNITS:
        unit = load_unit(name)
        for _key, value in unit.sections.get("Service", []):
            read |= set(re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", value))
    read -= {"MAINPID"}  # set by systemd

    assert read, "the units read no variable?"
    assert read <= documented, sorted(read - documented)


# --------------------------------------------------------------------------- running the exact commands


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("broker_url", ["redis"], indirect=True)
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize(
    ("name", "worker_type"), [(CONSUMERS[0], "thread"), (CONSUMERS[1], "thread"), (CONSUMERS[1], "process")]
)
def test_the_consumer_units_command_runs_jobs_reloads_and_stops_cleanly(
    name: str, worker_type: str, app_env: dict[str, str], app_settings: object, tmp_path: Path
) -> None:
    """The unit's ExecStart runs jobs; its ExecReload restarts huey in place; its KillSignal stops it cleanly."""
    from meingym_tasks.domain.models import User
    from meingym_tasks.domain.seed import seed_demo_data
    from meingym_tasks.jobs import schedule_actions_update, schedule_user_processing, wait_for_result

    seed_demo_data(users=2, actions=40, seed=3)
    user_id = User.select(User.id).order_by(User.id).first().id
    service = prepare(name, tmp_path, {**app_env, "MEINGYM_WORKER_TYPE": worker_type})
    unit = service.unit
    assert service.argv[-2:] == ["--worker-type", worker_type]
    enqueue = schedule_actions_update if unit.instance == "actions" else lambda: schedule_user_processing(user_id)
    log = tmp_path / f"{unit.instance}.log"

    proc = service.popen(log)
    try:
        first = enqueue()
        outcome = wait_for_result(first["job_id"], timeout=60)
        assert outcome["status"] == "complete", (outcome, log.read_text())

        reload = service.command("ExecReload", MAINPID=str(proc.pid))
        subprocess.run(reload, check=True, timeout=10)
        _wait_for(lambda: "Consumer will restart" in log.read_text(), 30, "huey to restart on SIGHUP")
        second = enqueue()
        outcome = wait_for_result(second["job_id"], timeout=60)
        assert outcome["status"] == "complete", (outcome, log.read_text())
        assert proc.poll() is None, "a reload keeps the same process (systemd's MAINPID)"

        kill_signal = signal.Signals[unit.get("Service", "KillSignal") or "SIGTERM"]
        stop_timeout = seconds(unit.get("Service", "TimeoutStopSec") or "90")
        proc.send_signal(kill_signal)
        code = proc.wait(timeout=min(stop_timeout, 60))
    finally:
        _stop(proc)

    output = log.read_text()
    assert code == 0, output
    assert "Shutting down gracefully" in output and "All workers have stopped" in output
    assert first["job_id"] in output and second["job_id"] in output  # huey logs each job by id


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database nothing has touched: a new SQLite path or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh' / 'meingym.db'}"
        return
    with throwaway_postgres_database("meingym_deploy") as url:
        yield url


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_migrate_units_command_brings_the_schema_current(
    fresh_database_url: str, make_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    from meingym_tasks.db.database import open_database
    from meingym_tasks.db.migrate import MIGRATIONS_DIR, pending

    service = prepare(MIGRATE, tmp_path, make_env(DATABASE_URL=fresh_database_url))
    env = {"PATH": SYSTEMD_PATH, **service.env}
    service.workdir.mkdir(parents=True, exist_ok=True)
    limit = min(seconds(service.unit.get("Service", "TimeoutStartSec") or "90"), 60)

    first = subprocess.run(service.argv, env=env, cwd=service.workdir, capture_output=True, text=True, timeout=limit)
    again = subprocess.run(service.argv, env=env, cwd=service.workdir, capture_output=True, text=True, timeout=limit)

    assert first.returncode == 0, first.stderr
    every = sorted(path.stem for path in MIGRATIONS_DIR.glob("[0-9]*.py"))
    assert first.stdout.strip() == "applied: " + ", ".join(every)
    assert again.returncode == 0 and again.stdout.strip() == "schema is current", again.stderr
    db: peewee.Database = open_database(fresh_database_url)
    try:
        assert pending(db) == []
    finally:
        db.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("broker_url", ["redis"], indirect=True)
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_graceful_stop_mid_run_loses_no_job(app_env: dict[str, str], app_settings: object, tmp_path: Path) -> None:
    """What a rolling upgrade does to one machine: stop with KillSignal mid-run, start again.

    400 batch jobs of one id each; the stop lands after the first. Jobs still
    queued stay in Redis, the running ones finish, and the restarted consumer
    completes the run with every batch counted.
    """
    from meingym_tasks.domain.seed import seed_demo_data
    from meingym_tasks.jobs import job_result, schedule_actions_update, wait_for_result

    actions = 400
    seed_demo_data(users=2, actions=actions, seed=5)
    service = prepare(CONSUMERS[0], tmp_path, {**app_env, "MEINGYM_UPDATE_BATCH_SIZE": "1"})
    kill_signal = signal.Signals[service.unit.get("Service", "KillSignal") or "SIGTERM"]
    first_log, second_log = tmp_path / "before.log", tmp_path / "after.log"

    proc = service.popen(first_log)
    try:
        run = schedule_actions_update()
        _wait_for(
            lambda: "Executing meingym_tasks.tasks.update-all-actions.batch" in first_log.read_text(),
            30,
            "the first batch",
        )
        proc.send_signal(kill_signal)
        code = proc.wait(timeout=60)
    finally:
        _stop(proc)
    at_stop = job_result(run["job_id"])["status"]

    proc = service.popen(second_log)
    try:
        outcome = wait_for_result(run["job_id"], timeout=120)
    finally:
        proc.send_signal(kill_signal)
        proc.wait(timeout=60)
        _stop(proc)

    assert code == 0, first_log.read_text()
    assert at_stop == "pending", "the stop should land mid-run, with batches still queued"
    assert outcome["status"] == "complete", (outcome, second_log.read_text())
    assert outcome["result"]["actions_scored"] == actions
    assert outcome["result"]["batches"] == actions
