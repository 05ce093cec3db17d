"""Who may do what, and who did what: named tokens with scopes, sessions, throttling, the audit trail.

Layer 3: it stores its rows in the project database (``db``) and knows
nothing of queues, jobs or HTTP; the interfaces (``web``, ``cli``) ask it who
is calling and tell it what was done.

* :mod:`~meingym_tasks.access.tokens`: named tokens, each with one scope
  (``read`` < ``operate`` < ``admin``), stored as SHA-256 digests.
* :mod:`~meingym_tasks.access.sessions`: a row per dashboard login, ended by
  logout, by revoking its token, from the sessions list, or by its idle and
  absolute timeouts.
* :mod:`~meingym_tasks.access.throttle`: failed authentication per client
  address and per token name, with locks that grow exponentially; the state
  is in the database, so every web worker sees the same.
* :mod:`~meingym_tasks.access.audit`: every state-changing action with its
  actor, client address, time, target and outcome.
"""

from __future__ import annotations

from datetime import datetime

from meingym_tasks.access import audit, sessions, throttle
from meingym_tasks.settings import Settings

__all__ = ["prune"]


def prune(settings: Settings, now: datetime | None = None) -> int:
    """Retention: audit entries past ``MEINGYM_AUDIT_RETENTION_DAYS``, expired sessions, forgotten failures.

    Called by the periodic housekeeping job with the registry's own retention.
    """
    return audit.prune(settings, now) + sessions.prune(now) + throttle.prune(now)
