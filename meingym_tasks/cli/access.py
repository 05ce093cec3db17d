"""``meingym-tasks tokens | sessions | audit``: who may use the web service, who is logged in, who did what.

Run on a machine with the project database (as ``db migrate`` is): a token is
created, listed and revoked there, and the web service sees the change with its
next request. Every change is recorded in the audit trail with the operator as
``user@host``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
import peewee

from meingym_tasks.access.errors import AccessError, InvalidTokenRequest, TokenExists, UnknownSession, UnknownToken
from meingym_tasks.access.tokens import SCOPE_HELP, SCOPES
from meingym_tasks.cli.registry import ago, bound

EXIT_UNAVAILABLE = 1


@contextmanager
def access_errors(param_hint: str | None = None) -> Iterator[None]:
    """A refused request is one line and exit 2; a database without the access tables, exit 1 saying what to run."""
    try:
        yield
    except (InvalidTokenRequest, TokenExists, UnknownToken, UnknownSession) as exc:
        raise click.BadParameter(str(exc), param_hint=param_hint) from None
    except AccessError as exc:
        raise click.UsageError(str(exc)) from None
    except (peewee.OperationalError, peewee.ProgrammingError) as exc:
        reason = " ".join(str(exc).split())
        hint = "; run `meingym-tasks db migrate`" if "access_" in reason else ""
        click.echo(f"Error: the database cannot be used: {reason}{hint}", err=True)
        sys.exit(EXIT_UNAVAILABLE)


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]], empty: str) -> None:
    if not rows:
        click.echo(empty)
        return
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


# --------------------------------------------------------------------------- tokens


@click.group()
def tokens() -> None:
    """Named tokens for the API and the dashboard, each with one scope.

    \b
    Scopes (each includes the ones before it):
      read     every GET route, /metrics, the dashboard read-only
      operate  also trigger, retry and cancel jobs
      admin    also purge records, manage tokens and sessions, read the audit trail
    The built-in admin token (MEINGYM_ADMIN_TOKEN) is not listed here.
    """


@tokens.command("create")
@click.argument("name")
@click.option("--scope", type=click.Choice(SCOPES), required=True, help="; ".join(SCOPE_HELP.values()))
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the token included).")
@click.pass_context
def create_token(ctx: click.Context, name: str, scope: str, as_json: bool) -> None:
    """Create the token NAME (lower-case letters, digits, '-') and print it, this once.

    Only its SHA-256 digest is stored: keep the printed token where it is needed
    (Prometheus' scrape config, a CI secret). It reads mgt_<name>_<secret>.

    \b
    Examples:
      meingym-tasks tokens create prometheus --scope read
      meingym-tasks tokens create deploy-bot --scope operate
    """
    bound(ctx)
    from meingym_tasks.access import audit
    from meingym_tasks.access import tokens as access_tokens

    actor = audit.cli_actor()
    with access_errors("NAME"), audit.recorded(actor, "token.create", name, refusals=(AccessError,)) as entry:
        entry.detail = {"scope": scope}
        token, listed = access_tokens.create(name, scope, created_by=f"{actor.name} (cli)")
        entry.message = f"token {name!r} created with scope {scope}"
    if as_json:
        click.echo(json.dumps({**listed, "token": token}, indent=2, sort_keys=True))
        return
    click.echo(token)
    click.echo(
        f"token {name!r} created with scope {scope}: this is the only time it is shown. "
        f"Use it as 'Authorization: Bearer <token>' or on the dashboard's login page.",
        err=True,
    )


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_tokens(ctx: click.Context, as_json: bool) -> None:
    """List the named tokens: scope, who created them and when, last use, open sessions (never the token)."""
    bound(ctx)
    from meingym_tasks.access import tokens as access_tokens

    with access_errors():
        listed = access_tokens.listed()
    if as_json:
        click.echo(json.dumps(listed, indent=2, sort_keys=True))
        return
    rows = [
        (t["name"], t["scope"], ago(t["created_at"]), t["created_by"], ago(t["last_used_at"]), t["sessions"])
        for t in listed
    ]
    _table(("NAME", "SCOPE", "CREATED", "BY", "LAST USED", "SESSIONS"), rows, "(no named tokens)")


@tokens.command("revoke")
@click.argument("name")
@click.pass_context
def revoke_token(ctx: click.Context, name: str) -> None:
    """Revoke the token NAME: refused from its next request on, and its dashboard sessions end at once.

    \b
    Example:
      meingym-tasks tokens revoke deploy-bot
    """
    bound(ctx)
    from meingym_tasks.access import audit
    from meingym_tasks.access import tokens as access_tokens

    actor = audit.cli_actor()
    with access_errors("NAME"), audit.recorded(actor, "token.revoke", name, refusals=(AccessError,)) as entry:
        ended = access_tokens.revoke(name)
        entry.message, entry.detail = f"token {name!r} revoked, {ended} session(s) ended", {"sessions_ended": ended}
    click.echo(entry.message)


# --------------------------------------------------------------------------- sessions


@click.group()
def sessions() -> None:
    """Dashboard sessions: who is logged in, from where; end one at once."""


@sessions.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_sessions(ctx: click.Context, as_json: bool) -> None:
    """List open dashboard sessions, newest first."""
    bound(ctx)
    from meingym_tasks.access import sessions as access_sessions

    with access_errors():
        listed = access_sessions.listed()
    if as_json:
        click.echo(json.dumps(listed, indent=2, sort_keys=True))
        return
    rows = [
        (s["id"], s["token"], ago(s["created_at"]), ago(s["last_seen_at"]), s["client"] or "-", s["user_agent"] or "-")
        for s in listed
    ]
    _table(("ID", "TOKEN", "STARTED", "LAST SEEN", "CLIENT", "USER AGENT"), rows, "(no open sessions)")


@sessions.command("revoke")
@click.argument("session_id", metavar="ID")
@click.pass_context
def revoke_session(ctx: click.Context, session_id: str) -> None:
    """End the session ID (see `sessions list`): its cookie is refused from its next request on."""
    bound(ctx)
    from meingym_tasks.access import audit
    from meingym_tasks.access import sessions as access_sessions

    actor = audit.cli_actor()
    target = f"session {session_id}"
    with access_errors("ID"), audit.recorded(actor, "session.revoke", target, refusals=(AccessError,)) as entry:
        ended = access_sessions.end(session_id)
        entry.message, entry.detail = f"session {session_id} of token {ended['token']!r} ended", ended
    click.echo(entry.message)


# --------------------------------------------------------------------------- audit


@click.command("audit")
@click.option("--target", help="Only entries about this job id, queue, token name or 'session ID'.")
@click.option("--actor", help="Only entries by this token name or user@host.")
@click.option("--action", help="Only this action: trigger, retry, retry-all, cancel, purge, login, logout, ...")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--before", type=click.IntRange(1), help="The 'next' value of the previous page.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with the next cursor).")
@click.pass_context
def audit_trail(
    ctx: click.Context,
    target: str | None,
    actor: str | None,
    action: str | None,
    limit: int,
    before: int | None,
    as_json: bool,
) -> None:
    """Who did what, newest first: every trigger, retry, cancel, purge, login and token or session change.

    \b
    Examples:
      meingym-tasks audit
      meingym-tasks audit --target 3f2b8c1e-5d6a-4c1b-9a7d-0e1f2a3b4c5d
      meingym-tasks audit --actor deploy-bot --json
    """
    bound(ctx)
    from meingym_tasks.access import audit

    with access_errors():
        page = audit.entries(target=target, actor=actor, action=action, limit=limit, before=before)
    if as_json:
        click.echo(json.dumps(page, indent=2, sort_keys=True, default=str))
        return
    rows = [
        (
            e["at"][:19].replace("T", " "),
            e["actor"],
            e["via"],
            e["client"] or "-",
            e["action"],
            e["target"] or "-",
            e["outcome"],
            e["message"] or "",
        )
        for e in page["entries"]
    ]
    _table(("AT (UTC)", "ACTOR", "VIA", "CLIENT", "ACTION", "TARGET", "OUTCOME", "MESSAGE"), rows, "(no entries)")
    if page["next"]:
        click.echo(f"more: add --before {page['next']}")


COMMANDS = [tokens, sessions, audit_trail]
