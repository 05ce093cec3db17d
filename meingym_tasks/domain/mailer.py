"""Welcome emails: built with the standard library, sent by SMTP or written to an outbox.

Without ``SMTP_HOST`` a message is written as ``<outbox>/<job id>.eml``, so a
fresh machine "sends" mail you can open; with it, smtplib delivers to the
server (STARTTLS and login when configured). STARTTLS verifies the server's
certificate and name against the system's CAs (``SSL_CERT_FILE`` names another
bundle): smtplib's own default checks neither, which would hand the password to
anyone in the path.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

from meingym_tasks.settings import Settings


def welcome_message(name: str, email: str, settings: Settings) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = formataddr((name, email))
    message["Subject"] = "Willkommen bei MeinGym!"
    message["Message-ID"] = make_msgid(domain="meingym.example")
    message.set_content(
        f"Hallo {name},\n\n"
        "willkommen bei MeinGym! Logge dein erstes Training, und wir rechnen deinen Score aus.\n\n"
        "Viel Erfolg,\ndein MeinGym-Team\n"
    )
    return message


def deliver(message: EmailMessage, settings: Settings, name: str) -> str:
    """Send ``message``; returns where it went (``smtp://host:port`` or the .eml path).

    SMTP errors propagate so the job is retried; the caller records the send.
    """
    if settings.smtp_host:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout) as smtp:
            if settings.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password or "")
            smtp.send_message(message)
        return f"smtp://{settings.smtp_host}:{settings.smtp_port}"
    settings.outbox_dir.mkdir(parents=True, exist_ok=True)
    path = settings.outbox_dir / f"{name}.eml"
    temporary = path.with_suffix(".eml.tmp")
    temporary.write_bytes(message.as_bytes())
    os.replace(temporary, path)  # a reader never sees half a message
    return str(path)
