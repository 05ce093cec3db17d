"""Plain functions that turn registry data into what the templates show.

Everything returned is text or numbers; the templates escape all of it, so a
job whose arguments or error hold HTML shows that HTML as text.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from meingym_tasks.registry.models import CANCELLABLE, RETRYABLE, RUNNING

# The chart's geometry, in SVG user units; static/dashboard.js draws updates with the same numbers.
CHART_WIDTH = 600
CHART_HEIGHT = 150
CHART_LEFT = 34
CHART_RIGHT = 4
CHART_TOP = 8
CHART_BOTTOM = 20


def parse_iso(value: str | None) -> datetime | None:
    return None if not value else datetime.fromisoformat(value)


def relative(value: str | None, now: datetime | None = None) -> str:
    """``value`` (ISO time) relative to ``now``: "just now", "5 min ago", "in 2 h"."""
    at = parse_iso(value)
    if at is None:
        return ""
    now = now or datetime.now(UTC)
    seconds = (now - at).total_seconds()
    ahead = seconds < 0
    seconds = abs(seconds)
    if seconds < 10:
        return "just now"
    if seconds < 60:
        amount = f"{int(seconds)} s"
    elif seconds < 3600:
        amount = f"{int(seconds // 60)} min"
    elif seconds < 86400:
        amount = f"{int(seconds // 3600)} h"
    else:
        amount = f"{int(seconds // 86400)} d"
    return f"in {amount}" if ahead else f"{amount} ago"


def absolute(value: str | None) -> str:
    at = parse_iso(value)
    return "" if at is None else at.strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(job: dict[str, Any], now: datetime | None = None) -> str:
    """How long the job ran (its last attempt), or has been running."""
    started = parse_iso(job.get("started_at"))
    if started is None:
        return ""
    finished = parse_iso(job.get("finished_at"))
    if finished is None:
        if job.get("state") != RUNNING:
            return ""
        finished = now or datetime.now(UTC)
    return format_seconds((finished - started).total_seconds())


def format_seconds(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def arguments_summary(arguments: dict[str, Any] | None) -> str:
    """A short line for the job table: ``user 7`` for the user jobs, the arguments otherwise."""
    if not arguments:
        return ""
    args = list(arguments.get("args") or [])
    kwargs = {k: v for k, v in (arguments.get("kwargs") or {}).items() if k != "parent_id"}
    if len(args) == 1 and not kwargs and isinstance(args[0], int):
        return f"user {args[0]}"
    parts = [json.dumps(a, ensure_ascii=False, default=str) for a in args]
    parts += [f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in sorted(kwargs.items())]
    text = ", ".join(parts)
    return text if len(text) <= 80 else text[:77] + "..."


def can_retry(job: dict[str, Any]) -> bool:
    return job["state"] in RETRYABLE


def can_cancel(job: dict[str, Any]) -> bool:
    return job["state"] in CANCELLABLE or (job["state"] == RUNNING and not job.get("cancel_requested"))


def timeline(job: dict[str, Any]) -> list[dict[str, str]]:
    """What happened to the job, oldest first: enqueued, each failed attempt, started, the end."""
    events: list[tuple[str, str]] = [(job["enqueued_at"], "enqueued")]
    if job.get("scheduled_for") and job["scheduled_for"] != job["enqueued_at"]:
        events.append((job["scheduled_for"], "scheduled to run"))
    for attempt in job.get("failed_attempts") or []:
        events.append((attempt["failed_at"], f"attempt {attempt['attempt']} failed: {attempt['error']}"))
    if job.get("next_attempt_at"):
        events.append((job["next_attempt_at"], "next attempt due"))
    if job.get("started_at"):
        events.append((job["started_at"], f"attempt {job['attempts']} started on {job.get('consumer') or '?'}"))
    if job.get("finished_at"):
        events.append((job["finished_at"], job["state"]))
    events = [(at, what) for at, what in events if at]
    events.sort(key=lambda item: item[0])
    return [{"at": at, "what": what} for at, what in events]


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is at least ``value`` (the chart's top)."""
    top = 1
    while top < value:
        top = top * 5 // 2 if str(top)[0] == "2" else top * 2
    return top


def chart(series: list[dict[str, Any]]) -> dict[str, Any]:
    """Bars for the throughput chart: completed (bottom) and failed (stacked on top) per minute."""
    plot_width = CHART_WIDTH - CHART_LEFT - CHART_RIGHT
    plot_height = CHART_HEIGHT - CHART_TOP - CHART_BOTTOM
    peak = max((p["complete"] + p["failed"] for p in series), default=0)
    top = nice_ceiling(max(peak, 1))
    slot = plot_width / max(len(series), 1)
    bar = max(slot - 1.5, 1.0)
    bars = []
    for index, point in enumerate(series):
        x = CHART_LEFT + index * slot
        complete_h = plot_height * point["complete"] / top
        failed_h = plot_height * point["failed"] / top
        base = CHART_TOP + plot_height
        bars.append(
            {
                "x": round(x, 2),
                "width": round(bar, 2),
                "complete_y": round(base - complete_h, 2),
                "complete_h": round(complete_h, 2),
                "failed_y": round(base - complete_h - failed_h, 2),
                "failed_h": round(failed_h, 2),
                "label": f"{point['minute'][11:16]} UTC: {point['complete']} completed, {point['failed']} failed",
            }
        )
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "left": CHART_LEFT,
        "right": CHART_WIDTH - CHART_RIGHT,
        "top_y": CHART_TOP,
        "mid_y": CHART_TOP + plot_height / 2,
        "base_y": CHART_TOP + plot_height,
        "label_y": CHART_HEIGHT - 5,
        "top": top,
        "mid": top / 2,
        "bars": bars,
        "completed": sum(p["complete"] for p in series),
        "failed": sum(p["failed"] for p in series),
    }
