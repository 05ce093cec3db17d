"""Settings: one frozen dataclass, parsed once from the environment.

Values come from the process environment, over an optional env file named by
``MEINGYM_CONFIG`` (``KEY=value`` lines, as systemd's ``EnvironmentFile=``
reads them). Every bad value raises one :class:`ConfigurationError` that names
the variable, the value and what is allowed. Loading settings reads files but
never creates one and never connects anywhere.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from datetime import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from meingym_tasks.exceptions import ConfigurationError

#: update-all-actions' default batch sizes (see :func:`default_update_batch_size`).
SQLITE_UPDATE_BATCH_SIZE, POSTGRES_UPDATE_BATCH_SIZE = 200_000, 50_000
BROKER_SCHEMES = ("sqlite", "redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "postgresql", "postgres")
#: Redis through Sentinel: ``redis+sentinel://[[user]:password@]host:port,host:port/service[/db][?options]``.
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
REDIS_SCHEMES = ("redis", "rediss", "unix", *SENTINEL_SCHEMES)
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres", "postgresext", "postgresql+pool")
WORKER_TYPES = ("thread", "process")
#: Shorter keys are refused: one that signs task messages must not be guessable (a generated one has 43).
MIN_SECRET_KEY_LENGTH = 8
#: ``config check`` warns below this: a key of ``secrets.token_urlsafe(32)`` has 43 characters.
GOOD_SECRET_KEY_LENGTH = 32


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything meingym-tasks can be configured with; see config/meingym-tasks.env.example."""

    data_dir: Path = Path("var")
    broker_url: str = "sqlite:///var/queue.db"
    database_url: str = "sqlite:///var/meingym.db"
    secret_key: str | None = None
    timezone: str = "Europe/Berlin"
    nightly_at: time = time(3, 0)
    scheduler_enabled: bool = True
    job_attempts: int = 3
    retry_delay: float = 5.0
    retry_backoff: float = 3.0
    result_ttl: int = 24 * 3600
    failed_result_ttl: int = 7 * 24 * 3600
    keep_complete_count: int = 100_000
    update_batch_size: int = SQLITE_UPDATE_BATCH_SIZE  # the default database's (see default_update_batch_size)
    update_lock_ttl: int = 6 * 3600
    max_schedule_ahead: int = 30 * 24 * 3600
    reliable_fetch: bool = True
    registry_batching: bool = True
    heartbeat_timeout: int = 30
    max_recoveries: int = 3
    workers: int = 2
    worker_type: str = "thread"
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout: float = 10.0
    mail_from: str = "MeinGym <no-reply@meingym.example>"
    audit_retention_days: int = 90
    #: Redis ``WAIT``: an enqueue is accepted once this many replicas have the job (0: off).
    redis_wait_replicas: int = 0
    redis_wait_timeout_ms: int = 1000

    @property
    def broker(self) -> str:
        """The broker kind: ``sqlite``, ``redis`` or ``postgres``."""
        scheme = urlsplit(self.broker_url).scheme
        if scheme in REDIS_SCHEMES:
            return "redis"
        if scheme in ("postgresql", "postgres"):
            return "postgres"
        return "sqlite"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def outbox_dir(self) -> Path:
        """Where welcome emails are written as .eml files when no SMTP host is set."""
        return self.data_dir / "outbox"

    @property
    def retries(self) -> int:
        """Huey counts retries, Bull counted attempts: 3 attempts are 2 retries."""
        return self.job_attempts - 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``environ`` (default: ``os.environ``) and ``MEINGYM_CONFIG``."""
        return _parse(read_environment(environ))

    def masked(self) -> dict[str, str]:
        """The effective settings as strings, secrets replaced by ``***``."""
        shown: dict[str, str] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in ("secret_key", "smtp_password") and value:
                shown[field.name] = "***"
            elif field.name.endswith("_url"):
                shown[field.name] = mask_url(str(value))
            else:
                shown[field.name] = "" if value is None else str(value)
        return shown


def read_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default: ``os.environ``) over the env file named by ``MEINGYM_CONFIG``, if any."""
    env = dict(os.environ if environ is None else environ)
    config_file = env.get("MEINGYM_CONFIG")
    if config_file:
        env = {**read_env_file(Path(config_file)), **env}
    return env


def read_env_file(path: Path) -> dict[str, str]:
    """Parse ``KEY=value`` lines as systemd's EnvironmentFile does (comments, quotes).

    Written here rather than pulling in python-dotenv: the format is a dozen
    lines to parse and the unit files read the very same file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"MEINGYM_CONFIG={path}: cannot read the file ({exc.strerror}); allowed: a readable file of KEY=value lines"
        ) from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigurationError(f"MEINGYM_CONFIG={path}: line {number} {raw!r} is not KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def mask_url(url: str) -> str:
    """Hide the password of a URL (and a Sentinel URL's ``sentinel_password=``), keep the rest readable."""
    parts = urlsplit(url)
    if parts.scheme in SENTINEL_SCHEMES and "password" in parts.query:
        query = [(k, "***" if "password" in k else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        parts = parts._replace(query=urlencode(query, safe="*/"))
        url = parts.geturl()
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


@dataclasses.dataclass(frozen=True)
class SentinelURL:
    """A ``redis+sentinel://`` URL taken apart: where the sentinels are and what to ask them for."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    #: ``rediss+sentinel://``: TLS to the sentinels and to the Redis servers.
    tls: bool
    #: The sentinels' own password (``?sentinel_password=``), when they have one.
    sentinel_password: str | None
    #: The same URL as ``redis://`` (or ``rediss://``) to the first sentinel's address, with the
    #: credentials, database and options: redis-py reads the connection options from it.
    redis_url: str


def is_sentinel_url(url: str) -> bool:
    return urlsplit(url).scheme in SENTINEL_SCHEMES


def parse_sentinel_url(url: str, name: str = "MEINGYM_BROKER_URL") -> SentinelURL:
    """Take a Sentinel URL apart; a malformed one raises one :class:`ConfigurationError` naming ``name``."""
    allowed = (
        "redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db], for example "
        "redis+sentinel://:PASSWORD@10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/mymaster/0"
    )
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    sentinels: list[tuple[str, int]] = []
    for item in hosts.split(","):
        match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(?::(\d{1,5}))?", item.strip())
        port = int(match.group(2) or 26379) if match else 0
        if match is None or not 1 <= port <= 65535:
            raise _fail(name, mask_url(url), allowed)
        sentinels.append((match.group(1).strip("[]"), port))
    path = [segment for segment in parts.path.split("/") if segment]
    if not 1 <= len(path) <= 2 or (len(path) == 2 and not path[1].isdigit()):
        raise _fail(name, mask_url(url), allowed)
    db = int(path[1]) if len(path) == 2 else 0
    options = parse_qsl(parts.query, keep_blank_values=True)
    sentinel_password = next((v for k, v in options if k == "sentinel_password"), None) or None
    query = urlencode([(k, v) for k, v in options if k != "sentinel_password"])
    host, port = sentinels[0]
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    if ":" in host:
        netloc = netloc.replace(host, f"[{host}]", 1)
    tls = parts.scheme == "rediss+sentinel"
    redis_url = f"{'rediss' if tls else 'redis'}://{netloc}/{db}" + (f"?{query}" if query else "")
    return SentinelURL(tuple(sentinels), path[0], db, tls, sentinel_password, redis_url)


def _fail(name: str, value: str, allowed: str) -> ConfigurationError:
    return ConfigurationError(f"{name}={value!r} is not allowed; expected {allowed}")


def env_value(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value.strip() if value is not None and value.strip() != "" else None


def env_int(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = env_value(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _fail(name, raw, f"a whole number from {minimum} to {maximum}") from None
    if not minimum <= value <= maximum:
        raise _fail(name, raw, f"a whole number from {minimum} to {maximum}")
    return value


def env_float(env: Mapping[str, str], name: str, default: float, minimum: float, maximum: float) -> float:
    raw = env_value(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _fail(name, raw, f"a number from {minimum:g} to {maximum:g}") from None
    if not minimum <= value <= maximum:
        raise _fail(name, raw, f"a number from {minimum:g} to {maximum:g}")
    return value


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env_value(env, name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise _fail(name, raw, "one of 1/true/yes/on or 0/false/no/off")


def _scheme_ok(name: str, url: str, schemes: tuple[str, ...]) -> str:
    scheme = urlsplit(url).scheme
    if scheme not in schemes:
        raise _fail(name, mask_url(url), "a URL starting with " + ", ".join(f"{s}://" for s in schemes))
    return url


def default_update_batch_size(database_url: str) -> int:
    """Action ids per update-all-actions batch when ``MEINGYM_UPDATE_BATCH_SIZE`` is unset.

    SQLite has one writer: batches run one after another whatever the workers,
    each paying a commit, bookkeeping and a hand-over of the write lock, so
    fewer, larger ones (measured in docs/performance.md). PostgreSQL runs
    batches side by side on every consumer.
    """
    return SQLITE_UPDATE_BATCH_SIZE if urlsplit(database_url).scheme == "sqlite" else POSTGRES_UPDATE_BATCH_SIZE


def _broker_url(env: Mapping[str, str], data_dir: Path) -> str:
    """``MEINGYM_BROKER_URL`` wins; ``REDIS_URL`` or ``REDIS_HOST``/``REDIS_PORT`` select Redis."""
    explicit = env_value(env, "MEINGYM_BROKER_URL")
    if explicit:
        url = _scheme_ok("MEINGYM_BROKER_URL", explicit, BROKER_SCHEMES)
        if is_sentinel_url(url):
            parse_sentinel_url(url)
        return url
    redis_url = env_value(env, "REDIS_URL")
    if redis_url:
        return _scheme_ok("REDIS_URL", redis_url, ("redis", "rediss", "unix"))
    host, port = env_value(env, "REDIS_HOST"), env_value(env, "REDIS_PORT")
    if host or port:
        number = env_int(env, "REDIS_PORT", 6379, 1, 65535)
        host = host or "localhost"
        if not re.fullmatch(r"[A-Za-z0-9.\-:\[\]]+", host):
            raise _fail("REDIS_HOST", host, "a host name or IP address")
        return f"redis://{host}:{number}/0"
    return f"sqlite:///{data_dir / 'queue.db'}"


def _data_dir(env: Mapping[str, str]) -> Path:
    raw = env_value(env, "MEINGYM_DATA_DIR") or "var"
    path = Path(raw)
    probe = path
    while not probe.exists():  # the directory is created on first use
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.R_OK | os.W_OK | os.X_OK):
        raise _fail("MEINGYM_DATA_DIR", raw, "a directory this user can read and write (or create)")
    return path


def _nightly_at(env: Mapping[str, str]) -> time:
    raw = env_value(env, "MEINGYM_NIGHTLY_AT")
    if raw is None:
        return time(3, 0)
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", raw)
    if not match:
        raise _fail("MEINGYM_NIGHTLY_AT", raw, "a local time HH:MM, for example 03:00")
    return time(int(match.group(1)), int(match.group(2)))


def _timezone(env: Mapping[str, str]) -> str:
    raw = env_value(env, "MEINGYM_TIMEZONE") or "Europe/Berlin"
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise _fail("MEINGYM_TIMEZONE", raw, "an IANA time zone name such as Europe/Berlin or UTC") from None
    return raw


def _secret_key(env: Mapping[str, str]) -> str | None:
    key = env_value(env, "MEINGYM_SECRET_KEY")
    if key is not None and len(key) < MIN_SECRET_KEY_LENGTH:
        raise ConfigurationError(  # the value is a secret: say only how long it is
            f"MEINGYM_SECRET_KEY ({len(key)} characters) is not allowed; expected at least "
            f"{MIN_SECRET_KEY_LENGTH} characters, better {GOOD_SECRET_KEY_LENGTH} or more, such as the output of "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return key


def _redis_wait(env: Mapping[str, str], broker_url: str) -> tuple[int, int]:
    """``MEINGYM_REDIS_WAIT_REPLICAS`` and ``MEINGYM_REDIS_WAIT_TIMEOUT_MS``; replicas only with a Redis broker."""
    replicas = env_int(env, "MEINGYM_REDIS_WAIT_REPLICAS", 0, 0, 100)
    timeout = env_int(env, "MEINGYM_REDIS_WAIT_TIMEOUT_MS", 1000, 1, 60_000)
    if replicas and urlsplit(broker_url).scheme not in REDIS_SCHEMES:
        raise _fail(
            "MEINGYM_REDIS_WAIT_REPLICAS", str(replicas), "0 unless the broker is Redis (redis:// or redis+sentinel://)"
        )
    return replicas, timeout


def _parse(env: Mapping[str, str]) -> Settings:
    data_dir = _data_dir(env)
    broker_url = _broker_url(env, data_dir)
    wait_replicas, wait_timeout_ms = _redis_wait(env, broker_url)
    worker_type = env_value(env, "MEINGYM_WORKER_TYPE") or "thread"
    if worker_type not in WORKER_TYPES:
        raise _fail("MEINGYM_WORKER_TYPE", worker_type, " or ".join(WORKER_TYPES))
    database_url = env_value(env, "DATABASE_URL") or f"sqlite:///{data_dir / 'meingym.db'}"
    return Settings(
        data_dir=data_dir,
        broker_url=broker_url,
        database_url=_scheme_ok("DATABASE_URL", database_url, DATABASE_SCHEMES),
        secret_key=_secret_key(env),
        timezone=_timezone(env),
        nightly_at=_nightly_at(env),
        scheduler_enabled=env_bool(env, "MEINGYM_SCHEDULER", True),
        job_attempts=env_int(env, "MEINGYM_JOB_ATTEMPTS", 3, 1, 100),
        retry_delay=env_float(env, "MEINGYM_RETRY_DELAY", 5.0, 0, 86400),
        retry_backoff=env_float(env, "MEINGYM_RETRY_BACKOFF", 3.0, 1, 100),
        result_ttl=env_int(env, "MEINGYM_RESULT_TTL", 24 * 3600, 1, 365 * 86400),
        failed_result_ttl=env_int(env, "MEINGYM_FAILED_RESULT_TTL", 7 * 86400, 1, 365 * 86400),
        keep_complete_count=env_int(env, "MEINGYM_KEEP_COMPLETE_COUNT", 100_000, 0, 1_000_000_000),
        update_batch_size=env_int(
            env, "MEINGYM_UPDATE_BATCH_SIZE", default_update_batch_size(database_url), 1, 10_000_000
        ),
        update_lock_ttl=env_int(env, "MEINGYM_UPDATE_LOCK_TTL", 6 * 3600, 60, 7 * 86400),
        max_schedule_ahead=env_int(env, "MEINGYM_MAX_SCHEDULE_AHEAD", 30 * 86400, 60, 3650 * 86400),
        reliable_fetch=env_bool(env, "MEINGYM_RELIABLE_FETCH", True),
        registry_batching=env_bool(env, "MEINGYM_REGISTRY_BATCHING", True),
        heartbeat_timeout=env_int(env, "MEINGYM_HEARTBEAT_TIMEOUT", 30, 2, 3600),
        max_recoveries=env_int(env, "MEINGYM_MAX_RECOVERIES", 3, 0, 100),
        workers=env_int(env, "MEINGYM_WORKERS", 2, 1, 256),
        worker_type=worker_type,
        smtp_host=env_value(env, "SMTP_HOST"),
        smtp_port=env_int(env, "SMTP_PORT", 25, 1, 65535),
        smtp_user=env_value(env, "SMTP_USER"),
        smtp_password=env_value(env, "SMTP_PASSWORD"),
        smtp_starttls=env_bool(env, "SMTP_STARTTLS", False),
        smtp_timeout=env_float(env, "SMTP_TIMEOUT", 10.0, 0.1, 600),
        mail_from=env_value(env, "MEINGYM_MAIL_FROM") or "MeinGym <no-reply@meingym.example>",
        audit_retention_days=env_int(env, "MEINGYM_AUDIT_RETENTION_DAYS", 90, 1, 3650),
        redis_wait_replicas=wait_replicas,
        redis_wait_timeout_ms=wait_timeout_ms,
    )
