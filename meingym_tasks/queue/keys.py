"""Secrets that a fresh machine generates once and production sets itself."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from meingym_tasks.settings import Settings


def load_or_create_secret(path: Path) -> str:
    """Read the secret stored at ``path``, creating it (mode 0600, in a 0700 directory if it makes one) on first use.

    ``O_EXCL`` makes concurrent first starts agree: one process writes the
    key, every other one reads it.
    """
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(100):  # the creator may not have written it yet
            value = path.read_text(encoding="ascii").strip()
            if value:
                return value
            os.sched_yield()
        raise RuntimeError(f"{path} exists but is empty; delete it to generate a new secret") from None
    value = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    return value


def queue_secret(settings: Settings) -> str:
    """The key that signs task messages: ``MEINGYM_SECRET_KEY`` or ``<data dir>/secret.key``."""
    return settings.secret_key or load_or_create_secret(settings.data_dir / "secret.key")
