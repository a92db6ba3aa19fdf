"""Helpers for the console tests: a real worker (``bc-sync run`` roles consume
and api, real broker, store and emulator) and an HTTP client that signs in like a browser."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp

from tests.emulator.fixtures import EmulatorHandle
from tests.support import factories as f
from tests.support.amqp import drop_topology
from tests.support.exports import config_body
from tests.support.net import free_port
from tests.support.roles import running
from tests.support.session_checks import SECRET_SCAN
from tests.support.settings import emulator_settings
from worker.api.app import CONTEXT
from worker.config.settings import Settings
from worker.console.web import CONSOLE, ConsoleContext
from worker.events.envelope import CONTENT_TYPE
from worker.runtime import Service

ORG = "org-console"
OPS_TOKEN = "tok-ops-5b4c3d2e1f0a9b8c"
READ_TOKEN = "tok-support-7e6d5c4b3a2f1e0d"
TOKENS = f"ops={OPS_TOKEN},support={READ_TOKEN}:read"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
SECRET_SCAN.add(OPS_TOKEN, READ_TOKEN)


def invoice_on_account(number: str, account: str) -> dict[str, Any]:
    customer = f.customer("10000")
    project = f.project("4005", department="100", cust=customer)
    line = f.line(
        project, description="Licenser", quantity=1, unit_price=500.0, account_number=account
    )
    return {"invoice": f.invoice(number, cust=customer, lines=[line])}


@dataclass
class ConsoleWorker:
    settings: Settings
    emulator: EmulatorHandle
    url: str  # http://127.0.0.1:port
    services: list[Service]

    @property
    def console(self) -> ConsoleContext:
        for service in self.services:
            app = getattr(service, "app", None)
            if app is not None and CONTEXT in app:
                for sub in app._subapps:
                    if CONSOLE in sub:
                        return sub[CONSOLE]  # type: ignore[no-any-return]
        raise AssertionError("no console in this worker")

    async def save_config(self) -> None:
        url = f"{self.url}/v1/organizations/{ORG}/integrations/business-central"
        async with (
            aiohttp.ClientSession() as http,
            http.put(
                url,
                json=config_body(self.emulator),
                headers={"Authorization": f"Bearer {OPS_TOKEN}"},
            ) as resp,
        ):
            assert resp.status in (200, 201), await resp.text()

    async def publish(self, type_: str, data: dict[str, Any]) -> str:
        body = f.body(type_, data, org=ORG)
        connection = await aio_pika.connect(self.settings.amqp_url.get_secret_value())
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(self.settings.exchange)
            await exchange.publish(
                aio_pika.Message(body, content_type=CONTENT_TYPE), routing_key=type_
            )
        return str(json.loads(body)["id"])

    async def add_account(self, number: str) -> None:
        company = {"name": self.emulator.company_name, "gl_accounts": [{"number": number}]}
        environment = {"name": self.emulator.environment, "companies": [company]}
        await self.emulator.control.seed(
            {"tenants": [{"id": self.emulator.tenant_id, "environments": [environment]}]}
        )

    async def posted_invoice(self, number: str) -> dict[str, Any] | None:
        """The posted sales invoice of a Moment invoice (external document number), or None.

        Not by status: a released draft shows "Open" like a posted invoice; the emulator's
        state gives unposted invoices their Sales Header "documentStatus"."""
        state = await self.emulator.control.company_state(self.emulator.company_ref)
        for invoice in state.get("salesInvoices", []):
            if invoice.get("externalDocumentNumber") == number and "documentStatus" not in invoice:
                return invoice  # type: ignore[no-any-return]
        return None


async def console_worker(
    tmp_path: Path, emulator: EmulatorHandle, amqp_url: str, **over: Any
) -> AsyncIterator[ConsoleWorker]:
    port = free_port()
    settings = emulator_settings(
        tmp_path,
        emulator,
        amqp_url=amqp_url,
        api_token=TOKENS,
        http_port=port,
        **over,
    )
    try:
        async with running(settings, ["consume", "api"]) as services:
            yield ConsoleWorker(settings, emulator, f"http://127.0.0.1:{port}", services)
    finally:
        await drop_topology(settings)


class Browser:
    """An HTTP client that keeps cookies (also for 127.0.0.1) and fills in CSRF tokens."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf: str | None = None

    async def close(self) -> None:
        await self.http.close()

    async def get(self, path: str, **kw: Any) -> tuple[int, str]:
        async with self.http.get(self.base + path, allow_redirects=True, **kw) as resp:
            text = await resp.text()
            found = CSRF.search(text)
            if found:
                self.csrf = found.group(1)
            return resp.status, text

    async def post(
        self, path: str, data: dict[str, str], *, csrf: bool = True, **kw: Any
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        form = dict(data)
        if csrf and self.csrf is not None:
            form.setdefault("csrf", self.csrf)
        async with self.http.post(self.base + path, data=form, **kw) as resp:
            text = await resp.text()
            found = CSRF.search(text)
            if found:
                self.csrf = found.group(1)
            return resp.status, text, resp

    async def sign_in(self, token: str) -> tuple[int, str]:
        await self.get("/console/sign-in")
        status, text, _ = await self.post("/console/sign-in", {"token": token})
        # The session id is a secret: no page may ever show it (suite-wide secret scan).
        SECRET_SCAN.add(self.session_cookie())
        return status, text

    def session_cookie(self) -> str | None:
        for cookie in self.http.cookie_jar:
            if cookie.key == "bcsync_session":
                return cookie.value
        return None
