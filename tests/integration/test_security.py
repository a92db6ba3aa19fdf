"""Security checks (issue 9): admin API auth on every route and its bind address, BC URLs that
config input cannot redirect, TLS that fails closed, and secrets encrypted at rest."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yarl
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select

from tests.emulator.fixtures import EmulatorHandle
from tests.support.db import MakeStore
from tests.support.session_checks import SECRET_SCAN
from tests.support.settings import make_settings
from worker.api import openapi, ops_routes
from worker.api.app import ApiContext, ApiServer, create_app
from worker.app import bc_hub
from worker.bc import BcError, BcHub
from worker.bc.http import Transport
from worker.config.model import ConfigValidationError, parse_config
from worker.config.settings import SettingsError, load_settings
from worker.store import integration_configs

TOKEN = "api-token-for-security-tests-7f3a"
BC_HOST = "api.businesscentral.example"
ENTRA_HOST = "login.entra.example"
STORE_SECRET = "store-secret-Zz91-never-in-plain"
SECRET_SCAN.add(TOKEN, STORE_SECRET)


def route_modules() -> list[Callable[[web.Application], None]]:
    """Every route module of the admin API that exists in this tree."""
    modules: list[Callable[[web.Application], None]] = [ops_routes.add_routes]
    try:
        from worker.api import config_routes
    except ImportError:
        return modules
    modules.append(config_routes.add_routes)
    return modules


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    s = make_settings(tmp_path, api_token=TOKEN, secret_key=Fernet.generate_key().decode())
    app = create_app(ApiContext(settings=s), route_modules())
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    yield client
    await client.close()


def v1_routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, concrete path) of every /v1 route, path variables filled in, except the one
    public route: the OpenAPI document (no data, no secret; see test_openapi_document_is_public)."""
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        template = info.get("formatter") or info.get("path") or ""
        if not template.startswith("/v1") or route.method == "HEAD":
            continue
        if (route.method, template) == ("GET", openapi.DOCUMENT_PATH):
            continue
        out.append((route.method, re.sub(r"\{[^}]+\}", "org-1", template)))
    return out


BAD_AUTH: list[dict[str, str]] = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
    {"Authorization": f"Bearer {TOKEN.upper()}"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN},
    {"X-Api-Token": TOKEN},
    {"Authorization": f"Bearer {TOKEN}\u0000"},
]


async def test_every_v1_route_refuses_missing_and_wrong_tokens(api: TestClient[Any, Any]) -> None:
    routes = v1_routes(api.app)
    assert len(routes) >= 3, routes
    for method, path in routes:
        for headers in BAD_AUTH:
            try:
                resp = await api.request(method, path, headers=headers, json={})
            except ValueError:
                continue  # aiohttp refuses to send a header with NUL: nothing reaches the server
            body = await resp.text()
            assert resp.status == 401, (method, path, headers, resp.status, body)
            assert TOKEN not in body
        # Also with a path the router does not know under /v1: still 401, not 404 (no probing).
    resp = await api.get("/v1/nothing-here", headers={"Authorization": "Bearer wrong"})
    assert resp.status == 401
    # The right token gets past the gate on every route (the iteration is not vacuous).
    for method, path in routes:
        resp = await api.request(
            method, path, headers={"Authorization": f"Bearer {TOKEN}"}, json={}
        )
        assert resp.status != 401, (method, path)


async def test_openapi_document_is_public(api: TestClient[Any, Any]) -> None:
    """The contract is served without a token, carries no secret, and names every other /v1
    operation as needing the bearer token."""
    resp = await api.get(openapi.DOCUMENT_PATH)
    assert resp.status == 200
    text = await resp.text()
    assert TOKEN not in text
    doc = await resp.json()
    public = [
        (method, path)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if path.startswith("/v1") and op.get("security") == []
    ]
    assert public == [("get", openapi.DOCUMENT_PATH)]
    # Other methods on the document's path are not opened by the exemption.
    assert (await api.post(openapi.DOCUMENT_PATH)).status == 401


async def test_api_without_token_setting_refuses_to_start(tmp_path: Path) -> None:
    s = make_settings(tmp_path, api_token=None)
    with pytest.raises(SettingsError, match="BC_SYNC_API_TOKEN"):
        create_app(ApiContext(settings=s), route_modules())


def _refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return False
    except OSError:
        return True


async def test_api_listens_only_on_the_configured_host(tmp_path: Path) -> None:
    assert load_settings(_env_file=None).http_host == "127.0.0.1"
    s = make_settings(tmp_path, api_token=TOKEN)
    server = ApiServer(create_app(ApiContext(settings=s), route_modules()), "127.0.0.1", 0)
    await server.start()
    try:
        port = server.port
        assert not await asyncio.to_thread(_refused, "127.0.0.1", port)
        # Another address of this machine (loopback range and IPv6 loopback) gets nothing.
        assert await asyncio.to_thread(_refused, "127.0.0.2", port)
        assert await asyncio.to_thread(_refused, "::1", port)
    finally:
        await server.stop()


# --- config input cannot redirect BC or Entra calls ----------------------------------------

_weird = st.sampled_from(
    [
        "/",
        "..",
        ".",
        "%2F",
        "%2e%2e",
        "?",
        "#",
        "@",
        ":",
        "\\",
        "//evil.example",
        "evil.example/",
        "@evil.example",
        "%40evil.example",
        "\r\n",
        "\u0000",
        " ",
        "'",
        "%",
        "%25",
        "\u202e",
        "🦄",
        "http://evil.example",
        "../../v1.0",
    ]
)
_fuzz = st.one_of(
    st.text(max_size=40),
    st.lists(st.one_of(_weird, st.text(max_size=5)), max_size=6).map("".join),
    st.sampled_from(
        ["7c2d0a94-3b5e-4f1a-9e8b-2c4d6f8a1b3e", "contoso.onmicrosoft.com", "Production"]
    ),
)


def _expected_segments(url: str, root: str) -> list[str]:
    u = yarl.URL(url, encoded=True)
    assert u.scheme == "https" and u.host == yarl.URL(root).host and u.port == 443, url
    assert u.user is None and u.password is None and not u.query_string and not u.fragment, url
    return [seg for seg in u.raw_path.split("/") if seg != ""]


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tenant=_fuzz, environment=_fuzz, company=_fuzz)
def test_config_input_cannot_change_bc_host_or_path(
    tenant: str, environment: str, company: str
) -> None:
    s = load_settings(
        _env_file=None,
        bc_api_url=f"https://{BC_HOST}",
        authority_url=f"https://{ENTRA_HOST}",
        client_id="3f1b6c2e-8d4a-4e9b-a7c5-1d2e3f4a5b6c",
        secret_key=Fernet.generate_key().decode(),
    )
    try:
        config = parse_config(
            {
                "tenant_id": tenant,
                "client_secret": "fuzz-secret-value",
                "environment": environment,
                "company_name": company,
            }
        )
    except ConfigValidationError:
        return
    hub = bc_hub(s)
    try:
        creds = hub.credentials(
            tenant_id=config.tenant_id,
            client_secret="fuzz-secret-value",
            environment=config.environment,
            company_name=config.company_name,
        )
        connection = hub.connection(creds)
    except (BcError, ValueError):
        return
    # BC API root: exactly /v2.0/<tenant>/<environment>/api/v2.0, each one encoded segment.
    parts = _expected_segments(connection.api_url, s.bc_api_url)
    assert len(parts) == 5 and parts[0] == "v2.0" and parts[3:] == ["api", "v2.0"], parts
    assert yarl.URL.build(path="/" + parts[1], encoded=True).path[1:] == creds.tenant_id
    assert yarl.URL.build(path="/" + parts[2], encoded=True).path[1:] == creds.environment
    # ODataV4 company root: one Company('<name>') segment holding the decoded name.
    root = connection.pages._root
    odata = _expected_segments(root, s.bc_api_url)
    assert odata[:3] == parts[:3] and odata[3] == "ODataV4" and len(odata) == 5, odata
    assert (
        odata[4]
        == "Company(" + quote("'" + creds.company_name.replace("'", "''") + "'", safe="'") + ")"
    )
    # Entra authority: exactly /<tenant> on the configured host.
    authority = f"{s.authority_url}/{creds.tenant_id}"
    assert _expected_segments(authority, s.authority_url) == [creds.tenant_id]


# --- TLS ---------------------------------------------------------------------------------------


def _creds(hub: BcHub, emulator: EmulatorHandle) -> Any:
    return hub.credentials(
        tenant_id=emulator.tenant_id,
        client_secret=emulator.client_secret,
        environment=emulator.environment,
        company_name=emulator.company_name,
    )


async def test_entra_with_untrusted_certificate_fails_closed(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    s = make_settings(
        tmp_path,
        bc_api_url=emulator.url,
        authority_url=emulator.url,
        client_id=emulator.client_id,
        ca_file=None,
    )
    await emulator.control.clear_requests()
    async with bc_hub(s) as hub:
        with pytest.raises(BcError) as caught:
            await hub.connection(_creds(hub, emulator)).list_companies()
    assert emulator.client_secret not in str(caught.value)
    # Nothing got through: the emulator never saw a request (the handshake failed).
    assert await emulator.control.requests() == []


async def test_bc_with_untrusted_certificate_fails_closed(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    s = make_settings(
        tmp_path,
        bc_api_url=emulator.url,
        authority_url=emulator.url,
        client_id=emulator.client_id,
        ca_file=emulator.ca_file,
    )
    async with bc_hub(s) as hub:
        # Entra trusted (a token is issued), BC not: the API call must not go out.
        await hub.transport.close()
        hub.transport = Transport(
            base_url=s.bc_api_url, tokens=hub.tokens, ca_file=None, options=hub.options
        )
        connection = hub.connection(_creds(hub, emulator))
        assert await connection.get_token()
        await emulator.control.clear_requests()
        with pytest.raises(BcError):
            await connection.list_companies()
        await hub.transport.close()
    assert [r for r in await emulator.control.requests() if "/api/" in r["path"]] == []


async def test_trusted_ca_file_works(emulator: EmulatorHandle, tmp_path: Path) -> None:
    """The positive control of the two above: with BC_SYNC_CA_FILE the same calls succeed."""
    s = make_settings(
        tmp_path,
        bc_api_url=emulator.url,
        authority_url=emulator.url,
        client_id=emulator.client_id,
        ca_file=emulator.ca_file,
    )
    async with bc_hub(s) as hub:
        names = [c.name for c in await hub.connection(_creds(hub, emulator)).list_companies()]
    assert emulator.company_name in names


# --- secrets at rest ---------------------------------------------------------------------------


async def test_client_secret_is_encrypted_in_the_store(
    make_store: MakeStore, db_url: str, tmp_path: Path
) -> None:
    secret = STORE_SECRET
    store = make_store()
    await store.migrate()
    config = parse_config(
        {
            "tenant_id": "7c2d0a94-3b5e-4f1a-9e8b-2c4d6f8a1b3e",
            "client_secret": secret,
            "environment": "Production",
            "company_name": "CRONUS%20Sverige%20AB",
        }
    )
    await store.configs.put("org-secret", config)
    async with store.read() as conn:
        row = (await conn.execute(select(integration_configs))).one()
    raw = repr(tuple(row))
    assert secret not in raw
    assert secret not in str(row.config)
    assert row.secret_ciphertext.startswith("gAAAA")  # a Fernet token
    stored = await store.configs.get("org-secret")
    assert stored is not None and stored.config.client_secret is not None
    assert stored.config.client_secret.get_secret_value() == secret
    assert secret not in str(stored.to_public_dict())
    if db_url.startswith("sqlite"):
        await store.close()
        for path in Path(db_url.split("///", 1)[1]).parent.iterdir():
            assert secret.encode() not in path.read_bytes(), path


async def test_api_answers_never_hold_the_token(api: TestClient[Any, Any]) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        resp = await api.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert TOKEN not in await resp.text()
