"""The example configuration documents every setting, and its defaults load."""

from __future__ import annotations

import re
from pathlib import Path

from meingym_tasks import settings as settings_module
from meingym_tasks.settings import Settings, read_env_file

EXAMPLE = Path(__file__).parent.parent / "config" / "meingym-tasks.env.example"


def test_every_variable_the_code_reads_is_documented() -> None:
    source = Path(settings_module.__file__).read_text()
    read = set(re.findall(r'"((?:MEINGYM|REDIS|SMTP|DATABASE)_[A-Z_]+)"', source)) - {"MEINGYM_CONFIG"}
    documented = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", EXAMPLE.read_text(), re.MULTILINE))

    assert read <= documented, sorted(read - documented)


def test_the_example_uncommented_gives_the_defaults(tmp_path: Path) -> None:
    lines = [line.removeprefix("#") for line in EXAMPLE.read_text().splitlines() if re.match(r"#[A-Z]", line)]
    lines = [line for line in lines if not line.startswith(("REDIS_", "MEINGYM_BROKER_URL", "DATABASE_URL"))]
    config = tmp_path / "example.env"
    config.write_text("\n".join(lines).replace("MEINGYM_DATA_DIR=var", f"MEINGYM_DATA_DIR={tmp_path}"))

    from_file = Settings.from_env({"MEINGYM_CONFIG": str(config)})
    defaults = Settings.from_env({"MEINGYM_DATA_DIR": str(tmp_path)})

    assert from_file == defaults
    assert read_env_file(config)["MEINGYM_TIMEZONE"] == "Europe/Berlin"
