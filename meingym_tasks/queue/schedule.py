"""When the nightly job is due, in local time, across daylight-saving changes.

Huey's crontab speaks UTC or the server's local time; MeinGym's night is in
the gym's zone (``MEINGYM_TIMEZONE``). For every local date there is exactly
one due instant: the configured wall-clock time on that date, read with
``fold=0``. On the night the clocks go back the wall time may occur twice and
the first one counts; on the night they go forward a wall time inside the gap
(02:30 in Berlin) does not exist and zoneinfo maps it to the instant one gap
later (03:30 summer time), so that night still gets its run.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

#: A consumer that was down at the due minute still starts the run within this window.
CATCH_UP = timedelta(hours=1)


def due_instant(local_date: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant (naive, as huey uses) of the nightly run for ``local_date``."""
    local = datetime.combine(local_date, at).replace(tzinfo=zone, fold=0)
    return local.astimezone(UTC).replace(tzinfo=None)


def nightly_due(now_utc: datetime, at: time, zone: ZoneInfo) -> date | None:
    """The local date whose nightly run is due at ``now_utc`` (naive UTC), else None.

    Due from the due instant until :data:`CATCH_UP` after it. The caller claims
    the returned date once in the broker, so the run starts once per date even
    though several minutes (and several consumers) see it due.
    """
    local_today = now_utc.replace(tzinfo=UTC).astimezone(zone).date()
    for local_date in (local_today, local_today - timedelta(days=1)):
        start = due_instant(local_date, at, zone)
        if start <= now_utc < start + CATCH_UP:
            return local_date
    return None
