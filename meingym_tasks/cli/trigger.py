"""``meingym-tasks trigger JOB``: one subcommand per public job, its options derived from the declaration.

A job's parameters become options (``user_id: int`` with bounds becomes
``--user-id`` with an ``IntRange``; a ``date`` takes ``2026-12-01``); the
jobs are read only when ``trigger`` needs them, so ``meingym-tasks --help``
imports none. Errors print one line naming the option and what it allows and
exit with code 2; an unreachable broker exits 1.
"""

from __future__ import annotations

import sys
import time
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from meingym_tasks.cli.context import AppContext, IsoDateTime, pass_app, print_data
from meingym_tasks.exceptions import BrokerUnavailable, InvalidJobArguments, InvalidJobRequest
from meingym_tasks.names import QUEUE_ALIASES

if TYPE_CHECKING:
    from meingym_tasks.jobs.declare import Job, JobSpec

#: Options every job has, besides its own parameters.
COMMON_OPTIONS = ("delay", "eta", "wait", "timeout", "as_json")


def _public_jobs() -> dict[str, Job]:
    from meingym_tasks.jobs import public_jobs  # importing the jobs declares them

    return public_jobs()


class IsoDate(click.ParamType):
    """A calendar date as ``YYYY-MM-DD``."""

    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a date such as 2026-12-01", param, ctx)


def option_name(parameter: str) -> str:
    return "--" + parameter.replace("_", "-")


def click_type(schema: dict[str, Any]) -> click.ParamType:
    """The click type that accepts what ``schema`` allows (bounds included)."""
    from meingym_tasks.jobs.declare import value_schema

    value = value_schema(schema)
    if "enum" in value:
        return click.Choice([str(v) for v in value["enum"]])
    kind = value.get("type")
    if kind in ("integer", "number"):
        low = value.get("minimum", value.get("exclusiveMinimum"))
        high = value.get("maximum", value.get("exclusiveMaximum"))
        bounds = {"min_open": "exclusiveMinimum" in value, "max_open": "exclusiveMaximum" in value}
        if kind == "integer":
            return click.IntRange(low, high, **bounds)
        return click.FloatRange(low, high, **bounds)
    if kind == "boolean":
        return click.BOOL
    if value.get("format") == "date":
        return IsoDate()
    if value.get("format") == "date-time":
        return IsoDateTime()
    return click.STRING


def parameter_option(name: str, schema: dict[str, Any], required: bool) -> click.Option:
    from meingym_tasks.jobs.declare import allowed, value_schema

    description = schema.get("description", "").rstrip(".")
    text = f"{description}. Allowed: {allowed(schema)}." if description else f"Allowed: {allowed(schema)}."
    flag = option_name(name)
    if value_schema(schema).get("type") == "boolean":
        return click.Option([f"{flag}/--no-{flag[2:]}", name], default=None, required=required, help=text)
    return click.Option([flag, name], type=click_type(schema), required=required, help=text)


class JobCommand(click.Command):
    """A job's command: a wrong or missing option also says what the job allows there."""

    def __init__(self, spec: JobSpec, **kwargs: Any) -> None:
        super().__init__(spec.name, **kwargs)
        self.spec = spec

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from meingym_tasks.jobs.declare import allowed

        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            known = ", ".join(o for p in self.params for o in p.opts if o.startswith("--") and o != "--help")
            message = f"{self.spec.name} has no option {exc.option_name}; its options: {known}"
            raise click.NoSuchOption(exc.option_name, message, ctx=ctx) from None
        except click.BadParameter as exc:
            schema = self.spec.parameters.get(exc.param.name or "") if exc.param is not None else None
            if schema is None:
                raise
            message = f"{exc.message} Allowed: {allowed(schema)}.".strip()
            if isinstance(exc, click.MissingParameter):
                raise click.MissingParameter(message, ctx, exc.param) from None
            raise click.BadParameter(message, ctx, exc.param) from None


def job_command(spec: JobSpec) -> click.Command:
    """The ``trigger`` subcommand of one job, built from its declaration."""
    options: list[click.Parameter] = [
        parameter_option(name, schema, name in spec.required) for name, schema in spec.parameters.items()
    ]
    options += [
        click.Option(["--delay"], type=click.FloatRange(0), help="Run after this many seconds."),
        click.Option(
            ["--eta"], type=IsoDateTime(), help="Run at this time; without an offset it is read in MEINGYM_TIMEZONE."
        ),
        click.Option(["--wait"], is_flag=True, help="Block until the job has ended; exit 0 on success, 1 on failure."),
        click.Option(["--timeout"], type=click.FloatRange(0), help="With --wait: give up after this many seconds."),
        click.Option(["--json", "as_json"], is_flag=True, help="Print JSON."),
    ]
    notes = [f"Runs on {spec.queue}."]
    if spec.single_flight:
        notes.append("One run at a time: while one is queued or running, that run's id is the answer.")

    @pass_app
    def run(app: AppContext, **values: Any) -> None:
        ctx = click.get_current_context()
        arguments = {
            name: values[name]
            for name in spec.parameters
            if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT
        }
        trigger_job(app, spec, arguments, **{name: values[name] for name in COMMON_OPTIONS})

    return JobCommand(spec, params=options, callback=run, help=f"{spec.description}\n\n{' '.join(notes)}",
                      short_help=spec.description)  # fmt: skip


class TriggerGroup(click.Group):
    """The public jobs as subcommands, read from their declarations when needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_public_jobs())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = _public_jobs().get(cmd_name)
        return None if found is None else job_command(found.spec)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if not name.startswith("-") and self.get_command(ctx, name) is None:
            ctx.fail(f"unknown job {name!r}; allowed: {', '.join(self.list_commands(ctx))}")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from meingym_tasks.jobs.declare import allowed

        rows = []
        for name, declared in _public_jobs().items():
            spec = declared.spec
            parameters = [
                f"{option_name(p)} ({allowed(schema)}{'' if p in spec.required else ', optional'})"
                for p, schema in spec.parameters.items()
            ]
            rows.append((name, spec.description + (" Options: " + "; ".join(parameters) + "." if parameters else "")))
        with formatter.section("Jobs"):
            formatter.write_dl(rows)


@click.group(cls=TriggerGroup, invoke_without_command=False, subcommand_metavar="JOB [OPTIONS]")
def trigger() -> None:
    """Enqueue JOB and print its job id (JOB --help lists its options).

    \b
    Examples:
      meingym-tasks trigger update-all-actions --wait
      meingym-tasks trigger process-user-data --user-id 7
      meingym-tasks trigger send-welcome-email --user-id 7 --eta 2026-12-01T09:00
    """


def trigger_job(
    app: AppContext,
    spec: JobSpec,
    arguments: dict[str, Any],
    *,
    delay: float | None,
    eta: datetime | None,
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Enqueue, print the job id (or the answer as JSON) and, with ``wait``, follow the job to its end."""
    app.bind()
    from meingym_tasks import jobs
    from meingym_tasks.access import audit

    try:
        with audit.recorded(audit.cli_actor(), "trigger", spec.name, refusals=(InvalidJobRequest,)) as entry:
            entry.detail = {"job": spec.name, "arguments": {k: _plain(v) for k, v in arguments.items()}}
            if delay is not None or eta is not None:
                entry.detail.update(delay=delay, eta=eta.isoformat() if eta is not None else None)
            queued = jobs.enqueue(spec.name, delay=delay, eta=eta, **arguments)
            entry.target = queued["job_id"]
            entry.detail["deduplicated"] = bool(queued.get("deduplicated"))
            entry.message = f"{spec.name} enqueued as {queued['job_id']}"
    except InvalidJobArguments as exc:
        fields = dict.fromkeys(option_name(e["field"]) for e in exc.errors)
        raise click.BadParameter(exc.errors[0]["message"], param_hint=" / ".join(f"'{f}'" for f in fields)) from None
    except BrokerUnavailable as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    if not wait:
        print_data(queued, as_json) if as_json or "deduplicated" in queued else click.echo(queued["job_id"])
        return
    if not jobs.consumers_alive(spec.queue):
        alias = next((a for a, q in QUEUE_ALIASES.items() if q == spec.queue), "all")
        click.echo(
            f"Warning: no consumer of {spec.queue} is alive; the job waits until one starts "
            f"(meingym-tasks worker {alias})",
            err=True,
        )
    if not as_json:
        note = " (already queued or running)" if queued.get("deduplicated") else ""
        click.echo(f"job_id: {queued['job_id']}{note}", err=True)
        watch_progress(queued["job_id"], timeout)
    outcome = jobs.wait_for_result(queued["job_id"], timeout=timeout)
    print_data(outcome, as_json)
    sys.exit(0 if outcome["status"] == "complete" else 1)


def _plain(value: Any) -> Any:
    """A parameter's value as JSON can hold it (dates as ISO text)."""
    return value.isoformat() if isinstance(value, date) else value


def watch_progress(job_id: str, timeout: float | None, poll: float = 0.2) -> None:
    """Show the job's state, and a progress bar once it reports progress, until it has ended."""
    from meingym_tasks.jobs import get_job
    from meingym_tasks.registry.models import FINISHED

    deadline = None if timeout is None else time.monotonic() + timeout
    bar: Any = None
    shown_state = None
    try:
        while deadline is None or time.monotonic() < deadline:
            job = get_job(job_id)
            total, done = job["progress"]["total"], job["progress"]["done"] or 0
            if total and bar is None:
                bar = click.progressbar(length=total, label=job["name"], file=sys.stderr, show_pos=True)
                bar.__enter__()
            if bar is not None:
                bar.update(min(done, total or done) - bar.pos)
            elif job["state"] != shown_state:
                shown_state = job["state"]
                click.echo(f"{job['name']}: {shown_state}", err=True)
            if job["state"] in FINISHED:
                return
            time.sleep(poll)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
