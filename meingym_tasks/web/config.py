"""Settings of the web service only, read like :class:`meingym_tasks.settings.Settings`.

Kept apart from the project settings because nothing but ``meingym-tasks web``
(and a host application mounting :func:`meingym_tasks.web.create_app`) reads
them. The same rules hold: one frozen dataclass, parsed once from the
environment over the optional ``MEINGYM_CONFIG`` file, and a bad value raises
one :class:`ConfigurationError` naming the variable, the value and what is
allowed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from meingym_tasks.exceptions import ConfigurationError
from meingym_tasks.settings import read_env_file

#: A token shorter than this is guessable; a generated one has 43 characters.
MIN_TOKEN_LENGTH = 16


@dataclasses.dataclass(frozen=True)
class WebSettings:
    """What the API and the dashboard can be configured with (see config/meingym-tasks.env.example)."""

    #: ``MEINGYM_ADMIN_TOKEN``; None: generated once into ``<data dir>/admin.token``.
    admin_token: str | None = None
    #: ``MEINGYM_WEB_MAX_BODY``: largest request body accepted, in bytes.
    max_body_bytes: int = 64 * 1024
    #: ``MEINGYM_WEB_SESSION_TTL``: seconds a dashboard login lasts.
    session_ttl: int = 12 * 3600

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WebSettings:
        """Read the web settings from ``environ`` (default: ``os.environ``) and ``MEINGYM_CONFIG``."""
        env = dict(os.environ if environ is None else environ)
        config_file = env.get("MEINGYM_CONFIG")
        if config_file:
            env = {**read_env_file(Path(config_file)), **env}
        token = _get(env, "MEINGYM_ADMIN_TOKEN")
        if token is not None:
            check_token("MEINGYM_ADMIN_TOKEN", token)
        return cls(
            admin_token=token,
            max_body_bytes=_int(env, "MEINGYM_WEB_MAX_BODY", 64 * 1024, 1024, 16 * 1024 * 1024),
            session_ttl=_int(env, "MEINGYM_WEB_SESSION_TTL", 12 * 3600, 60, 30 * 86400),
        )


def check_token(name: str, token: str) -> str:
    """A token must be long and printable (it travels in a header and a form field)."""
    if len(token) < MIN_TOKEN_LENGTH or not token.isprintable() or any(c.isspace() for c in token):
        raise ConfigurationError(  # the value itself is a secret: say only how long it is
            f"{name} ({len(token)} characters) is not allowed; expected at least {MIN_TOKEN_LENGTH} "
            "printable characters without spaces, such as the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return token


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value.strip() if value is not None and value.strip() != "" else None


def _int(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if not minimum <= value <= maximum:
        raise ConfigurationError(f"{name}={raw!r} is not allowed; expected a whole number from {minimum} to {maximum}")
    return value
