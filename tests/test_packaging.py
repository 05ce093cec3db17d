"""The wheel ships the migrations, templates and static files, and building it warns about none of them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_wheel_holds_every_data_file_and_the_build_prints_no_package_warning(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    output = build.stdout + build.stderr

    names = zipfile.ZipFile(next(tmp_path.glob("meingym_tasks-*.whl"))).namelist()

    assert "would be ignored" not in output
    assert "meingym_tasks/db/migrations/0001_initial.py" in names
    assert "meingym_tasks/web/templates/meingym_tasks/jobs.html" in names
    assert "meingym_tasks/web/static/dashboard.js" in names
    assert "meingym_tasks/py.typed" in names
