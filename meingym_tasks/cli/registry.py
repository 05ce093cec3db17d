"""CLI commands over the job registry: status, jobs, retry, cancel, purge, queues.

Retry, cancel and purge are recorded in the audit trail with the operator as
``user@host`` (``meingym-tasks audit``), refusals and failures included.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from meingym_tasks.exceptions import BrokerUnavailable, InvalidJobRequest, JobStateConflict, UnknownJob
from meingym_tasks.names import QUEUE_ALIASES, QUEUES
from meingym_tasks.registry.models import FINISHED, INTERRUPTED, STATES

EXIT_USAGE = 2
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@contextmanager
def user_errors(param_hint: str | None = None) -> Iterator[None]:
    """Turn the library's user errors into click errors (exit 2), an outage into exit 1."""
    try:
        yield
    except (InvalidJobRequest, UnknownJob, JobStateConflict) as exc:
        raise click.BadParameter(str(exc), param_hint=param_hint) from None
    except BrokerUnavailable as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)


def bound(ctx: click.Context) -> None:
    ctx.find_root().obj.bind()


#: Errors that mean "the rules turned this down": audited as refused, not failed.
REFUSALS = (InvalidJobRequest, UnknownJob, JobStateConflict)


def audited(action: str, target: str | None) -> Any:
    """Record the action done in the block in the audit trail, as the operator at this shell."""
    from meingym_tasks.access import audit

    return audit.recorded(audit.cli_actor(), action, target, refusals=REFUSALS)


class Duration(click.ParamType):
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        match = re.fullmatch(r"(\d+)\s*([smhdw])", str(value).strip())
        if not match:
            self.fail(f"{value!r} is not a duration; expected a number and a unit s, m, h, d or w, like 30m or 1d")
        return timedelta(seconds=int(match.group(1)) * DURATION_UNITS[match.group(2)])


def queue_name(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    return QUEUE_ALIASES.get(value, value) if value else None


def ago(value: str | None, now: datetime | None = None) -> str:
    """``2026-11-29T10:00:00+00:00`` as ``3m ago`` / ``in 5s``."""
    if not value:
        return "-"
    seconds = ((now or datetime.now(UTC)) - datetime.fromisoformat(value)).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            text = f"{int(seconds // size)}{unit}"
            break
    else:
        text = f"{int(seconds)}s"
    return f"in {text}" if future else f"{text} ago"


def progress_text(job: dict[str, Any]) -> str:
    progress = job["progress"]
    if progress["total"] is None:
        return "-"
    return f"{progress['done'] or 0}/{progress['total']} ({progress['percent'] or 0:.0f}%)"


def show_job(job: dict[str, Any], echo: Callable[[str], None] = click.echo) -> None:
    """The human view of one record, tracebacks included."""
    echo(f"job {job['job_id']}  {job['name']} on {job['queue']}")
    echo(f"  state:     {job['state']}" + ("  (cancel requested)" if job["cancel_requested"] else ""))
    echo(f"  attempts:  {job['attempts']} of {job['max_attempts']}")
    if job["recoveries"]:
        echo(f"  recovered: {job['recoveries']} time(s) from a consumer that died or lost its lease")
    echo(f"  arguments: {json.dumps(job['arguments'])}")
    for label, key in (
        ("enqueued", "enqueued_at"),
        ("scheduled", "scheduled_for"),
        ("started", "started_at"),
        ("finished", "finished_at"),
        ("next try", "next_attempt_at"),
    ):
        if job[key]:
            echo(f"  {label + ':':<10} {job[key]} ({ago(job[key])})")
    if job["consumer"]:
        echo(f"  consumer:  {job['consumer']}")
    if job["progress"]["total"] is not None:
        message = f"  {job['progress']['message']}" if job["progress"]["message"] else ""
        echo(f"  progress:  {progress_text(job)}{message}")
    if job["result"] is not None:
        echo(f"  result:    {json.dumps(job['result'])}")
    if job["error"]:
        echo(f"  error:     {job['error']}")
    for attempt in job.get("failed_attempts", []):
        echo(f"  attempt {attempt['attempt']} failed {attempt['failed_at']} on {attempt['consumer']}:")
        for line in attempt["traceback"].rstrip().splitlines():
            echo(f"    {line}")


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
@click.pass_context
def status(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Show everything known about JOB_ID: state, attempts, times, progress, result or errors.

    \b
    Examples:
      meingym-tasks status 3f2b8c1e-5d6a-4c1b-9a7d-0e1f2a3b4c5d
      meingym-tasks status 3f2b8c1e-5d6a-4c1b-9a7d-0e1f2a3b4c5d --json | jq .failed_attempts
    """
    bound(ctx)
    from meingym_tasks.jobs import get_job

    with user_errors("JOB_ID"):
        job = get_job(job_id)
    print_json(job) if as_json else show_job(job)


@click.command()
@click.option("--state", type=click.Choice(STATES), help="Only jobs in this state.")
@click.option("--queue", type=click.Choice([*QUEUE_ALIASES, *QUEUES]), callback=queue_name, help="Only this queue.")
@click.option("--name", help="Only jobs of this name, e.g. update-all-actions.")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--before", help="The 'next' cursor of the previous page.")
@click.option("--all", "children", is_flag=True, help="Also list the batches of update-all-actions runs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with the next cursor).")
@click.pass_context
def jobs(
    ctx: click.Context,
    state: str | None,
    queue: str | None,
    name: str | None,
    limit: int,
    before: str | None,
    children: bool,
    as_json: bool,
) -> None:
    """List jobs, newest first.

    \b
    Examples:
      meingym-tasks jobs
      meingym-tasks jobs --state failed --queue users
      meingym-tasks jobs --name update-all-actions --limit 5 --json
    """
    bound(ctx)
    from meingym_tasks.jobs import list_jobs

    with user_errors():
        page = list_jobs(state=state, queue=queue, name=name, limit=limit, before=before, children=children)
    if as_json:
        print_json(page)
        return
    rows = [
        (j["job_id"], j["queue"], j["name"], j["state"], f"{j['attempts']}/{j['max_attempts']}",
         ago(j["enqueued_at"]), progress_text(j))
        for j in page["jobs"]
    ]  # fmt: skip
    header = ("JOB ID", "QUEUE", "NAME", "STATE", "TRIES", "ENQUEUED", "PROGRESS")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if not rows:
        click.echo("(no jobs)")
    if page["next"]:
        click.echo(f"more: add --before {page['next']}")


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def retry(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Run a failed, revoked, expired or interrupted job again (same id, a new attempt).

    \b
    Example:
      meingym-tasks retry 3f2b8c1e-5d6a-4c1b-9a7d-0e1f2a3b4c5d
    """
    bound(ctx)
    from meingym_tasks.jobs import retry_job

    with user_errors("JOB_ID"), audited("retry", job_id) as entry:
        job = retry_job(job_id)
        entry.message = f"queued again (attempt {job['attempts'] + 1} next)"
    print_json(job) if as_json else click.echo(f"{job_id}: {job['state']} (attempt {job['attempts'] + 1} next)")


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def cancel(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Cancel a job: a scheduled or queued one never runs, a running one is asked to stop.

    \b
    Example:
      meingym-tasks cancel 3f2b8c1e-5d6a-4c1b-9a7d-0e1f2a3b4c5d
    """
    bound(ctx)
    from meingym_tasks.jobs import cancel_job

    with user_errors("JOB_ID"), audited("cancel", job_id) as entry:
        job = cancel_job(job_id)
        running = job["cancel_requested"] and job["state"] not in FINISHED
        entry.message = "running: asked to stop" if running else f"cancelled ({job['state']})"
    if as_json:
        print_json(job)
    elif job["cancel_requested"] and job["state"] not in FINISHED:
        click.echo(f"{job_id}: running, asked to stop")
    else:
        click.echo(f"{job_id}: {job['state']}")


@click.command()
@click.option("--state", type=click.Choice([*FINISHED, INTERRUPTED]), help="Only records in this state.")
@click.option("--older-than", type=Duration(), help="Only records finished longer ago, e.g. 12h or 7d.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def purge(ctx: click.Context, state: str | None, older_than: timedelta | None, yes: bool) -> None:
    """Delete records of finished jobs (retention does this on its own; this is for now).

    \b
    Examples:
      meingym-tasks purge --state complete --older-than 1d
      meingym-tasks purge --state failed --yes
    """
    bound(ctx)
    from meingym_tasks.jobs import purge as purge_jobs

    what = f"{state or 'finished'} job records" + (f" finished more than {older_than} ago" if older_than else "")
    if not yes and sys.stdin.isatty():
        click.confirm(f"Delete {what}?", abort=True)
    with user_errors(), audited("purge", what) as entry:
        removed = purge_jobs(state=state, older_than=older_than)
        entry.message, entry.detail = f"deleted {removed} {what}", {"deleted": removed}
    click.echo(f"deleted {removed} {what}")


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def queues(ctx: click.Context, as_json: bool) -> None:
    """Per queue: pending, scheduled, running, failed, completed in the last hour, consumers alive.

    \b
    Example:
      meingym-tasks queues
    """
    bound(ctx)
    from meingym_tasks.jobs import queue_overview

    with user_errors():
        overview = queue_overview()
    if as_json:
        print_json(overview)
        return
    for name, row in overview.items():
        click.echo(
            f"{name}: {row['pending']} pending, {row['scheduled']} scheduled, {row['running']} running, "
            f"{row['retrying']} retrying, {row['failed']} failed; last hour {row['completed_last_hour']} "
            f"completed, {row['failed_last_hour']} failed; {len(row['consumers'])} consumer(s) alive"
        )
        for consumer in row["consumers"]:
            click.echo(
                f"  {consumer['host']} pid {consumer['pid']}: {consumer['workers']} {consumer['worker_type']} "
                f"worker(s), up since {consumer['started_at']}, seen {ago(consumer['last_seen_at'])}"
            )


@click.command("dead-letters")
@click.option("--queue", type=click.Choice([*QUEUE_ALIASES, *QUEUES]), callback=queue_name, help="Only this queue.")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dead_letters(ctx: click.Context, queue: str | None, limit: int, as_json: bool) -> None:
    """Messages that were never run: bad signature, undecodable, unknown job, wrong arguments.

    \b
    Example:
      meingym-tasks dead-letters --queue users
    """
    bound(ctx)
    from meingym_tasks.jobs import dead_letters as list_dead_letters

    with user_errors():
        page = list_dead_letters(queue=queue, limit=limit)
    if as_json:
        print_json(page)
        return
    click.echo(", ".join(f"{name}: {number}" for name, number in page["counts"].items()))
    for letter in page["dead_letters"]:
        click.echo(f"{letter['received_at']} {letter['queue']} ({letter['size']} bytes): {letter['reason']}")


COMMANDS = [status, jobs, retry, cancel, purge, queues, dead_letters]
