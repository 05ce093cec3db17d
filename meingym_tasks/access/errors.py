"""What the access layer refuses: unknown or duplicate tokens, bad names and scopes, unknown sessions."""

from __future__ import annotations

from meingym_tasks.exceptions import MeinGymTasksError


class AccessError(MeinGymTasksError):
    """A token or session request that cannot be done as asked; the message says why."""


class InvalidTokenRequest(AccessError, ValueError):
    """A token name or scope that is not allowed (the message names what is)."""


class TokenExists(AccessError):
    """A token of that name exists already: revoke it first."""


class UnknownToken(AccessError, LookupError):
    """No token of that name."""


class UnknownSession(AccessError, LookupError):
    """No open session with that id."""
