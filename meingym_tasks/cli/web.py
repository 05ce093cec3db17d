"""``meingym-tasks web``: the HTTP API and the /admin/jobs dashboard, served by uvicorn."""

from __future__ import annotations

import dataclasses
import sys

import click

from meingym_tasks.exceptions import ConfigurationError
from meingym_tasks.settings import env_value, read_environment


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="MEINGYM_WEB_HOST",
    help="Address to bind (loopback by default; put a reverse proxy with TLS in front).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, envvar="MEINGYM_WEB_PORT")
@click.pass_context
def web(ctx: click.Context, host: str, port: int) -> None:
    """Serve the jobs API (/api, docs at /docs) and the dashboard at /admin/jobs.

    Every page and endpoint but /healthz and /readyz needs a token: the
    built-in admin token (MEINGYM_ADMIN_TOKEN, or one generated once into
    <data dir>/admin.token), or one of `meingym-tasks tokens create`.

    \b
    Examples:
      meingym-tasks web
      meingym-tasks web --host 0.0.0.0 --port 8080
    """
    import uvicorn

    from meingym_tasks.web import WebSettings, create_app
    from meingym_tasks.web.auth import admin_token
    from meingym_tasks.web.config import base_url

    settings = ctx.obj.settings
    try:
        web_settings = WebSettings.from_env()
        if env_value(read_environment(), "MEINGYM_PUBLIC_URL") is None:  # follow --host/--port
            web_settings = dataclasses.replace(web_settings, public_url=base_url(host, port))
        app = create_app(settings, web_settings)
        token, source = admin_token(settings, web_settings)
    except ConfigurationError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    url = base_url(host, port)
    login = f"{url}/admin/login"
    click.echo(f"meingym-tasks web: dashboard {url}/admin/jobs, API docs {url}/docs")
    click.echo(f"log in at {login} with the token in {source}")
    if source != "MEINGYM_ADMIN_TOKEN" and sys.stdout.isatty():  # never into a log file or the journal
        # The fragment stays in the browser: the server and any proxy never see it.
        click.echo(f"or open {login}#token={token}")
    uvicorn.run(
        app,
        host=host,
        port=port,
        proxy_headers=True,  # X-Forwarded-Proto from the reverse proxy on loopback: Secure cookies over HTTPS
        server_header=False,
        log_level="info",
        timeout_graceful_shutdown=20,
    )
