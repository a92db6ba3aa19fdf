"""Emulator conformance: TLS and the Entra ID look-alike, driven by real msal over real HTTPS.

Each test names the part of /work/shared/reference/bc-api.md (or stack-notes.md) it holds the
emulator to.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import ssl
from typing import Any

import aiohttp
import msal
import pytest
import requests
from cryptography import x509

from tests.emulator.entra import BC_SCOPE
from tests.emulator.fixtures import BCClient, EmulatorHandle

OTHER_TENANT = "9e8d7c6b-5a49-4382-b1a0-f9e8d7c6b5a4"


def msal_app(
    handle: EmulatorHandle,
    *,
    tenant: str | None = None,
    secret: str | None = None,
    client_id: str | None = None,
) -> msal.ConfidentialClientApplication:
    """stack-notes §2 recipe: own requests.Session with trust_env=False and verify=<CA file>."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(handle.ca_file)
    session.request = functools.partial(session.request, timeout=10)  # type: ignore[method-assign]
    return msal.ConfidentialClientApplication(
        client_id or handle.client_id,
        client_credential=secret or handle.client_secret,
        authority=f"{handle.url}/{tenant or handle.tenant_id}",
        instance_discovery=False,
        http_client=session,
    )


async def acquire(app: msal.ConfidentialClientApplication) -> dict[str, Any]:
    return await asyncio.to_thread(app.acquire_token_for_client, scopes=[BC_SCOPE])


async def raw_token(
    handle: EmulatorHandle, session: aiohttp.ClientSession, **form: str
) -> tuple[int, dict[str, Any]]:
    data = {
        "grant_type": "client_credentials",
        "client_id": handle.client_id,
        "client_secret": handle.client_secret,
        "scope": BC_SCOPE,
    }
    tenant = form.pop("tenant", handle.tenant_id)
    data.update(form)
    async with session.post(f"{handle.url}/{tenant}/oauth2/v2.0/token", data=data) as resp:
        return resp.status, await resp.json()


@pytest.fixture
async def session(emulator: EmulatorHandle) -> Any:
    connector = aiohttp.TCPConnector(ssl=emulator.ssl_context())
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as s:
        yield s


async def test_certificate_is_a_ca_for_127_0_0_1_and_localhost(emulator: EmulatorHandle) -> None:
    """stack-notes §2 (msal only accepts https): the CA file is a self-signed CA with SAN
    IP:127.0.0.1 and DNS:localhost, trusted only when the client is given that file."""
    cert = x509.load_pem_x509_certificate(emulator.ca_file.read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context())  # system trust only
    async with aiohttp.ClientSession(connector=connector) as s:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await s.get(f"{emulator.url}/_emulator/health")


@pytest.mark.parametrize("tenant_attr", ["tenant_id", "tenant_domain"])
async def test_discovery_document_points_at_this_server(
    emulator: EmulatorHandle, session: Any, tenant_attr: str
) -> None:
    """bc-api §2 + stack-notes §2: OpenID discovery at
    /{tenant}/v2.0/.well-known/openid-configuration
    with https issuer/authorization/token endpoints of this server; tenant by GUID or domain."""
    tenant = getattr(emulator, tenant_attr)
    async with session.get(
        f"{emulator.url}/{tenant}/v2.0/.well-known/openid-configuration"
    ) as resp:
        assert resp.status == 200
        doc = await resp.json()
    base = f"{emulator.url}/{emulator.tenant_id}"
    assert doc["issuer"] == f"{base}/v2.0"
    assert doc["authorization_endpoint"] == f"{base}/oauth2/v2.0/authorize"
    assert doc["token_endpoint"] == f"{base}/oauth2/v2.0/token"


async def test_msal_gets_a_token_that_bc_accepts_and_caches_it(
    emulator: EmulatorHandle, session: Any
) -> None:
    """bc-api §2 (client credentials, scope …/.default, expires_in ~3599) and stack-notes §2
    (msal caches tokens that live ≥ 300 s): two acquisitions make one token request."""
    app = await asyncio.to_thread(msal_app, emulator)
    first = await acquire(app)
    second = await acquire(app)
    assert first["token_type"] == "Bearer"
    assert first["expires_in"] >= 3000
    assert second["token_source"] == "cache"
    assert second["access_token"] == first["access_token"]
    stats = await emulator.control.subject_stats(emulator.tenant_id, emulator.client_id)
    assert stats is not None and stats["token_requests"] == 1
    async with session.get(
        f"{emulator.api_root}/companies",
        headers={"Authorization": f"Bearer {first['access_token']}"},
    ) as resp:
        assert resp.status == 200
        names = [c["name"] for c in (await resp.json())["value"]]
    assert emulator.company_name in names


async def test_msal_with_the_tenant_domain_as_authority(emulator: EmulatorHandle) -> None:
    """bc-api §1.1: the tenant may be given as its domain name; the token works either way."""
    app = await asyncio.to_thread(msal_app, emulator, tenant=emulator.tenant_domain)
    result = await acquire(app)
    assert "access_token" in result


async def test_wrong_secret_is_aadsts7000215(emulator: EmulatorHandle, session: Any) -> None:
    """bc-api §2 'Typical failures': invalid secret → Entra 401 invalid_client, AADSTS7000215,
    with the keys msal passes through (stack-notes §2)."""
    app = await asyncio.to_thread(msal_app, emulator, secret="wrong")
    result = await acquire(app)
    assert "access_token" not in result
    assert set(result) >= {
        "error",
        "error_description",
        "error_codes",
        "timestamp",
        "trace_id",
        "correlation_id",
        "error_uri",
    }
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215:")
    status, _ = await raw_token(emulator, session, client_secret="wrong")
    assert status == 401


async def test_unknown_tenant_is_aadsts90002_for_token_and_discovery(
    emulator: EmulatorHandle, session: Any
) -> None:
    """bc-api §2 (Entra errors) / bc-contract 'Verify on save' step 1: an unknown tenant → 400
    AADSTS90002 on the token endpoint and on discovery, so msal cannot even be constructed."""
    status, body = await raw_token(emulator, session, tenant=OTHER_TENANT)
    assert status == 400
    assert body["error"] == "invalid_request"
    assert body["error_codes"] == [90002]
    assert f"Tenant '{OTHER_TENANT}' not found" in body["error_description"]
    async with session.get(
        f"{emulator.url}/{OTHER_TENANT}/v2.0/.well-known/openid-configuration"
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["error_codes"] == [90002]
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        await asyncio.to_thread(msal_app, emulator, tenant=OTHER_TENANT)


async def test_malformed_tenant_is_aadsts900023(emulator: EmulatorHandle, session: Any) -> None:
    """bc-contract 'Verify on save' step 1 names AADSTS900023 for a tenant id that is neither a
    GUID nor a domain."""
    status, body = await raw_token(emulator, session, tenant="not-a-tenant")
    assert status == 400
    assert body["error_codes"] == [900023]


async def test_unknown_client_id_is_aadsts700016(emulator: EmulatorHandle, session: Any) -> None:
    """bc-api §2: AADSTS700016 application not found in directory."""
    status, body = await raw_token(
        emulator, session, client_id="00000000-1111-2222-3333-444444444444"
    )
    assert status == 400
    assert body["error"] == "unauthorized_client"
    assert body["error_codes"] == [700016]


async def test_scope_must_be_business_central_default(
    emulator: EmulatorHandle, session: Any
) -> None:
    """bc-api §2: scope must be https://api.businesscentral.dynamics.com/.default."""
    status, body = await raw_token(emulator, session, scope="https://graph.microsoft.com/.default")
    assert (status, body["error"]) == (400, "invalid_resource")
    status, body = await raw_token(
        emulator, session, scope="https://api.businesscentral.dynamics.com/API.ReadWrite.All"
    )
    assert (status, body["error"]) == (400, "invalid_scope")


async def test_token_answer_shape_and_lifetime(emulator: EmulatorHandle, session: Any) -> None:
    """bc-api §2: response is token_type Bearer, expires_in ~3599, opaque access_token; the
    lifetime is configurable through the control API."""
    status, body = await raw_token(emulator, session)
    assert status == 200
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3599
    assert len(body["access_token"]) >= 40 and "." not in body["access_token"]
    await emulator.control.set_limits(token_lifetime_s=7200)
    _, body = await raw_token(emulator, session)
    assert body["expires_in"] == 7200


async def test_expired_token_is_rejected_with_401(
    emulator: EmulatorHandle, bc_client: BCClient
) -> None:
    """bc-api §2: an expired token → 401 Authentication_InvalidCredentials; a new one works."""
    assert (
        await bc_client.get("/v2.0/" + emulator.tenant_id + "/Production/api/v2.0/companies")
    ).status == 200
    assert await emulator.control.expire_tokens(emulator.tenant_id) >= 1
    resp = await bc_client.get("customers")
    assert resp.status == 401
    assert resp.error_code == "Authentication_InvalidCredentials"
    bc_client.token = await emulator.token(bc_client.session)
    assert (await bc_client.get("customers")).status == 200


async def test_token_of_another_tenant_is_rejected(
    emulator: EmulatorHandle, bc_client: BCClient
) -> None:
    """bc-api §2: tokens are bound to a tenant; using one on another tenant's URL → 401."""
    await emulator.control.seed(
        {
            "tenants": [
                {
                    "id": OTHER_TENANT,
                    "apps": [{"client_id": emulator.client_id, "secret": "other-secret"}],
                    "environments": [{"name": "Production", "companies": [{"name": "Other AB"}]}],
                }
            ]
        }
    )
    _, body = await raw_token(
        emulator, bc_client.session, tenant=OTHER_TENANT, client_secret="other-secret"
    )
    other_token = body["access_token"]
    resp = await bc_client.get(f"{emulator.api_root}/companies", token=other_token)
    assert resp.status == 401
    assert resp.error_code == "Authentication_InvalidCredentials"
    assert (
        await bc_client.get(
            f"/v2.0/{OTHER_TENANT}/Production/api/v2.0/companies", token=other_token
        )
    ).status == 200


async def test_app_known_to_entra_but_not_enabled_in_bc(
    emulator: EmulatorHandle, bc_client: BCClient
) -> None:
    """bc-api §2 / §8: an app registered in Entra but not enabled on BC's "Microsoft Entra
    Applications" page gets a token but 401 Authentication_InvalidCredentials from BC."""
    await emulator.control.set_app(emulator.tenant_id, emulator.client_id, enabled_in_bc=False)
    token = await emulator.token(bc_client.session)
    resp = await bc_client.get(f"{emulator.api_root}/companies", token=token)
    assert resp.status == 401
    assert resp.error_code == "Authentication_InvalidCredentials"
    assert resp.error_message.startswith("The server has rejected the client credentials.")


@pytest.mark.parametrize(
    "authorization", [None, "Bearer", "Bearer not-a-token", "Basic dXNlcjpwdw=="]
)
async def test_missing_or_malformed_bearer_token(
    emulator: EmulatorHandle, session: Any, authorization: str | None
) -> None:
    """bc-api §2 / §9: bad token → 401 Authentication_InvalidCredentials with BC's message."""
    headers = {"Authorization": authorization} if authorization else {}
    async with session.get(f"{emulator.api_root}/companies", headers=headers) as resp:
        assert resp.status == 401
        body = await resp.json()
    assert body["error"]["code"] == "Authentication_InvalidCredentials"
    assert re.search(r"  CorrelationId:  [0-9a-f-]{36}\.$", body["error"]["message"])


async def test_changed_secret_invalidates_the_old_one(
    emulator: EmulatorHandle, session: Any
) -> None:
    """bc-api §2: the token endpoint checks the app's current secret (control API rotates it)."""
    await emulator.control.set_app(emulator.tenant_id, emulator.client_id, secret="rotated-secret")
    status, body = await raw_token(emulator, session)
    assert (status, body["error_codes"]) == (401, [7000215])
    status, _ = await raw_token(emulator, session, client_secret="rotated-secret")
    assert status == 200


async def test_client_secret_never_appears_in_the_request_log(
    emulator: EmulatorHandle, session: Any
) -> None:
    """common rule: secrets never in logs or API answers (the emulator's request log included)."""
    await raw_token(emulator, session)
    entries = await emulator.control.requests(path="/oauth2/v2.0/token")
    assert entries
    assert all(emulator.client_secret not in (e["body"] or "") for e in entries)
    assert "client_secret=***" in entries[-1]["body"]
    state = await emulator.control.state()
    assert emulator.client_secret not in str(state)
