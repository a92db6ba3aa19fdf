"""pytest plugin: ``pytest_plugins = ["tests.emulator.fixtures"]``.

- ``bc_emulator`` (session): one emulator subprocess for the whole run (independent of
  pytest-asyncio's function-scoped loops); an :class:`EmulatorProcess`.
- ``emulator`` (function, async): resets that emulator, seeds :func:`demo_seed`, and yields an
  :class:`EmulatorHandle` with the URL, CA file, a :class:`ControlClient` for the test's loop,
  and the demo credentials. Faults, limits and logs start clean in every test.
"""

from __future__ import annotations

import json as _json
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import yarl

from . import tls
from .entra import BC_SCOPE
from .seed import DEMO, demo_seed
from .server import CompanyRef, ControlClient, EmulatorProcess, start_subprocess


@dataclass
class EmulatorHandle:
    """What a test needs to point the worker (or a raw client) at the emulator."""

    url: str  # BC_SYNC_BC_API_URL and BC_SYNC_AUTHORITY_URL
    ca_file: Path  # BC_SYNC_CA_FILE
    control: ControlClient
    tenant_id: str = DEMO.tenant_id
    tenant_domain: str = DEMO.tenant_domain
    client_id: str = DEMO.client_id
    client_secret: str = DEMO.client_secret
    environment: str = DEMO.environment
    company_name: str = DEMO.company_name
    company_id: str = DEMO.company_id

    @property
    def company_ref(self) -> CompanyRef:
        return CompanyRef(self.tenant_id, self.environment, self.company_name)

    @property
    def authority(self) -> str:
        """msal authority for the demo tenant."""
        return f"{self.url}/{self.tenant_id}"

    @property
    def api_root(self) -> str:
        return f"{self.url}/v2.0/{self.tenant_id}/{self.environment}/api/v2.0"

    @property
    def company_url(self) -> str:
        return f"{self.api_root}/companies({self.company_id})"

    def odata_url(self, company_name: str | None = None) -> str:
        """``…/ODataV4/Company('<name>')`` with the name encoded as bc-contract.md prescribes."""
        name = (company_name or self.company_name).replace("'", "''")
        env_root = f"{self.url}/v2.0/{self.tenant_id}/{self.environment}"
        return f"{env_root}/ODataV4/Company('{quote(name, safe='')}')"

    def settings_env(self) -> dict[str, str]:
        """``BC_SYNC_*`` variables that point the worker at this emulator."""
        return {
            "BC_SYNC_BC_API_URL": self.url,
            "BC_SYNC_AUTHORITY_URL": self.url,
            "BC_SYNC_CA_FILE": str(self.ca_file),
            "BC_SYNC_CLIENT_ID": self.client_id,
        }

    def ssl_context(self) -> ssl.SSLContext:
        return tls.client_context(self.ca_file)

    async def token(self, session: aiohttp.ClientSession) -> str:
        """A bearer token for the demo app (plain HTTP POST; tests of msal use msal itself)."""
        async with session.post(
            f"{self.url}/{self.tenant_id}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "scope": BC_SCOPE,
            },
        ) as resp:
            body = await resp.json()
            if "access_token" not in body:
                raise RuntimeError(f"token request failed: {body.get('error')}")
            return str(body["access_token"])


@dataclass
class Resp:
    status: int
    body: Any
    headers: Mapping[str, str]

    @property
    def error_code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return str(self.body["error"].get("code"))
        return None

    @property
    def error_message(self) -> str:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return str(self.body["error"].get("message", ""))
        return ""


class BCClient:
    """A minimal authenticated BC client for tests (aiohttp over TLS trusting the emulator).

    ``url`` may be absolute, start with ``/`` (relative to the server) or be relative to the demo
    company (``customers?$filter=…``). ``encoded=True`` sends the URL exactly as given.
    Like the product, it asks for English (``language="en-US"``); ``language=None`` sends no
    ``Accept-Language``, and the emulator answers in Swedish (language.py).
    """

    def __init__(self, handle: EmulatorHandle, session: aiohttp.ClientSession, token: str) -> None:
        self.handle = handle
        self.session = session
        self.token = token

    def absolute(self, url: str) -> str:
        if url.startswith(("http://", "https://")):
            return url
        if url.startswith("/"):
            return self.handle.url + url
        return f"{self.handle.company_url}/{url}"

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        encoded: bool = False,
        token: str | None = None,
        language: str | None = "en-US",
    ) -> Resp:
        hdrs = {"Authorization": f"Bearer {token or self.token}"}
        if language is not None:
            hdrs["Accept-Language"] = language
        hdrs.update(headers or {})
        target: Any = yarl.URL(self.absolute(url), encoded=True) if encoded else self.absolute(url)
        async with self.session.request(method, target, json=json, headers=hdrs) as resp:
            text = await resp.text()
            body = _json.loads(text) if text else None
            return Resp(resp.status, body, resp.headers)

    async def get(self, url: str, **kw: Any) -> Resp:
        return await self.request("GET", url, **kw)

    async def post(self, url: str, json: Any = None, **kw: Any) -> Resp:
        return await self.request("POST", url, json=json, **kw)

    async def patch(self, url: str, json: Any = None, **kw: Any) -> Resp:
        return await self.request("PATCH", url, json=json, **kw)

    async def delete(self, url: str, **kw: Any) -> Resp:
        return await self.request("DELETE", url, **kw)


@pytest.fixture(scope="session")
def bc_emulator() -> Iterator[EmulatorProcess]:
    """One emulator subprocess per test session."""
    proc = start_subprocess()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def emulator(bc_emulator: EmulatorProcess) -> AsyncIterator[EmulatorHandle]:
    """The session emulator, reset and seeded with the demo world for this test."""
    control = bc_emulator.new_control()
    try:
        await control.reset()
        await control.seed(demo_seed())
        yield EmulatorHandle(bc_emulator.url, bc_emulator.ca_file, control)
    finally:
        await control.close()


@pytest.fixture
async def bc_client(emulator: EmulatorHandle) -> AsyncIterator[BCClient]:
    """An authenticated :class:`BCClient` for the demo app against the seeded emulator."""
    connector = aiohttp.TCPConnector(ssl=emulator.ssl_context())
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        yield BCClient(emulator, session, await emulator.token(session))
