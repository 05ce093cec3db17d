"""The one clock: naive UTC, as the database stores times and huey compares them.

Asked through ``datetime.now`` each time, so freezegun moves it for everyone
(huey's own ``utcnow`` is bound at import, where freezegun cannot reach it).
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time as naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)
