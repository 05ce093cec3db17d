"""send-welcome-email over STARTTLS with AUTH, against a real SMTP server (aiosmtpd) with a throwaway CA (trustme).

The server offers AUTH only after STARTTLS (``auth_require_tls``) and refuses
mail without it; the client must verify the server's certificate, or the
password goes to whoever answers.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import peewee
import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from meingym_tasks.domain.models import SentEmail, User
from meingym_tasks.jobs import job_result, schedule_welcome_email
from meingym_tasks.queue import queues
from meingym_tasks.queue.queues import users_queue
from meingym_tasks.settings import Settings
from tests.helpers import Inbox, free_port, run_due

USER, PASSWORD = "meingym-mailer", "correct-horse-battery-staple"


class Logins:
    """An aiosmtpd authenticator: one account; it notes every login and whether TLS was on."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bool]] = []

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.seen.append((mechanism, login, session.ssl is not None))
        return AuthResult(success=(login, password) == (USER, PASSWORD), handled=False)


@pytest.fixture
def broker_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'queue.db'}"


@pytest.fixture
def authority(tmp_path: Path) -> tuple[trustme.CA, Path]:
    """A throwaway certificate authority and its certificate as a PEM file."""
    ca = trustme.CA()
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


@pytest.fixture
def tls_server(authority: tuple[trustme.CA, Path]) -> Iterator[tuple[Inbox, Logins, int]]:
    """An SMTP server on loopback with STARTTLS (a certificate for 127.0.0.1) and AUTH required after it."""
    ca, _ = authority
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    inbox, logins, port = Inbox(), Logins(), free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=logins,
        auth_required=True,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield inbox, logins, port
    finally:
        controller.stop()


@pytest.fixture
def send(app_env: dict[str, str], tls_server: tuple[Inbox, Logins, int]) -> Iterator[Any]:
    """Run one welcome email job with these SMTP settings; returns the job's outcome."""

    def run(user: User, **smtp: str) -> dict[str, Any]:
        env = {**app_env, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(tls_server[2]), **smtp}
        queues.configure(Settings.from_env(env))
        job_id = schedule_welcome_email(user.id)["job_id"]
        run_due(users_queue)
        return job_result(job_id)

    yield run
    queues.reset()


def test_the_welcome_email_is_delivered_over_starttls_after_auth(
    send: Any, tls_server: tuple[Inbox, Logins, int], authority: tuple[trustme.CA, Path],
    monkeypatch: pytest.MonkeyPatch, db: peewee.Database,
) -> None:  # fmt: skip
    inbox, logins, port = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(authority[1]))  # trust the throwaway CA as the system's
    user = User.create(email="greta@example.org", name="Greta Koch")

    outcome = send(user, SMTP_STARTTLS="true", SMTP_USER=USER, SMTP_PASSWORD=PASSWORD)

    assert outcome["status"] == "complete", outcome
    assert outcome["result"]["delivered_to"] == f"smtp://127.0.0.1:{port}"
    assert [message["To"] for message in inbox.messages] == ["Greta Koch <greta@example.org>"]
    assert logins.seen == [("LOGIN", USER, True)] or logins.seen == [("PLAIN", USER, True)]


def test_a_certificate_from_an_unknown_authority_is_refused_before_the_password_is_sent(
    send: Any, tls_server: tuple[Inbox, Logins, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    db: peewee.Database,
) -> None:  # fmt: skip
    inbox, logins, _ = tls_server
    other = trustme.CA()  # what a machine in the middle would present: a valid certificate, but not ours
    other.cert_pem.write_to_path(str(tmp_path / "other.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "other.pem"))
    user = User.create(email="mia@example.org", name="Mia")

    outcome = send(user, SMTP_STARTTLS="true", SMTP_USER=USER, SMTP_PASSWORD=PASSWORD)

    assert outcome["status"] == "pending"  # retried later, as any connection failure
    assert users_queue.scheduled_count() == 1
    assert inbox.messages == [] and logins.seen == []
    assert SentEmail.select().count() == 0


def test_a_wrong_password_delivers_nothing(
    send: Any, tls_server: tuple[Inbox, Logins, int], authority: tuple[trustme.CA, Path],
    monkeypatch: pytest.MonkeyPatch, db: peewee.Database,
) -> None:  # fmt: skip
    inbox, logins, _ = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(authority[1]))
    user = User.create(email="ben@example.org", name="Ben")

    outcome = send(user, SMTP_STARTTLS="true", SMTP_USER=USER, SMTP_PASSWORD="wrong-password")

    assert outcome["status"] == "pending" and users_queue.scheduled_count() == 1
    assert inbox.messages == [] and logins.seen and all(tls for _, _, tls in logins.seen)  # smtplib tries each way
    assert SentEmail.select().count() == 0


def test_without_starttls_the_password_is_never_sent_in_clear(
    send: Any, tls_server: tuple[Inbox, Logins, int], db: peewee.Database
) -> None:
    inbox, logins, _ = tls_server
    user = User.create(email="jonas@example.org", name="Jonas")

    outcome = send(user, SMTP_STARTTLS="false", SMTP_USER=USER, SMTP_PASSWORD=PASSWORD)

    assert outcome["status"] == "pending"
    assert inbox.messages == [] and logins.seen == []  # AUTH is not offered before TLS: smtplib gives up
