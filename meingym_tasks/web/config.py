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
from collections.abc import Mapping

from meingym_tasks.exceptions import ConfigurationError
from meingym_tasks.settings import env_int, env_value, read_environment

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
        env = read_environment(environ)
        token = env_value(env, "MEINGYM_ADMIN_TOKEN")
        if token is not None:
            check_token("MEINGYM_ADMIN_TOKEN", token)
        return cls(
            admin_token=token,
            max_body_bytes=env_int(env, "MEINGYM_WEB_MAX_BODY", 64 * 1024, 1024, 16 * 1024 * 1024),
            session_ttl=env_int(env, "MEINGYM_WEB_SESSION_TTL", 12 * 3600, 60, 30 * 86400),
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
