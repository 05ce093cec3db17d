"""``meingym-tasks web``: the HTTP API and the /admin/jobs dashboard."""

from __future__ import annotations

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
def web(host: str, port: int) -> None:
    """Serve the jobs API and the dashboard at /admin/jobs (not built yet)."""
    raise click.ClickException("the web service is not built yet")
