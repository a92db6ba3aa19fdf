"""The integration log end to end: invoices exported through the real broker and the emulator,
then read through the admin API (a real aiohttp server, bearer auth) and ``bc-sync log``: a
posted invoice with its steps and BC number, a dead-lettered invoice with its error."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from tests.support.exports import ORG, Exports, account_invoice
from worker.api import config_routes, objects_routes
from worker.api.app import ApiContext, ApiServer, create_app
from worker.cli import build_parser
from worker.ops.integration_log import IntegrationLog

TOKEN = "tok-ledger-7e3d91"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BASE = "/v1/organizations/{org}/integrations/business-central/objects"


@pytest.fixture
async def exported(exports: Exports) -> Exports:
    """A posted invoice (1864) and one dead-lettered for a missing G/L account (1866)."""
    good = await exports.send("moment.invoice.created", account_invoice("1864", "3010"))
    bad = await exports.send("moment.invoice.created", account_invoice("1866", "9999"))
    assert await exports.done(good) == ["succeeded"]
    assert await exports.done(bad) == ["dead_lettered"]
    await exports.runtime.ledger.flush()
    return exports


@pytest.fixture
async def api(exported: Exports) -> AsyncIterator[str]:
    settings = exported.settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    ctx = ApiContext(settings, integration_log=IntegrationLog(exported.runtime.store))
    app = create_app(ctx, [config_routes.add_routes, objects_routes.add_routes])
    server = ApiServer(app, "127.0.0.1", 0)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}" + BASE.format(org=ORG)
    finally:
        await server.stop()


async def get(
    url: str,
    *,
    headers: dict[str, str] | None = AUTH,
    query: Mapping[str, str] | None = None,
    **params: str,
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers, params={**(query or {}), **params}) as resp,
    ):
        return resp.status, await resp.json()


async def test_api_shows_the_posted_invoice_with_its_steps(exported: Exports, api: str) -> None:
    posted = await exported.posted("1864")
    status, body = await get(api, type="invoice", number="1864")
    assert status == 200
    [row] = body["objects"]
    assert (row["state"], row["bc_number"], row["moment_id"]) == (
        "synced",
        posted["number"],
        "i-1864",
    )
    assert row["error"] is None

    status, detail = await get(f"{api}/invoice/i-1864")
    assert status == 200
    steps = [s["step"] for s in detail["history"]]
    assert steps == [
        "received",
        "bc create draft",
        "bc set line dimensions",
        "bc post invoice",
        "synced",
    ]
    assert detail["history"][-1]["detail"] == f"Business Central number {posted['number']}"


async def test_api_shows_the_dead_lettered_invoice_with_its_error(api: str) -> None:
    status, body = await get(api, state="failed")
    assert status == 200
    [row] = body["objects"]
    assert (row["moment_number"], row["state"], row["bc_number"]) == ("1866", "failed", None)
    assert row["error"]["code"] == "BC-ACCOUNT-MISSING"
    assert "9999" in row["error"]["message"]
    status, detail = await get(f"{api}/invoice/i-1866")
    steps = {s["step"]: s for s in detail["history"]}
    assert steps["dead-lettered"]["code"] == "BC-ACCOUNT-MISSING"
    assert steps["bc create draft"]["detail"].startswith("failed: 400")
    # Moment heard of it once, in bc.sync.status.
    assert steps["status sent"]["detail"] == "bc.sync.status failed"


async def test_api_filters_pages_and_refuses_bad_input(exported: Exports, api: str) -> None:
    status, body = await get(api, headers=None)
    assert status == 401
    status, body = await get(api)
    types = {(o["object_type"], o["moment_number"]) for o in body["objects"]}
    assert types == {("invoice", "1864"), ("invoice", "1866")}
    updated = [o["updated_at"] for o in body["objects"]]
    assert updated == sorted(updated, reverse=True)

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "1", **({"cursor": cursor} if cursor else {})}
        status, page = await get(api, query=params)
        assert status == 200 and len(page["objects"]) <= 1
        seen += [o["moment_id"] for o in page["objects"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [o["moment_id"] for o in body["objects"]]

    for bad in ({"type": "order"}, {"state": "lost"}, {"since": "yesterday"}, {"limit": "0"}):
        status, answer = await get(api, query=bad)
        assert status == 422 and answer["errors"][0]["field"] == next(iter(bad))
    status, answer = await get(api, cursor="not-a-cursor")
    assert status == 422
    status, _ = await get(f"{api}/invoice/i-404")
    assert status == 404
    status, _ = await get(api, since="1h", number="1864")
    assert status == 200 and len(_["objects"]) == 1


async def run_log(exports: Exports, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    args = build_parser().parse_args(["log", ORG, *argv])
    capsys.readouterr()
    assert await args.func(args, exports.settings) == 0
    return capsys.readouterr().out


async def test_cli_shows_the_same_as_a_table_and_as_json(
    exported: Exports, capsys: pytest.CaptureFixture[str]
) -> None:
    posted = await exported.posted("1864")
    table = await run_log(exported, capsys, "--type", "invoice")
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["UPDATED", "(UTC)", "TYPE", "NUMBER"]
    row_1864 = next(line for line in lines if " 1864 " in line)
    assert "synced" in row_1864 and posted["number"] in row_1864
    row_1866 = next(line for line in lines if " 1866 " in line)
    assert "failed" in row_1866 and "BC-ACCOUNT-MISSING" in row_1866

    steps = await run_log(exported, capsys, "--number", "1864")
    assert "bc post invoice" in steps and "received" in steps

    raw = await run_log(exported, capsys, "--state", "failed", "--json")
    answer = json.loads(raw[raw.index("{") :])
    [row] = answer["objects"]
    assert row["error"]["code"] == "BC-ACCOUNT-MISSING"
