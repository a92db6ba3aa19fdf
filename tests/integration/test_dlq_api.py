"""The dead-letter routes through a real aiohttp server, as Moment's back-office calls them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from tests.support.amqp import depth
from tests.support.dead_letters import Spec, dead_ids, make_dead_letters
from worker.api.app import ApiContext, ApiServer, create_app
from worker.api.ops_routes import add_routes
from worker.config.settings import Settings
from worker.errors import CATALOGUE

TOKEN = "tok-3f9a8b7c6d5e4f"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SPECS = [
    Spec("1", org="org-a", code="BC-POSTING-GROUP-MISSING"),
    Spec("2", org="org-b", code="BC-DIMENSION-MISSING"),
    Spec("3", org="org-a", code="BC-POSTING-GROUP-MISSING"),
]


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[str]:
    with_token = settings.model_copy(update={"api_token": SecretStr(f"backoffice={TOKEN}")})
    server = ApiServer(create_app(ApiContext(with_token), [add_routes]), "127.0.0.1", 0)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


async def call(
    method: str, url: str, *, headers: dict[str, str] | None = AUTH, **kw: Any
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, **kw) as resp,
    ):
        return resp.status, await resp.json()


async def test_every_route_needs_the_token(settings: Settings, api: str) -> None:
    await make_dead_letters(settings, SPECS[:1])
    for method, path in [
        ("GET", "/v1/dead-letters"),
        ("GET", "/v1/dead-letters/ev-org-a-1"),
        ("POST", "/v1/dead-letters/replay"),
    ]:
        status, _ = await call(method, api + path, headers=None, json={})
        assert status == 401, path
        wrong = {"Authorization": "Bearer not-the-token"}
        status, _ = await call(method, api + path, headers=wrong, json={})
        assert status == 401, path
    assert await depth(settings, settings.queue("dead")) == 1
    assert await depth(settings, settings.queue("exports")) == 0


async def test_list_filters_groups_and_show(settings: Settings, api: str) -> None:
    await make_dead_letters(settings, SPECS)
    status, body = await call("GET", f"{api}/v1/dead-letters")
    assert status == 200
    assert [r["id"] for r in body["items"]] == [s.id for s in SPECS]
    assert body["items"][0]["subject"] == "customer 1"

    status, body = await call("GET", f"{api}/v1/dead-letters", params={"org": "org-a"})
    assert [r["id"] for r in body["items"]] == ["ev-org-a-1", "ev-org-a-3"]

    status, body = await call("GET", f"{api}/v1/dead-letters", params={"group_by": "code"})
    assert body["groups"] == [
        {"key": "BC-POSTING-GROUP-MISSING", "count": 2},
        {"key": "BC-DIMENSION-MISSING", "count": 1},
    ]

    status, body = await call("GET", f"{api}/v1/dead-letters", params={"since": "soon"})
    assert status == 422
    assert body["errors"][0]["field"] == "since"

    status, body = await call("GET", f"{api}/v1/dead-letters/ev-org-b-2")
    assert status == 200
    assert body["error"]["title"] == CATALOGUE["BC-DIMENSION-MISSING"].title
    assert body["envelope"]["organizationid"] == "org-b"
    status, body = await call("GET", f"{api}/v1/dead-letters/unknown-id")
    assert status == 404
    assert await dead_ids(settings) == [s.id for s in SPECS]  # nothing consumed


async def test_replay_dry_run_then_for_real_with_audit(settings: Settings, api: str) -> None:
    await make_dead_letters(settings, SPECS)
    status, body = await call(
        "POST", f"{api}/v1/dead-letters/replay", json={"org": "org-a", "dry_run": True}
    )
    assert status == 200
    assert [r["id"] for r in body["items"]] == ["ev-org-a-1", "ev-org-a-3"]
    assert await depth(settings, settings.queue("exports")) == 0

    with capture_logs() as logs:
        status, body = await call("POST", f"{api}/v1/dead-letters/replay", json={"org": "org-a"})
    assert status == 200
    assert (body["matched"], body["replayed"], body["dry_run"]) == (2, 2, False)
    assert await depth(settings, settings.queue("exports")) == 2
    assert await dead_ids(settings) == ["ev-org-b-2"]
    [audit] = [e for e in logs if e["event"] == "audit" and not e["dry_run"]]
    assert audit["actor"] == "api:backoffice"
    assert audit["filters"] == {"org": "org-a"}
    assert audit["replayed"] == 2
    assert TOKEN not in repr(logs)


async def test_replay_rejects_a_typo_instead_of_replaying_everything(
    settings: Settings, api: str
) -> None:
    await make_dead_letters(settings, SPECS[:1])
    status, body = await call(
        "POST", f"{api}/v1/dead-letters/replay", json={"organization": "org-a"}
    )
    assert status == 422
    assert body["errors"][0]["field"] == "organization"
    status, body = await call("POST", f"{api}/v1/dead-letters/replay", data=b"{nope")
    assert status == 422
    assert await depth(settings, settings.queue("dead")) == 1
