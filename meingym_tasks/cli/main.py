"""The ``meingym-tasks`` command (click).

Settings are loaded once, on first need, and handed down on ``ctx.obj``. User
errors (bad settings, unknown jobs, invalid ids) print one line saying what is
allowed and exit with code 2; an unreachable broker exits 1 with the reason.
"""

from __future__ import annotations

import json
import sys

import click

from meingym_tasks.cli.access import COMMANDS as ACCESS_COMMANDS
from meingym_tasks.cli.config import config
from meingym_tasks.cli.context import AppContext, pass_app, print_data
from meingym_tasks.cli.registry import COMMANDS
from meingym_tasks.cli.trigger import trigger
from meingym_tasks.cli.web import web
from meingym_tasks.exceptions import BrokerUnavailable, InvalidJobRequest, UnknownJob
from meingym_tasks.names import QUEUE_ALIASES, UPDATE_ALL_ACTIONS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    envvar="MEINGYM_CONFIG",
    help="Env file with settings (KEY=value lines); the environment overrides it.",
)
@click.version_option(package_name="meingym-tasks")
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """MeinGym's background jobs: trigger them, run consumers, manage the database.

    \b
    Examples:
      meingym-tasks db migrate
      meingym-tasks worker all
      meingym-tasks trigger update-all-actions --wait
      meingym-tasks trigger send-welcome-email --user-id 7 --delay 60
      meingym-tasks result 3f2b8c1e-5d6a-4c1b-9a7d-0e1f2a3b4c5d
      meingym-tasks jobs --state failed
      meingym-tasks status 3f2b8c1e-5d6a-4c1b-9a7d-0e1f2a3b4c5d
      meingym-tasks queues
      meingym-tasks tokens create prometheus --scope read
      meingym-tasks audit --target 3f2b8c1e-5d6a-4c1b-9a7d-0e1f2a3b4c5d
    """
    import os

    if config:
        os.environ["MEINGYM_CONFIG"] = config
    ctx.obj = AppContext()


@cli.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def result(app: AppContext, job_id: str, as_json: bool) -> None:
    """Show the outcome of JOB_ID: complete with its result, failed with its error, or pending.

    \b
    Example:
      meingym-tasks result 3f2b8c1e-5d6a-4c1b-9a7d-0e1f2a3b4c5d --json
    """
    app.bind()
    from meingym_tasks.jobs import job_result

    try:
        outcome = job_result(job_id)
    except (InvalidJobRequest, UnknownJob) as exc:
        raise click.BadParameter(str(exc), param_hint="JOB_ID") from None
    except BrokerUnavailable as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    print_data(outcome, as_json)


@cli.command()
@click.argument("queue", type=click.Choice([*QUEUE_ALIASES, "all"]), default="all")
@click.option("--workers", type=click.IntRange(1, 256), help="Worker threads per queue (default MEINGYM_WORKERS).")
@pass_app
def worker(app: AppContext, queue: str, workers: int | None) -> None:
    """Run the consumer of QUEUE (actions, users or all) in the foreground until Ctrl-C.

    \b
    Examples:
      meingym-tasks worker all
      meingym-tasks worker actions --workers 4
    """
    from meingym_tasks.cli import worker as runner

    settings = app.settings
    runner.setup_logging()
    if queue == "all":
        extra = ["--workers", str(workers)] if workers else []
        sys.exit(runner.run_children(list(QUEUE_ALIASES), extra))
    init_db = app.bind  # consumers bind lazily too; binding here surfaces bad settings at start
    init_db()
    runner.run_consumer(QUEUE_ALIASES[queue], settings, workers)


@cli.group()
def db() -> None:
    """Database schema and demo data."""


@db.command()
@pass_app
def migrate(app: AppContext) -> None:
    """Apply pending schema migrations (a no-op when the schema is current)."""
    app.bind()
    from meingym_tasks.db.database import database
    from meingym_tasks.db.migrate import migrate as apply

    applied = apply(database.obj)
    click.echo("applied: " + ", ".join(applied) if applied else "schema is current")


@db.command()
@click.option("--users", type=click.IntRange(0, 10_000_000), default=100, show_default=True)
@click.option("--actions", type=click.IntRange(0, 100_000_000), default=10_000, show_default=True)
@click.option("--seed", "seed_value", type=int, default=0, show_default=True, help="Same seed, same data.")
@pass_app
def seed(app: AppContext, users: int, actions: int, seed_value: int) -> None:
    """Insert realistic demo users and actions (deterministic for a given --seed).

    \b
    Example:
      meingym-tasks db seed --users 1000 --actions 1000000 --seed 42
    """
    app.bind()
    from meingym_tasks.domain.seed import seed_demo_data

    if actions and not users:
        raise click.BadParameter("actions need at least one user", param_hint="--users")
    summary = seed_demo_data(users=users, actions=actions, seed=seed_value)
    click.echo(", ".join(f"{key}: {value}" for key, value in summary.items()))


@cli.command()
@click.option("--users", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--actions", type=click.IntRange(0, 10_000_000), default=20_000, show_default=True)
@click.option("--timeout", type=click.FloatRange(1), default=300, show_default=True)
@pass_app
def demo(app: AppContext, users: int, actions: int, timeout: float) -> None:
    """Migrate, seed, start both consumers, run every job once and print the results."""
    from meingym_tasks.cli import worker as runner
    from meingym_tasks.db.database import database
    from meingym_tasks.db.migrate import migrate as apply
    from meingym_tasks.domain.models import User
    from meingym_tasks.domain.seed import seed_demo_data
    from meingym_tasks.jobs import (
        schedule_actions_update,
        schedule_user_processing,
        schedule_welcome_email,
        wait_for_result,
    )

    settings = app.bind()
    click.echo(f"data directory: {settings.data_dir.resolve()}  broker: {settings.broker}")
    apply(database.obj)
    with database.connection_context():
        if User.select().count() == 0:
            click.echo("seeding: " + str(seed_demo_data(users=users, actions=actions, seed=1)))
        first_user = User.select(User.id).order_by(User.id).first()
    log_dir = settings.data_dir / "log"
    children = runner.start_children(list(QUEUE_ALIASES), log_dir=log_dir)
    click.echo(f"consumers started (pids {', '.join(str(c.pid) for c in children)}), logs in {log_dir}/")
    failed = False
    try:
        steps = [  # one after another: the user's stats read the scores the update writes
            (UPDATE_ALL_ACTIONS, schedule_actions_update),
            ("process-user-data", lambda: schedule_user_processing(first_user.id)),
            ("send-welcome-email", lambda: schedule_welcome_email(first_user.id)),
        ]
        for name, start in steps:
            job = start()
            outcome = wait_for_result(job["job_id"], timeout=timeout)
            failed |= outcome["status"] != "complete"
            shown = outcome.get("result", outcome.get("error"))
            click.echo(f"{name} {job['job_id']}: {outcome['status']} {json.dumps(shown, default=str)}")
    finally:
        runner.stop_children(children)
    sys.exit(1 if failed else 0)


def main() -> None:
    cli(prog_name="meingym-tasks")


cli.add_command(config)
cli.add_command(trigger)
cli.add_command(web)
for command in [*COMMANDS, *ACCESS_COMMANDS]:
    cli.add_command(command)
