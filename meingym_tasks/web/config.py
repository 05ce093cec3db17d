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
from urllib.parse import urlsplit

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
    #: ``MEINGYM_WEB_SESSION_TTL``: seconds a dashboard login lasts at most.
    session_ttl: int = 12 * 3600
    #: ``MEINGYM_WEB_SESSION_IDLE``: seconds without a request after which a dashboard login ends.
    session_idle: int = 30 * 60
    #: ``MEINGYM_PUBLIC_URL``: the address clients reach the service at; the API's URLs are built from it.
    public_url: str = "http://127.0.0.1:8000"
    #: ``MEINGYM_AUTH_MAX_FAILURES``: failed attempts an address may make before it is locked out.
    auth_max_failures: int = 5
    #: ``MEINGYM_AUTH_LOCKOUT_MAX``: the longest lockout, in seconds (they double from 1 s).
    auth_lockout_max: int = 900

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WebSettings:
        """Read the web settings from ``environ`` (default: ``os.environ``) and ``MEINGYM_CONFIG``."""
        env = read_environment(environ)
        token = env_value(env, "MEINGYM_ADMIN_TOKEN")
        if token is not None:
            check_token("MEINGYM_ADMIN_TOKEN", token)
        ttl = env_int(env, "MEINGYM_WEB_SESSION_TTL", 12 * 3600, 60, 30 * 86400)
        public = env_value(env, "MEINGYM_PUBLIC_URL")
        if public is None:
            port = env_int(env, "MEINGYM_WEB_PORT", 8000, 1, 65535)
            public = base_url(env_value(env, "MEINGYM_WEB_HOST") or "127.0.0.1", port)
        return cls(
            admin_token=token,
            max_body_bytes=env_int(env, "MEINGYM_WEB_MAX_BODY", 64 * 1024, 1024, 16 * 1024 * 1024),
            session_ttl=ttl,
            session_idle=env_int(env, "MEINGYM_WEB_SESSION_IDLE", min(30 * 60, ttl), 60, ttl),
            public_url=check_public_url("MEINGYM_PUBLIC_URL", public),
            auth_max_failures=env_int(env, "MEINGYM_AUTH_MAX_FAILURES", 5, 1, 1000),
            auth_lockout_max=env_int(env, "MEINGYM_AUTH_LOCKOUT_MAX", 900, 1, 86400),
        )


def base_url(host: str, port: int) -> str:
    """The URL to open for a server bound to ``host``: a wildcard address is reached on loopback."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def check_public_url(name: str, url: str) -> str:
    """An http(s) URL with a host and nothing after the path; returned without a trailing slash."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username
        or any(c.isspace() for c in url)
    ):
        raise ConfigurationError(
            f"{name}={url!r} is not allowed; expected the http:// or https:// address clients reach the web "
            "service at, such as https://jobs.meingym.example"
        )
    return url.rstrip("/")


def check_token(name: str, token: str) -> str:
    """A token must be long and printable (it travels in a header and a form field)."""
    if len(token) < MIN_TOKEN_LENGTH or not token.isprintable() or any(c.isspace() for c in token):
        raise ConfigurationError(  # the value itself is a secret: say only how long it is
            f"{name} ({len(token)} characters) is not allowed; expected at least {MIN_TOKEN_LENGTH} "
            "printable characters without spaces, such as the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return token
