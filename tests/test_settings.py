"""Settings come from the environment (and an env file) and bad values fail with one clear line."""

from __future__ import annotations

import os
import stat
from datetime import time
from pathlib import Path

import pytest

from meingym_tasks.exceptions import ConfigurationError
from meingym_tasks.queue.keys import load_or_create_secret
from meingym_tasks.settings import Settings, parse_sentinel_url


def test_defaults_run_embedded_with_no_server(tmp_path: Path) -> None:
    settings = Settings.from_env({"MEINGYM_DATA_DIR": str(tmp_path)})

    assert settings.broker == "sqlite"
    assert settings.broker_url == f"sqlite:///{tmp_path / 'queue.db'}"
    assert settings.database_url == f"sqlite:///{tmp_path / 'meingym.db'}"
    assert settings.timezone == "Europe/Berlin"
    assert settings.nightly_at == time(3, 0)
    assert (settings.job_attempts, settings.retries) == (3, 2)
    assert (settings.retry_delay, settings.retry_backoff) == (5.0, 3.0)


def test_redis_url_selects_redis(tmp_path: Path) -> None:
    settings = Settings.from_env({"MEINGYM_DATA_DIR": str(tmp_path), "REDIS_URL": "redis://cache:6380/2"})

    assert settings.broker == "redis"
    assert settings.broker_url == "redis://cache:6380/2"


@pytest.mark.parametrize(
    ("env", "batch_size"),
    [
        ({}, 200_000),  # the embedded SQLite database: one writer, fewer and larger batches
        ({"DATABASE_URL": "postgresql://postgres@127.0.0.1/meingym"}, 50_000),  # batches side by side
        ({"MEINGYM_UPDATE_BATCH_SIZE": "1000"}, 1_000),
        ({"DATABASE_URL": "postgresql://postgres@127.0.0.1/meingym", "MEINGYM_UPDATE_BATCH_SIZE": "7"}, 7),
    ],
)
def test_the_update_batch_size_suits_the_database_unless_set(
    tmp_path: Path, env: dict[str, str], batch_size: int
) -> None:
    assert Settings.from_env({"MEINGYM_DATA_DIR": str(tmp_path), **env}).update_batch_size == batch_size


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({"REDIS_HOST": "queue.internal"}, "redis://queue.internal:6379/0"),
        ({"REDIS_PORT": "6390"}, "redis://localhost:6390/0"),
        ({"REDIS_HOST": "10.0.0.5", "REDIS_PORT": "7000"}, "redis://10.0.0.5:7000/0"),
    ],
)
def test_old_redis_host_and_port_names_still_work(tmp_path: Path, env: dict[str, str], url: str) -> None:
    settings = Settings.from_env({"MEINGYM_DATA_DIR": str(tmp_path), **env})

    assert settings.broker == "redis"
    assert settings.broker_url == url


def test_broker_url_wins_over_the_redis_names(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "MEINGYM_DATA_DIR": str(tmp_path),
            "MEINGYM_BROKER_URL": "postgresql://postgres@127.0.0.1/queue",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
        }
    )

    assert settings.broker == "postgres"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"MEINGYM_BROKER_URL": "amqp://guest@localhost//"}, ["MEINGYM_BROKER_URL", "redis://", "sqlite://"]),
        ({"REDIS_PORT": "http"}, ["REDIS_PORT", "'http'", "whole number from 1 to 65535"]),
        ({"REDIS_PORT": "70000"}, ["REDIS_PORT", "70000"]),
        ({"MEINGYM_TIMEZONE": "Mars/Olympus"}, ["MEINGYM_TIMEZONE", "Mars/Olympus", "IANA"]),
        ({"MEINGYM_NIGHTLY_AT": "25:00"}, ["MEINGYM_NIGHTLY_AT", "HH:MM"]),
        ({"MEINGYM_JOB_ATTEMPTS": "0"}, ["MEINGYM_JOB_ATTEMPTS", "from 1 to 100"]),
        ({"MEINGYM_SCHEDULER": "maybe"}, ["MEINGYM_SCHEDULER", "true"]),
        ({"DATABASE_URL": "mysql://root@localhost/gym"}, ["DATABASE_URL", "postgresql://"]),
        ({"MEINGYM_WORKER_TYPE": "greenlet"}, ["MEINGYM_WORKER_TYPE", "thread or process"]),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_what_is_allowed(
    tmp_path: Path, env: dict[str, str], names: list[str]
) -> None:
    with pytest.raises(ConfigurationError) as error:
        Settings.from_env({"MEINGYM_DATA_DIR": str(tmp_path), **env})

    message = str(error.value)
    assert "\n" not in message
    for name in names:
        assert name in message


def test_an_unwritable_data_dir_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    with pytest.raises(ConfigurationError, match="MEINGYM_DATA_DIR"):
        Settings.from_env({"MEINGYM_DATA_DIR": str(blocker / "data")})


def test_env_file_provides_defaults_the_environment_overrides(tmp_path: Path) -> None:
    config = tmp_path / "meingym.env"
    config.write_text(
        "# comment\n"
        f"MEINGYM_DATA_DIR={tmp_path}\n"
        "export MEINGYM_TIMEZONE='UTC'\n"
        'MEINGYM_NIGHTLY_AT="04:30"\n'
        "MEINGYM_JOB_ATTEMPTS=5\n"
    )

    settings = Settings.from_env({"MEINGYM_CONFIG": str(config), "MEINGYM_JOB_ATTEMPTS": "4"})

    assert settings.timezone == "UTC"
    assert settings.nightly_at == time(4, 30)
    assert settings.job_attempts == 4


def test_a_missing_env_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="MEINGYM_CONFIG"):
        Settings.from_env({"MEINGYM_CONFIG": str(tmp_path / "missing.env")})


def test_masked_settings_hide_secrets(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "MEINGYM_DATA_DIR": str(tmp_path),
            "MEINGYM_SECRET_KEY": "s3cret-s3cret",
            "REDIS_URL": "redis://:hunter2@cache:6379/0",
        }
    )

    shown = settings.masked()

    assert shown["secret_key"] == "***"
    assert shown["broker_url"] == "redis://:***@cache:6379/0"
    assert "hunter2" not in str(shown) and "s3cret" not in str(shown)


@pytest.mark.parametrize("key", ["x", "1234567"])
def test_a_short_secret_key_is_refused_naming_its_length_not_its_value(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        Settings.from_env({"MEINGYM_DATA_DIR": str(tmp_path), "MEINGYM_SECRET_KEY": key})

    expected = f"MEINGYM_SECRET_KEY ({len(key)} characters) is not allowed; expected at least 8"
    assert str(error.value).startswith(expected)
    assert f"'{key}'" not in str(error.value)
    assert Settings.from_env({"MEINGYM_DATA_DIR": str(tmp_path), "MEINGYM_SECRET_KEY": "12345678"}).secret_key


def test_the_generated_secret_and_its_new_directory_are_private(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "secret.key"

    load_or_create_secret(path)

    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_loading_settings_creates_nothing(tmp_path: Path) -> None:
    Settings.from_env({"MEINGYM_DATA_DIR": str(tmp_path / "fresh")})

    assert not (tmp_path / "fresh").exists()


def test_generated_secret_is_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secret.key"

    first = load_or_create_secret(path)
    second = load_or_create_secret(path)

    assert first == second and len(first) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


# --------------------------------------------------------------------------- Redis Sentinel


def test_a_sentinel_url_selects_redis_and_names_every_sentinel(tmp_path: Path) -> None:
    url = "redis+sentinel://:hunter2@10.0.0.1:26379,10.0.0.2:26380,redis-c/mymaster/2"
    settings = Settings.from_env({"MEINGYM_DATA_DIR": str(tmp_path), "MEINGYM_BROKER_URL": url})

    target = parse_sentinel_url(settings.broker_url)

    assert settings.broker == "redis"
    assert target.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("redis-c", 26379))
    assert (target.service, target.db, target.tls, target.sentinel_password) == ("mymaster", 2, False, None)
    assert target.redis_url == "redis://:hunter2@10.0.0.1:26379/2"


def test_a_tls_sentinel_url_keeps_the_options_of_redis_urls_and_masks_both_passwords(tmp_path: Path) -> None:
    url = (
        "rediss+sentinel://app:hunter2@[fd00::1]:26379,10.0.0.2:26379/mymaster"
        "?ssl_ca_certs=/etc/meingym-tasks/ca.pem&sentinel_password=s3ntinel"
    )
    settings = Settings.from_env({"MEINGYM_DATA_DIR": str(tmp_path), "MEINGYM_BROKER_URL": url})

    target = parse_sentinel_url(settings.broker_url)
    shown = settings.masked()["broker_url"]

    assert target.sentinels == (("fd00::1", 26379), ("10.0.0.2", 26379))
    assert (target.db, target.tls, target.sentinel_password) == (0, True, "s3ntinel")
    assert target.redis_url == "rediss://app:hunter2@[fd00::1]:26379/0?ssl_ca_certs=%2Fetc%2Fmeingym-tasks%2Fca.pem"
    assert "hunter2" not in shown and "s3ntinel" not in shown
    assert shown.startswith("rediss+sentinel://app:***@[fd00::1]:26379,10.0.0.2:26379/mymaster?")
    assert "sentinel_password=***" in shown


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel:///mymaster/0",  # no sentinel
        "redis+sentinel://10.0.0.1:26379/",  # no service name
        "redis+sentinel://10.0.0.1:99999/mymaster",  # no such port
        "redis+sentinel://10.0.0.1:26379,/mymaster",  # an empty host
        "redis+sentinel://10.0.0.1:26379/mymaster/zero",  # the db is a number
        "redis+sentinel://:hunter2@10.0.0.1:26379/mymaster/0/1",
    ],
)
def test_a_malformed_sentinel_url_is_one_line_naming_the_variable_and_the_form(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        Settings.from_env({"MEINGYM_DATA_DIR": str(tmp_path), "MEINGYM_BROKER_URL": url})

    message = str(error.value)
    assert "\n" not in message and "hunter2" not in message
    assert message.startswith("MEINGYM_BROKER_URL=") and "redis+sentinel://[[user]:password@]host:port" in message


def test_waiting_for_replicas_is_off_by_default_and_bounded(tmp_path: Path) -> None:
    redis_env = {"MEINGYM_DATA_DIR": str(tmp_path), "MEINGYM_BROKER_URL": "redis://127.0.0.1:6379/0"}

    default = Settings.from_env(redis_env)
    waiting = Settings.from_env(
        {**redis_env, "MEINGYM_REDIS_WAIT_REPLICAS": "1", "MEINGYM_REDIS_WAIT_TIMEOUT_MS": "250"}
    )

    assert (default.redis_wait_replicas, default.redis_wait_timeout_ms) == (0, 1000)
    assert (waiting.redis_wait_replicas, waiting.redis_wait_timeout_ms) == (1, 250)
    with pytest.raises(ConfigurationError, match="MEINGYM_REDIS_WAIT_TIMEOUT_MS='0' is not allowed"):
        Settings.from_env({**redis_env, "MEINGYM_REDIS_WAIT_TIMEOUT_MS": "0"})  # 0 would make Redis wait for ever
    with pytest.raises(ConfigurationError, match="MEINGYM_REDIS_WAIT_REPLICAS='1' is not allowed; expected 0 unless"):
        Settings.from_env({"MEINGYM_DATA_DIR": str(tmp_path), "MEINGYM_REDIS_WAIT_REPLICAS": "1"})  # SQLite
