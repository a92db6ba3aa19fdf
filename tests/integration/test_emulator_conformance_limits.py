"""Emulator conformance: service limits (bc-api §6), $batch (§5.5), fault injection and control API.

Each test names the section of /work/shared/reference/bc-api.md it holds the emulator to.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from typing import Any

import aiohttp
import pytest

from tests.emulator.fixtures import BCClient, EmulatorHandle, Resp
from tests.emulator.seed import DEMO, demo_seed
from tests.emulator.server import REPO_ROOT, ControlClientError, EmulatorServer
from tests.emulator.tls import client_context


async def many(bc: BCClient, n: int, url: str = "customers?$top=1") -> list[Resp]:
    return list(await asyncio.gather(*(bc.get(url) for _ in range(n))))


# ---- §6 limits ----------------------------------------------------------------------------------


async def test_at_most_five_requests_in_flight(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-api §6: max 5 concurrent requests per service principal; extra ones queue (not fail)."""
    await emulator.control.set_limits(latency_ms=150)
    results = await many(bc_client, 12)
    assert [r.status for r in results] == [200] * 12
    stats = await emulator.control.subject_stats(emulator.tenant_id, emulator.client_id)
    assert stats is not None
    assert stats["max_in_flight"] == 5
    assert stats["max_queued"] >= 1


async def test_full_queue_answers_429(bc_client: BCClient, emulator: EmulatorHandle) -> None:
    """bc-api §6: a request queue already holding its maximum → 429 (with Retry-After, our
    choice)."""
    await emulator.control.set_limits(max_in_flight=1, max_queue=2, latency_ms=600)
    results = await many(bc_client, 6)
    statuses = sorted(r.status for r in results)
    assert statuses == [200, 200, 200, 429, 429, 429]
    throttled = next(r for r in results if r.status == 429)
    assert int(throttled.headers["Retry-After"]) >= 1
    stats = await emulator.control.subject_stats(emulator.tenant_id, emulator.client_id)
    assert stats is not None and stats["throttled_429"] == 3


async def test_request_queued_too_long_answers_503(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-api §6: queued longer than the limit (8 min in BC; configurable here) → 503."""
    await emulator.control.set_limits(max_in_flight=1, queue_timeout_s=0.1, latency_ms=500)
    results = await many(bc_client, 2)
    assert sorted(r.status for r in results) == [200, 503]
    stats = await emulator.control.subject_stats(emulator.tenant_id, emulator.client_id)
    assert stats is not None and stats["rejected_503"] == 1


async def test_rate_window_answers_429_with_retry_after(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-api §6: 6000 requests per 5-minute sliding window (configurable) → 429; Retry-After is
    UNCONFIRMED for 429 in BC — we send it."""
    await emulator.control.set_limits(rate_limit=3, rate_window_s=60)
    statuses = [(await bc_client.get("customers?$top=1")).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    resp = await bc_client.get("customers?$top=1")
    assert resp.status == 429
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert resp.error_code == "TooManyRequests"


async def test_limits_are_per_subject(bc_client: BCClient, emulator: EmulatorHandle) -> None:
    """bc-api §6: limits apply per user/service principal, not per environment."""
    await emulator.control.seed(
        {
            "tenants": [
                {
                    "id": emulator.tenant_id,
                    "apps": [
                        {
                            "client_id": "0a0b0c0d-0e0f-4a1b-8c2d-3e4f5a6b7c8d",
                            "secret": "second-app-secret",
                        }
                    ],
                }
            ]
        }
    )
    await emulator.control.set_limits(rate_limit=2)
    async with bc_client.session.post(
        f"{emulator.url}/{emulator.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "0a0b0c0d-0e0f-4a1b-8c2d-3e4f5a6b7c8d",
            "client_secret": "second-app-secret",
            "scope": "https://api.businesscentral.dynamics.com/.default",
        },
    ) as resp:
        other = (await resp.json())["access_token"]
    assert [(await bc_client.get("customers")).status for _ in range(3)] == [200, 200, 429]
    assert (await bc_client.get("customers", token=other)).status == 200


# ---- §5.5 $batch --------------------------------------------------------------------------------


def op(op_id: str, method: str, url: str, body: Any = None, **headers: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": op_id,
        "method": method,
        "url": url,
        "headers": {"Content-Type": "application/json", **headers},
    }
    if body is not None:
        out["body"] = body
    return out


async def batch(
    bc: BCClient, emulator: EmulatorHandle, ops: list[dict[str, Any]], **headers: str
) -> Resp:
    return await bc.post(f"{emulator.api_root}/$batch", {"requests": ops}, headers=headers)


async def test_batch_runs_relative_operations(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-api §5.5: {"requests":[{id, method, url (relative), headers, body}]} →
    {"responses":[{id, status, headers, body}]}, each op validated like a single request."""
    cid = emulator.company_id
    resp = await batch(
        bc_client,
        emulator,
        [
            op(
                "1",
                "POST",
                f"companies({cid})/customers",
                {"number": "B100", "displayName": "Batch AB"},
            ),
            op("2", "GET", f"companies({cid})/customers?$filter=number eq 'B100'"),
            op("3", "POST", f"companies({cid})/customers", {"displayName": "x" * 101}),
        ],
    )
    assert resp.status == 200
    by_id = {r["id"]: r for r in resp.body["responses"]}
    assert by_id["1"]["status"] == 201 and by_id["1"]["body"]["number"] == "B100"
    assert [c["displayName"] for c in by_id["2"]["body"]["value"]] == ["Batch AB"]
    assert by_id["3"]["status"] == 400
    assert by_id["3"]["body"]["error"]["code"] == "Application_StringExceededLength"
    inner = [e for e in await emulator.control.requests() if e["batch_parent"] is not None]
    assert [e["method"] for e in inner] == ["POST", "GET", "POST"]


async def test_batch_line_dimensions_as_the_worker_sends_them(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-contract 'Invoices': several lines' dimensionSetLines POSTs in one $batch."""
    inv = (
        await bc_client.post(
            "salesInvoices",
            {
                "customerNumber": "10000",
                "salesInvoiceLines": [
                    {
                        "lineType": "Account",
                        "lineObjectNumber": "3010",
                        "quantity": 1,
                        "unitPrice": 10,
                        "taxCode": "25",
                    },
                    {
                        "lineType": "Account",
                        "lineObjectNumber": "3010",
                        "quantity": 1,
                        "unitPrice": 20,
                        "taxCode": "25",
                    },
                ],
            },
        )
    ).body
    lines = (await bc_client.get(f"salesInvoices({inv['id']})/salesInvoiceLines")).body["value"]
    cid = emulator.company_id
    ops = [
        op(
            f"{i}-{dim}",
            "POST",
            f"companies({cid})/salesInvoiceLines({ln['id']})/dimensionSetLines",
            {"code": dim, "valueCode": val},
            **{"If-Match": "*"},
        )
        for i, ln in enumerate(lines)
        for dim, val in (("PROJEKT", "4005"), ("AVDELNING", "200"))
    ]
    resp = await batch(bc_client, emulator, ops)
    assert [r["status"] for r in resp.body["responses"]] == [201] * 4
    state = await emulator.control.company_state(emulator.company_ref)
    saved = next(i for i in state["salesInvoices"] if i["id"] == inv["id"])
    assert [
        sorted(d["code"] for d in ln["dimensionSetLines"]) for ln in saved["salesInvoiceLines"]
    ] == [["AVDELNING", "PROJEKT"], ["AVDELNING", "PROJEKT"]]


async def test_batch_isolation_snapshot_is_all_or_nothing(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-api §5.5: 'Isolation: snapshot' → one transaction; any failure rolls back all."""
    cid = emulator.company_id
    ops = [
        op(
            "1",
            "POST",
            f"companies({cid})/customers",
            {"number": "S1", "displayName": "Snapshot AB"},
        ),
        op(
            "2",
            "POST",
            f"companies({cid})/customers",
            {"number": "10000", "displayName": "Duplicate"},
        ),
        op("3", "POST", f"companies({cid})/customers", {"number": "S3", "displayName": "Never"}),
    ]
    resp = await batch(bc_client, emulator, ops, Isolation="snapshot")
    assert [r["status"] for r in resp.body["responses"]] == [409, 409, 409]
    assert (await bc_client.get("customers?$filter=number eq 'S1'")).body["value"] == []
    resp = await batch(bc_client, emulator, ops)  # without isolation: independent operations
    assert [r["status"] for r in resp.body["responses"]] == [201, 409, 201]


async def test_batch_limit_of_100_operations(bc_client: BCClient, emulator: EmulatorHandle) -> None:
    """bc-api §6: max 100 operations per batch (error code UNCONFIRMED → 400 BadRequest)."""
    ops = [
        op(str(i), "GET", f"companies({emulator.company_id})/customers?$top=1") for i in range(101)
    ]
    resp = await batch(bc_client, emulator, ops)
    assert (resp.status, resp.error_code) == (400, "BadRequest")
    assert "Only 100 batch parts are allowed" in resp.error_message
    resp = await batch(bc_client, emulator, ops[:100])
    assert resp.status == 200 and len(resp.body["responses"]) == 100


async def test_batch_operations_count_against_the_rate_limit(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-api §5.5 (UNCONFIRMED whether inner operations count) → stricter: a batch costs 1 + its
    operations in the rate window."""
    await emulator.control.set_limits(rate_limit=5)
    ops = [
        op(str(i), "GET", f"companies({emulator.company_id})/customers?$top=1") for i in range(5)
    ]
    resp = await batch(bc_client, emulator, ops)
    assert resp.status == 429
    assert (await batch(bc_client, emulator, ops[:4])).status == 200


# ---- faults -------------------------------------------------------------------------------------


async def test_status_fault_with_retry_after_then_recovery(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-api §6 (503 with Retry-After for 502/503): an injected 503 applied once, BC-like body."""
    await emulator.control.add_fault(
        "status", status=503, retry_after=2, count=1, path=r"/customers$"
    )
    first = await bc_client.get("customers")
    assert first.status == 503
    assert first.headers["Retry-After"] == "2"
    assert first.error_code == "ServiceUnavailable"
    assert (await bc_client.get("customers")).status == 200
    assert (await emulator.control.faults())[0]["applied"] == 1


async def test_faults_match_method_path_and_tenant(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """Fault rules match method + decoded-path regex + tenant (GUID or domain alias)."""
    await emulator.control.add_fault(
        "status", status=500, method="POST", path="customers", tenant=emulator.tenant_domain
    )
    await emulator.control.add_fault(
        "status", status=502, tenant="11111111-2222-4333-8444-555555555555"
    )
    assert (await bc_client.get("customers")).status == 200
    resp = await bc_client.post("customers", {"displayName": "Fault AB"})
    assert (resp.status, resp.error_code) == (500, "Internal_ServerError")


async def test_probabilistic_faults_are_reproducible_with_a_seed(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """Faults with probability < 1 use a seedable RNG: the same seed gives the same outcomes."""

    async def run() -> list[int]:
        await emulator.control.clear_faults()
        await emulator.control.add_fault("status", status=503, probability=0.5, seed=42)
        return [(await bc_client.get("customers?$top=1")).status for _ in range(16)]

    first, second = await run(), await run()
    assert first == second
    assert {200, 503} == set(first)


async def test_latency_fault_is_applied(bc_client: BCClient, emulator: EmulatorHandle) -> None:
    """A latency rule delays but does not change the answer."""
    await emulator.control.add_fault("latency", latency_ms=50, count=2)
    assert [r.status for r in await many(bc_client, 3)] == [200, 200, 200]
    assert (await emulator.control.faults())[0]["applied"] == 2


async def test_expire_tokens_fault(bc_client: BCClient, emulator: EmulatorHandle) -> None:
    """bc-api §2: tokens of a tenant expire → 401 Authentication_InvalidCredentials; a new token
    works."""
    await emulator.control.add_fault("expire_tokens", tenant=emulator.tenant_id, count=1)
    resp = await bc_client.get("customers")
    assert (resp.status, resp.error_code) == (401, "Authentication_InvalidCredentials")
    bc_client.token = await emulator.token(bc_client.session)
    assert (await bc_client.get("customers")).status == 200


async def test_drop_fault_closes_the_connection(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """Fault 'drop': the TCP connection closes without an answer (a transient client error)."""
    await emulator.control.add_fault("drop", path="customers")
    with pytest.raises(aiohttp.ClientConnectionError):
        await bc_client.get("customers")
    await emulator.control.clear_faults()
    assert (await bc_client.get("customers")).status == 200
    dropped = await emulator.control.requests(path="/customers")
    assert dropped[0]["status"] is None and dropped[0]["fault"] == "drop"


async def test_after_faults_keep_the_effect_and_lose_the_answer(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """Faults with ``after``: the request is served (BC did the work), then the answer is lost
    (drop) or replaced (status): the ambiguous failures a client must survive."""
    await emulator.control.add_fault("drop", method="POST", path="customers$", after=True, count=1)
    with pytest.raises(aiohttp.ClientConnectionError):
        await bc_client.post("customers", {"number": "AFTER1", "displayName": "After AB"})
    await emulator.control.add_fault(
        "status", status=504, method="POST", path="customers$", after=True, count=1
    )
    resp = await bc_client.post("customers", {"number": "AFTER2", "displayName": "After AB"})
    assert (resp.status, resp.error_code) == (504, "GatewayTimeout")
    found = await bc_client.get("customers?$filter=startswith(number,'AFTER')")
    assert sorted(c["number"] for c in found.body["value"]) == ["AFTER1", "AFTER2"]
    with pytest.raises(ControlClientError):
        await emulator.control.add_fault("latency", after=True)


async def test_token_endpoint_faults(bc_client: BCClient, emulator: EmulatorHandle) -> None:
    """Faults apply to the Entra endpoints too (e.g. a 503 from the token endpoint)."""
    await emulator.control.add_fault("status", status=503, path="oauth2", count=1)
    with pytest.raises(RuntimeError):
        await emulator.token(bc_client.session)
    assert await emulator.token(bc_client.session)


async def test_hang_in_process_server_ends_with_client_and_never_wedges_shutdown() -> None:
    """Fault 'hang': no answer until the client gives up; stopping the server is not blocked.
    Also shows EmulatorServer running in the test's own event loop."""
    server = await EmulatorServer().start()
    try:
        await server.control.seed(demo_seed())
        await server.control.add_fault("hang", path="companies")
        connector = aiohttp.TCPConnector(ssl=client_context(server.ca_file))
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.post(
                f"{server.url}/{DEMO.tenant_id}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": DEMO.client_id,
                    "client_secret": DEMO.client_secret,
                    "scope": "https://api.businesscentral.dynamics.com/.default",
                },
            ) as resp:
                token = (await resp.json())["access_token"]
            url = f"{server.url}/v2.0/{DEMO.tenant_id}/Production/api/v2.0/companies"
            with pytest.raises(asyncio.TimeoutError):
                await session.get(
                    url,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=aiohttp.ClientTimeout(total=0.3),
                )
            pending = asyncio.ensure_future(
                session.get(url, headers={"Authorization": f"Bearer {token}"})
            )
            await asyncio.sleep(0.1)
            await asyncio.wait_for(server.stop(), 10)
            with pytest.raises(aiohttp.ClientError):
                await pending
    finally:
        await server.stop()


# ---- control API --------------------------------------------------------------------------------


async def test_request_log_filters_and_fields(
    bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """Control API: the request log records seq, time, tenant, client, method, decoded and raw
    path, query, status, BC error code; filterable by tenant (GUID or domain) and path."""
    await bc_client.get("customers?$filter=number eq '10000'")
    await bc_client.post("customers", {"number": "10000", "displayName": "dup"})
    entries = await emulator.control.requests(tenant=emulator.tenant_domain, path="/customers")
    assert [(e["method"], e["status"], e["code"]) for e in entries] == [
        ("GET", 200, None),
        ("POST", 409, "Internal_EntityWithSameKeyExists"),
    ]
    first = entries[0]
    assert first["tenant"] == emulator.tenant_id and first["client"] == emulator.client_id
    assert "number eq '10000'" in first["query"]
    assert first["raw_path"].endswith("/customers") and re.match(r"^\d{4}-", first["time"])
    assert entries[1]["body"] and "dup" in entries[1]["body"]


async def test_reset_one_tenant_keeps_the_others(emulator: EmulatorHandle) -> None:
    """Control API: POST /_emulator/reset {"tenant"} forgets only that tenant."""
    other = "9e8d7c6b-5a49-4382-b1a0-f9e8d7c6b5a4"
    await emulator.control.seed({"tenants": [{"id": other}]})
    await emulator.control.reset(other)
    ids = [t["id"] for t in (await emulator.control.state())["tenants"]]
    assert ids == [emulator.tenant_id]


async def test_seed_is_idempotent_and_strict(emulator: EmulatorHandle) -> None:
    """Control API: seeding twice changes nothing; unknown keys are rejected."""
    before = await emulator.control.company_state(emulator.company_ref)
    await emulator.control.seed(demo_seed())
    after = await emulator.control.company_state(emulator.company_ref)
    assert [c["number"] for c in after["customers"]] == [c["number"] for c in before["customers"]]
    assert len(after["purchaseInvoices"]) == len(before["purchaseInvoices"])
    with pytest.raises(Exception, match="unknown keys"):
        await emulator.control.seed({"tenants": [{"id": emulator.tenant_id, "colour": "blue"}]})


async def test_config_no_longer_matches_bc(bc_client: BCClient, emulator: EmulatorHandle) -> None:
    """Control API mutations simulate an admin changing BC: a deleted dimension disappears from
    the API and from General Ledger Setup."""
    await emulator.control.delete("dimension", "AVDELNING", at=emulator.company_ref)
    codes = [d["code"] for d in (await bc_client.get("dimensions")).body["value"]]
    assert "AVDELNING" not in codes
    assert (await bc_client.get("generalLedgerSetup")).body["value"][0][
        "shortcutDimension2Code"
    ] == ""


def test_command_line_prints_urls_ca_file_and_curl_example() -> None:
    """Issue: `python -m tests.emulator --port 0 --seed demo` prints its URLs, CA file and a curl
    example."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.emulator", "--port", "0", "--seed", "demo"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(11)]
    finally:
        proc.terminate()
        proc.wait(10)
    text = "".join(lines)
    assert re.search(r"BC_SYNC_BC_API_URL=https://127\.0\.0\.1:\d+", text)
    assert "BC_SYNC_CA_FILE=" in text
    assert (
        "curl -s --cacert" in text and "oauth2/v2.0/token" in text and "/api/v2.0/companies" in text
    )
    assert proc.returncode == 0
