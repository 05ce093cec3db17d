"""``meingym-tasks config ...``: inspect the configuration the services run with."""

from __future__ import annotations

import json
import os
import sys

import click

from meingym_tasks.cli.config_check import Report
from meingym_tasks.cli.context import AppContext

EXIT_NOT_READY = 1


@click.group()
def config() -> None:
    """Check and show the effective configuration."""


@config.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 600),
    default=10,
    show_default=True,
    help="Seconds each check may take before it counts as failed.",
)
@click.pass_context
def check(ctx: click.Context, as_json: bool, timeout: float) -> None:
    """Load the configuration as the services do and check that they can run.

    Prints the effective settings (secrets masked) and checks that the broker
    and the database answer and that the schema is current. Exits 0 when all
    is well, 1 naming what is unreachable or not migrated and why, 2 for a bad
    setting.

    \b
    Examples:
      meingym-tasks --config /etc/meingym-tasks/meingym-tasks.env config check
      meingym-tasks config check --json
    """
    from meingym_tasks.cli.config_check import run_checks

    settings = ctx.ensure_object(AppContext).settings  # a bad setting: one line, exit 2
    report = run_checks(settings, timeout=timeout)
    source = os.environ.get("MEINGYM_CONFIG") or None
    if as_json:
        click.echo(json.dumps({"config_file": source, **report.as_dict()}, indent=2, sort_keys=True))
    else:
        _print_report(report, source)
    for failure in report.failures:
        click.echo(f"Error: {failure.name}: {failure.detail}", err=True)
    sys.exit(0 if report.ok else EXIT_NOT_READY)


def _print_report(report: Report, source: str | None) -> None:
    if source:
        click.echo(f"configuration: {source}, overridden by the environment")
    else:
        click.echo("configuration: the environment (MEINGYM_CONFIG is unset)")
    click.echo("settings:")
    width = max(len(name) for name in report.settings)
    for name, value in report.settings.items():
        click.echo(f"  {name:<{width}}  {value}")
    click.echo("checks:")
    for item in report.checks:
        status = {True: "ok", False: "FAILED", None: "skipped"}[item.ok]
        click.echo(f"  {status:<7}  {item.name:<8}  {item.detail}")
    for warning in report.warnings:
        click.echo(f"warning: {warning}")
