"""What every command shares: the lazily loaded settings on ``ctx.obj``, option types, output."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import click

from meingym_tasks.exceptions import ConfigurationError
from meingym_tasks.settings import Settings

EXIT_USAGE = 2


class AppContext:
    """What every command needs, built lazily so ``--help`` works with any environment."""

    def __init__(self) -> None:
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = Settings.from_env()
            except ConfigurationError as exc:
                click.echo(f"Error: {exc}", err=True)
                sys.exit(EXIT_USAGE)
        return self._settings

    def bind(self) -> Settings:
        """Bind the queues and the database to the settings; returns them."""
        from meingym_tasks.db.database import init_database
        from meingym_tasks.queue import queues

        settings = self.settings
        queues.configure(settings)
        init_database(settings)
        return settings


pass_app = click.make_pass_decorator(AppContext, ensure=True)


class IsoDateTime(click.ParamType):
    name = "ISO-8601"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 time such as 2026-12-01T03:00 or 2026-12-01T03:00+01:00")


def print_data(data: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str, sort_keys=True))
        return
    for key, value in data.items():
        if key == "traceback" and value:
            click.echo("traceback:\n" + str(value).rstrip())
        else:
            click.echo(f"{key}: {value}")


def usage_error(message: str) -> click.UsageError:
    return click.UsageError(message)
