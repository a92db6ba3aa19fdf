"""A real SMTP server (aiosmtpd, in the test's event loop) that can refuse or defer chosen
recipients and require a login."""

from __future__ import annotations

import asyncio
import email
import ssl
import warnings
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from tests.support.net import free_port

SMTP_USER = "notify"
SMTP_PASSWORD = "smtp-pa55-Zq8rT1"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.raw, policy=default_policy)
        assert isinstance(msg, EmailMessage)
        return msg

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None, f"no text/{subtype} part"
        content: str = body.get_content()
        return content


class SmtpSink:
    """An SMTP server that keeps what it accepts; ``refuse``/``defer`` hold addresses it
    answers 550 / 450 to. Start, stop and start again on the same port (an outage)."""

    def __init__(
        self,
        port: int | None = None,
        *,
        tls: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
    ) -> None:
        self.port = port or free_port()
        self.tls = tls  # STARTTLS required (or TLS from the start with implicit_tls)
        self.implicit_tls = implicit_tls
        self.received: list[Received] = []
        self.refuse: set[str] = set()
        self.defer: set[str] = set()
        self.logins: list[str] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"{scheme}://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{self.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol,
            "127.0.0.1",
            self.port,
            ssl=self.tls if self.implicit_tls else None,
        )

    def _protocol(self) -> SMTP:
        with warnings.catch_warnings():
            # A login without TLS is what this local test server is for.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            starttls = self.tls if not self.implicit_tls else None
            return SMTP(
                self,
                hostname="127.0.0.1",
                authenticator=self._authenticate,
                auth_required=True,
                # aiosmtpd only knows about TLS it negotiated itself (STARTTLS).
                auth_require_tls=starttls is not None,
                tls_context=starttls,
                require_starttls=starttls is not None,
            )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == SMTP_USER
            and auth_data.password.decode() == SMTP_PASSWORD
        )
        if ok:
            self.logins.append(SMTP_USER)
        return AuthResult(success=ok)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 No such user here"
        if address in self.defer:
            return "450 4.2.1 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
        )
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.rcpt_tos]
