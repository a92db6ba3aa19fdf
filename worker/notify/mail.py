"""Sending mail: over SMTP (aiosmtplib) when ``BC_SYNC_SMTP_URL`` is set, else as .eml files in
``BC_SYNC_OUTBOX_DIR`` (the demo's default).

A mailer reports per recipient: accepted, refused for good (5xx: logged and skipped), or
refused for now (4xx: tried again with the next attempt). A server that cannot be reached
raises :class:`MailUnavailable`; the digest service retries with backoff.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib
import structlog

from worker.config.settings import Settings
from worker.log import redact_text
from worker.notify.digest import DigestContent, render_html, render_text

log = structlog.get_logger(__name__)

SMTP_TIMEOUT_S = 30.0


class MailUnavailable(Exception):
    """The mail could not be handed over now (server down, temporary error): retry later.

    The message never contains the SMTP URL's credentials.
    """


@dataclass
class MailResult:
    accepted: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # permanent: skip these
    deferred: dict[str, str] = field(default_factory=dict)  # temporary: retry these


class Mailer(Protocol):
    async def send(self, message: EmailMessage, recipients: Sequence[str]) -> MailResult: ...


def build_message(
    content: DigestContent,
    *,
    sender: str,
    to: Sequence[str],
    message_id: str,
) -> EmailMessage:
    """The digest as a multipart/alternative mail (plain text + HTML)."""
    msg = EmailMessage()
    msg["Subject"] = content.subject
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = format_datetime(content.window_end)
    # Stable per digest: a copy resent after a crash carries the same id, so clients that
    # de-duplicate by Message-ID show it once.
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(render_text(content))
    msg.add_alternative(render_html(content), subtype="html")
    return msg


def digest_message_id(org: str, digest_id: int, created_at: datetime, sender: str) -> str:
    """``<20261125T101500Z.org-acme.digest-7@domain>``: the same for every copy of a digest."""
    domain = sender.rpartition("@")[2] or "bc-sync.local"
    safe_org = "".join(c if c.isalnum() or c in "-_" else "-" for c in org)[:60]
    return f"<{created_at.strftime('%Y%m%dT%H%M%SZ')}.{safe_org}.digest-{digest_id}@{domain}>"


@dataclass(frozen=True)
class SmtpTarget:
    hostname: str
    port: int
    use_tls: bool
    username: str | None
    password: str | None


def parse_smtp_url(url: str) -> SmtpTarget:
    """``smtp://user:pass@host:port`` (STARTTLS when offered) or ``smtps://…`` (TLS)."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("BC_SYNC_SMTP_URL must look like smtp://user:pass@host:port")
    use_tls = parts.scheme == "smtps"
    try:
        port = parts.port or (465 if use_tls else 25)
    except ValueError:
        raise ValueError("BC_SYNC_SMTP_URL has an invalid port") from None
    return SmtpTarget(
        hostname=parts.hostname,
        port=port,
        use_tls=use_tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class SmtpMailer:
    """One SMTP transaction per send; recipients the server refuses are reported, not fatal."""

    def __init__(
        self,
        target: SmtpTarget,
        *,
        sender: str,
        ca_file: Path | None = None,
        timeout: float = SMTP_TIMEOUT_S,
    ) -> None:
        self.target = target
        self.sender = sender
        self.timeout = timeout
        self._tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)

    async def send(self, message: EmailMessage, recipients: Sequence[str]) -> MailResult:
        t = self.target
        try:
            errors, _ = await aiosmtplib.send(
                message,
                sender=self.sender,
                recipients=list(recipients),
                hostname=t.hostname,
                port=t.port,
                username=t.username,
                password=t.password,
                use_tls=t.use_tls,
                # None: STARTTLS when the server offers it; smtps:// is TLS from the start.
                start_tls=False if t.use_tls else None,
                tls_context=self._tls,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            result = MailResult()
            for refusal in exc.recipients:
                _sort(result, refusal.recipient, refusal.code, refusal.message)
            return result
        except aiosmtplib.SMTPResponseException as exc:
            raise MailUnavailable(f"the mail server answered {exc.code}: {exc.message}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # aiosmtplib's messages name the problem (TLS, no auth method), never the password.
            reason = redact_text(str(exc))[:200] or type(exc).__name__
            raise MailUnavailable(
                f"the mail server {t.hostname}:{t.port} could not be reached ({reason})"
            ) from None
        result = MailResult()
        for address in recipients:
            reply = errors.get(address)
            if reply is None:
                result.accepted.append(address)
            else:
                _sort(result, address, reply.code, reply.message)
        return result


def _sort(result: MailResult, address: str, code: int, message: str) -> None:
    why = f"{code} {message}"
    if 400 <= code < 500:
        result.deferred[address] = why
    else:
        result.refused[address] = why


class OutboxMailer:
    """Writes each mail as an .eml file (no SMTP configured): every recipient "accepts" it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: EmailMessage, recipients: Sequence[str]) -> MailResult:
        path = await asyncio.to_thread(self._write, message)
        log.info("notify.mail_written_to_outbox", path=str(path), recipients=len(recipients))
        return MailResult(accepted=list(recipients))

    def _write(self, message: EmailMessage) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        mid = str(message["Message-ID"] or make_msgid()).strip("<>").partition("@")[0]
        name = "".join(c if c.isalnum() or c in "-._" else "_" for c in mid)[:150] + ".eml"
        path = self.directory / name
        tmp = path.with_suffix(".eml.tmp")
        tmp.write_bytes(bytes(message))
        # Same name for a resent digest: the file is replaced, not duplicated.
        os.replace(tmp, path)
        return path


def mailer_from_settings(settings: Settings) -> Mailer:
    if settings.smtp_url is None:
        return OutboxMailer(settings.outbox_dir)
    return SmtpMailer(
        parse_smtp_url(settings.smtp_url.get_secret_value()),
        sender=settings.mail_from,
        ca_file=settings.ca_file,
    )
