"""The BC client under BC's limits and faults: 429 storms, 503s, hangs, expired tokens, the
5-in-flight limit, and one throttled organization next to a healthy one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tests.emulator.fixtures import EmulatorHandle
from tests.emulator.seed import DEMO
from tests.support.settings import FAST, emulator_settings
from worker.app import bc_hub
from worker.bc import (
    BcConnection,
    BcHub,
    BcThrottled,
    BcUnavailable,
    ClientOptions,
    RetryPolicy,
)

TENANT_B = "5e8a1f20-7c3d-4b6e-9f01-a2b3c4d5e6f7"
CLIENT_B = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
SECRET_B = "tenant-b-secret-value"


def make_hub(tmp_path: Path, emulator: EmulatorHandle, options: ClientOptions = FAST) -> BcHub:
    return bc_hub(emulator_settings(tmp_path, emulator), options=options)


@pytest.fixture
async def hub(emulator: EmulatorHandle, tmp_path: Path) -> AsyncIterator[BcHub]:
    async with make_hub(tmp_path, emulator) as h:
        yield h


def demo(hub: BcHub) -> BcConnection:
    return hub.connection(
        hub.credentials(
            tenant_id=DEMO.tenant_id,
            client_secret=DEMO.client_secret,
            environment=DEMO.environment,
            company_name=DEMO.company_name,
        )
    )


def metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_429_storm_is_ridden_out(hub: BcHub, emulator: EmulatorHandle) -> None:
    conn = demo(hub)
    await conn.company_id()
    # BC's own sliding window: 4 requests a second for this app, 429 with Retry-After beyond.
    await emulator.control.set_limits(rate_limit=4, rate_window_s=1.0)
    throttled_before = metric("bcsync_bc_throttled_total")
    results = await asyncio.gather(*(conn.find_customer("10000") for _ in range(12)))
    assert all(c is not None and c.number == "10000" for c in results)
    stats = await emulator.control.subject_stats(DEMO.tenant_id, DEMO.client_id)
    assert stats is not None and stats["throttled_429"] > 0
    assert metric("bcsync_bc_throttled_total") > throttled_before
    limiter = hub.transport.limiters.peek((DEMO.tenant_id, DEMO.client_id))
    assert limiter is not None and limiter.throttle_events > 0


async def test_retry_after_longer_than_the_cap_is_handed_back(
    hub: BcHub, emulator: EmulatorHandle
) -> None:
    conn = demo(hub)
    await conn.company_id()
    await emulator.control.add_fault("status", status=429, retry_after=120, path="/customers")
    with pytest.raises(BcThrottled) as info:
        await conn.find_customer("10000")
    assert info.value.retry_after is not None and info.value.retry_after >= 100
    # The caller parks the message; meanwhile the subject is paused, not hammering BC.
    calls = await emulator.control.requests(path="/customers")
    assert len(calls) == 1


async def test_503_then_success(hub: BcHub, emulator: EmulatorHandle) -> None:
    conn = demo(hub)
    await conn.company_id()
    await emulator.control.add_fault("status", status=503, count=2, path="/customers")
    created = await conn.create_customer({"number": "10007", "displayName": "Retry AB"})
    assert created.number == "10007"
    calls = await emulator.control.requests(method="POST", path="/customers")
    assert [c["status"] for c in calls] == [503, 503, 201]
    state = await emulator.control.company_state(emulator.company_ref)
    assert [c["number"] for c in state["customers"]].count("10007") == 1


async def test_ambiguous_failure_of_a_create_is_not_repeated(
    hub: BcHub, emulator: EmulatorHandle
) -> None:
    conn = demo(hub)
    await conn.company_id()
    await emulator.control.add_fault("status", status=504, count=1, path="/customers")
    with pytest.raises(BcUnavailable) as info:
        await conn.create_customer({"number": "10008", "displayName": "Maybe AB"})
    assert info.value.status == 504 and info.value.transient
    # One POST only: the caller's find-then-create decides on the next attempt.
    assert len(await emulator.control.requests(method="POST", path="/customers")) == 1
    # A read is repeated.
    await emulator.control.add_fault("status", status=504, count=1, path="/customers")
    assert await conn.find_customer("10000") is not None


async def test_hanging_bc_gives_up_within_the_timeout(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    options = ClientOptions(
        timeout_s=0.5, retry=RetryPolicy(max_attempts=2, max_wait_s=1, base_s=0.05)
    )
    async with make_hub(tmp_path, emulator, options) as hub:
        conn = demo(hub)
        await conn.company_id()
        await emulator.control.add_fault("hang", path="/customers")
        with pytest.raises(BcUnavailable) as info:
            await conn.find_customer("10000")
        assert info.value.code == "Timeout" and info.value.transient
        assert len(await emulator.control.requests(method="GET", path="/customers")) == 2
        # A create that timed out may have been applied: handed back after one try.
        with pytest.raises(BcUnavailable):
            await conn.create_customer({"number": "10009", "displayName": "Slow AB"})
        assert len(await emulator.control.requests(method="POST", path="/customers")) == 1


async def test_dropped_connection_on_a_read_is_retried(
    hub: BcHub, emulator: EmulatorHandle
) -> None:
    conn = demo(hub)
    await conn.company_id()
    await emulator.control.add_fault("drop", count=1, path="/customers")
    assert await conn.find_customer("10000") is not None


async def test_expired_token_is_refreshed_once(hub: BcHub, emulator: EmulatorHandle) -> None:
    conn = demo(hub)
    await conn.company_id()
    assert await emulator.control.expire_tokens(DEMO.tenant_id) == 1
    customer = await conn.find_customer("10000")
    assert customer is not None
    stats = await emulator.control.subject_stats(DEMO.tenant_id, DEMO.client_id)
    assert stats is not None and stats["token_requests"] == 2
    statuses = [c["status"] for c in await emulator.control.requests(path="/customers")]
    assert statuses == [401, 200]


async def test_many_concurrent_expired_calls_share_one_refresh(
    hub: BcHub, emulator: EmulatorHandle
) -> None:
    conn = demo(hub)
    await conn.company_id()
    await emulator.control.expire_tokens(DEMO.tenant_id)
    results = await asyncio.gather(*(conn.find_customer("10000") for _ in range(10)))
    assert all(results)
    stats = await emulator.control.subject_stats(DEMO.tenant_id, DEMO.client_id)
    assert stats is not None and stats["token_requests"] == 2


async def test_at_most_five_in_flight_per_app(hub: BcHub, emulator: EmulatorHandle) -> None:
    conn = demo(hub)
    await conn.company_id()
    await emulator.control.set_limits(latency_ms=30)
    results = await asyncio.gather(*(conn.find_customer("10000") for _ in range(40)))
    assert len([r for r in results if r is not None]) == 40
    stats = await emulator.control.subject_stats(DEMO.tenant_id, DEMO.client_id)
    assert stats is not None
    assert stats["max_in_flight"] == 5  # used fully …
    assert stats["max_queued"] == 0  # … and never made BC queue our requests


async def seed_tenant_b(emulator: EmulatorHandle) -> None:
    await emulator.control.seed(
        {
            "tenants": [
                {
                    "id": TENANT_B,
                    "apps": [{"client_id": CLIENT_B, "secret": SECRET_B, "enabled_in_bc": True}],
                    "environments": [
                        {
                            "name": "Production",
                            "companies": [
                                {
                                    "name": "Fabrikam AB",
                                    "customers": [{"number": "10000", "name": "B:s kund"}],
                                }
                            ],
                        }
                    ],
                }
            ]
        }
    )


async def test_one_throttled_organization_does_not_slow_another(
    hub: BcHub, emulator: EmulatorHandle
) -> None:
    await seed_tenant_b(emulator)
    conn_a = demo(hub)
    conn_b = hub.connection(
        hub.credentials(
            tenant_id=TENANT_B,
            client_id=CLIENT_B,
            client_secret=SECRET_B,
            environment="Production",
            company_name="Fabrikam AB",
        )
    )
    await asyncio.gather(conn_a.company_id(), conn_b.company_id())
    # A is throttled for a second on its first five calls; B is healthy.
    await emulator.control.add_fault(
        "status", status=429, retry_after=1, count=5, tenant=DEMO.tenant_id, path="/customers"
    )
    finished: list[str] = []

    async def call(org: str, conn: BcConnection) -> None:
        assert await conn.find_customer("10000") is not None
        finished.append(org)

    await asyncio.gather(
        *(call("A", conn_a) for _ in range(10)), *(call("B", conn_b) for _ in range(10))
    )
    assert sorted(finished) == ["A"] * 10 + ["B"] * 10  # A got through in the end
    assert finished[:10] == ["B"] * 10  # B never waited behind A's pause
    stats_b = await emulator.control.subject_stats(TENANT_B, CLIENT_B)
    assert stats_b is not None and stats_b["throttled_429"] == 0
    limiter_b = hub.transport.limiters.peek((TENANT_B, CLIENT_B))
    assert limiter_b is not None and limiter_b.throttle_events == 0


async def test_entra_server_error_is_waited_out(hub: BcHub, emulator: EmulatorHandle) -> None:
    await emulator.control.add_fault("status", status=503, count=1, path="/oauth2/v2.0/token")
    # msal refuses to ask Entra again for 5 s after a 5xx; the client waits that out.
    assert await demo(hub).company_id() == DEMO.company_id
    tokens = await emulator.control.requests(path="/oauth2/v2.0/token")
    assert [t["status"] for t in tokens] == [503, 200]


async def test_throttled_tenant_discovery_is_not_a_credentials_error(
    hub: BcHub, emulator: EmulatorHandle
) -> None:
    # A 429 on OpenID discovery must not read as "unknown tenant" (that would notify people
    # about their credentials); it is waited out like any throttling.
    await emulator.control.add_fault("status", status=429, count=1, path="openid-configuration")
    assert await demo(hub).company_id() == DEMO.company_id
    discovery = await emulator.control.requests(path="openid-configuration")
    assert [d["status"] for d in discovery][:2] == [429, 200]
