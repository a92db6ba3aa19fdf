"""The configuration routes through a real aiohttp server, as Moment's dialog calls them: real
emulator over HTTPS with real msal, real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from tests.emulator.fixtures import EmulatorHandle
from tests.emulator.seed import DEMO
from tests.support.db import MakeStore
from tests.support.dead_letters import Spec, make_dead_letters
from tests.support.factories import dialog
from tests.support.net import closed_port_url
from tests.support.settings import API_TOKEN, FAST_VERIFY, emulator_settings
from worker.api.app import ApiContext, ApiServer, create_app
from worker.api.config_routes import add_routes
from worker.app import bc_hub
from worker.bc import BcHub
from worker.config.settings import Settings
from worker.ops.dlq import DeadLetters
from worker.ops.sampler import DeadLetterCounts
from worker.setup.service import ConfigService
from worker.store import ConfigCache, Store

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
ORG = "org-acme"
PATH = f"/v1/organizations/{ORG}/integrations/business-central"


@dataclass
class Api:
    url: str
    store: Store
    cache: ConfigCache
    hub: BcHub

    async def call(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = AUTH,
        **kw: Any,
    ) -> tuple[int, Any, dict[str, str]]:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path, headers=headers, **kw) as resp,
        ):
            return resp.status, await resp.json(), dict(resp.headers)


async def start_api(settings: Settings, store: Store, hub: BcHub) -> AsyncIterator[Api]:
    cache = ConfigCache(store)
    ctx = ApiContext(settings, config=ConfigService(store, hub, cache))
    server = ApiServer(create_app(ctx, [add_routes]), "127.0.0.1", 0)
    await server.start()
    try:
        yield Api(f"http://127.0.0.1:{server.port}", store, cache, hub)
    finally:
        await server.stop()


@pytest.fixture
async def api(
    tmp_path: Path, emulator: EmulatorHandle, make_store: MakeStore
) -> AsyncIterator[Api]:
    store = make_store()
    await store.migrate()
    settings = emulator_settings(tmp_path, emulator)
    async with bc_hub(settings, options=FAST_VERIFY) as hub:
        async for api in start_api(settings, store, hub):
            yield api


def sqlite_files(db_url: str) -> list[Path]:
    path = Path(db_url.split("///", 1)[1])
    return [p for p in path.parent.iterdir() if p.name.startswith(path.name)]


async def test_round_trip_created_updated_get_delete(
    api: Api, db_url: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        status, body, _ = await api.call("PUT", PATH, json=dialog())
        assert (status, body) == (201, {"status": "Created"})
        # The worker in this process sees the new config at once.
        cached = await api.cache.config(ORG)
        assert cached is not None and cached.company_name == "CRONUS Sverige AB"

        status, body, _ = await api.call("PUT", PATH, json=dialog(notes="second save"))
        assert (status, body) == (200, {"status": "Updated"})

        status, body, _ = await api.call("GET", PATH)
        assert status == 200
        assert "client_secret" not in body
        assert body["client_secret_set"] is True
        assert body["company_name"] == "CRONUS Sverige AB"  # decoded once, stored decoded
        assert body["notes"] == "second save"
        assert body["version"] == 2
        assert body["customer_posting_groups"]["abroad"] == {
            "gen_bus_posting_group": "EXPORT",
            "customer_posting_group": "KUNDER-EXP",
        }

        # A rejected secret: 422, and the secret is nowhere in the answer or the logs.
        status, body, _ = await api.call(
            "PUT", PATH, json=dialog(client_secret="wrong-secret-Zq81x")
        )
        assert status == 422
        assert body["errors"][0]["field"] == "client_secret"

        status, body, _ = await api.call("DELETE", PATH)
        assert (status, body) == (200, {"status": "Deleted"})
        assert await api.cache.config(ORG) is None
        assert (await api.call("GET", PATH))[0] == 404
        assert (await api.call("DELETE", PATH))[0] == 404

    audit = [(e["action"], e["actor"], e["org"]) for e in logs if e["event"] == "audit"]
    assert audit == [
        ("config.created", "api:backoffice", ORG),
        ("config.updated", "api:backoffice", ORG),
        ("config.deleted", "api:backoffice", ORG),
    ]
    rejected = [e for e in logs if e["event"] == "config.rejected"]
    assert [(e["actor"], e["errors"]) for e in rejected] == [
        ("api:backoffice", ["client_secret (secret_rejected)"])
    ]
    everything = repr(logs) + caplog.text + "".join(capsys.readouterr())
    for secret in (DEMO.client_secret, "wrong-secret-Zq81x"):
        assert secret not in everything
    if db_url.startswith("sqlite"):
        for path in sqlite_files(db_url):
            assert DEMO.client_secret.encode() not in path.read_bytes(), path


async def test_the_database_file_holds_no_plaintext_secret(api: Api, db_url: str) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("a file check: SQLite")
    assert (await api.call("PUT", PATH, json=dialog()))[0] == 201
    await api.store.close()  # checkpoint the write-ahead log into the file
    files = sqlite_files(db_url)
    assert files
    for path in files:
        data = path.read_bytes()
        assert DEMO.client_secret.encode() not in data
        assert DEMO.client_secret.encode("utf-16-le") not in data


async def test_field_errors_are_422_and_nothing_is_saved(api: Api) -> None:
    status, body, _ = await api.call(
        "PUT", PATH, json=dialog(company_name="CRONUS Sverge AB", project_dimension="PROJEKTT")
    )
    assert status == 422
    assert [(e["field"], e["code"]) for e in body["errors"]] == [("company_name", "not_found")]
    assert "Did you mean 'CRONUS Sverige AB'?" in body["errors"][0]["message"]
    # The model's own rules answer before BC is asked.
    status, body, _ = await api.call("PUT", PATH, json=dialog(project_dimension=None))
    assert status == 422
    assert body["errors"] == [
        {
            "field": "project_dimension",
            "code": "required",
            "message": "Project dimension is required when Export projects is on.",
        }
    ]
    status, body, _ = await api.call("PUT", PATH, data=b"{not json")
    assert (status, body["errors"][0]["field"]) == (422, "body")
    assert (await api.call("GET", PATH))[0] == 404


async def test_an_update_without_the_secret_keeps_the_stored_one(api: Api) -> None:
    creating = dialog()
    del creating["client_secret"]
    status, body, _ = await api.call("PUT", PATH, json=creating)
    assert status == 422
    assert body["errors"][0]["field"] == "client_secret"
    assert body["errors"][0]["code"] == "required"

    assert (await api.call("PUT", PATH, json=dialog()))[0] == 201
    status, body, _ = await api.call(
        "PUT", PATH, json=dialog(client_secret=None, notes="no secret typed")
    )
    assert (status, body) == (200, {"status": "Updated"})
    status, body, _ = await api.call("PUT", PATH, json=dialog(client_secret="", environment="X"))
    assert status == 422
    assert body["errors"][0]["field"] == "environment"  # verified with the stored secret

    # The stored secret still works: a later verification passes with it.
    facts = await ConfigService(api.store, api.hub).verify(ORG)
    assert facts.id == DEMO.company_id
    stored = await api.store.configs.get(ORG)
    assert stored is not None and stored.config.notes == "no secret typed"


async def test_bc_unreachable_is_502_with_a_retry_hint(
    tmp_path: Path, emulator: EmulatorHandle, make_store: MakeStore
) -> None:
    store = make_store()
    await store.migrate()
    url = closed_port_url()
    settings = emulator_settings(tmp_path, emulator, bc_api_url=url, authority_url=url)
    async with bc_hub(settings, options=FAST_VERIFY) as hub:
        async for api in start_api(settings, store, hub):
            status, body, headers = await api.call("PUT", PATH, json=dialog())
            assert status == 502
            assert body["error"] == "bc_unreachable"
            assert "try again" in body["message"]
            assert int(headers["Retry-After"]) == body["retry_after"] >= 1
            status, body, _ = await api.call("POST", PATH + "/options", json=dialog())
            assert status == 502
    assert await store.configs.get(ORG) is None


async def test_every_config_route_needs_the_token(api: Api) -> None:
    routes = [
        ("PUT", PATH),
        ("GET", PATH),
        ("DELETE", PATH),
        ("POST", PATH + "/options"),
        ("GET", PATH + "/status"),
    ]
    for method, path in routes:
        for headers in (None, {"Authorization": "Bearer not-the-token"}, {"Authorization": ""}):
            status, body, _ = await api.call(method, path, headers=headers, json=dialog())
            assert (status, body) == (401, {"error": "unauthorized"}), (method, path, headers)
    assert await api.store.configs.get(ORG) is None


async def test_concurrent_puts_leave_one_consistent_row(api: Api) -> None:
    bodies = [dialog(notes=f"save {i}", project_dimension="PROJEKT") for i in range(5)]
    results = await asyncio.gather(*(api.call("PUT", PATH, json=b) for b in bodies))
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200, 200, 200, 200, 201]
    status, body, _ = await api.call("GET", PATH)
    assert status == 200
    assert body["version"] == 5
    assert body["notes"] in {b["notes"] for b in bodies}
    stored = await api.store.configs.get(ORG)
    assert stored is not None
    assert stored.config.client_secret is not None
    assert stored.config.client_secret.get_secret_value() == DEMO.client_secret


async def test_options_fill_the_dialogs_drop_downs(api: Api) -> None:
    credentials = {
        "tenant_id": DEMO.tenant_domain,
        "client_secret": DEMO.client_secret,
        "environment": DEMO.environment,
    }
    status, body, _ = await api.call("POST", PATH + "/options", json=credentials)
    assert status == 200
    assert sorted(c["name"] for c in body["companies"]) == [
        "CRONUS International Ltd.",
        "CRONUS Sverige AB",
    ]
    assert body["company"] is None

    status, body, _ = await api.call(
        "POST", PATH + "/options", json={**credentials, "company_name": "CRONUS%20Sverige%20AB"}
    )
    assert status == 200
    assert body["company"]["country"] == "SE"
    assert body["company"]["local_currency"] == "SEK"
    dims = {d["code"]: d for d in body["dimensions"]}
    assert dims["PROJEKT"]["in_general_ledger_setup"] is True
    assert dims["PROJEKT"]["shortcut_dimension"] == 1
    assert dims["AVDELNING"]["shortcut_dimension"] == 2
    assert dims["KOSTNADSSTÄLLE"]["in_general_ledger_setup"] is False
    assert sorted(g["code"] for g in body["gen_bus_posting_groups"]) == [
        "EU",
        "EXPORT",
        "INRIKES",
    ]
    assert sorted(g["code"] for g in body["customer_posting_groups"]) == ["KUNDER", "KUNDER-EXP"]
    assert body["issues"] == []

    # The dialog may post its whole form; the other company has no pages published.
    form = dialog(company_name=DEMO.other_company_name)
    status, body, _ = await api.call("POST", PATH + "/options", json=form)
    assert status == 200
    assert body["company"]["local_currency"] == "GBP"
    assert body["gen_bus_posting_groups"] is None
    assert [i["code"] for i in body["issues"]] == ["service_not_published"] * 4
    assert {i["field"] for i in body["issues"]} == {"customer_posting_groups", "project_dimension"}

    status, body, _ = await api.call(
        "POST", PATH + "/options", json={**credentials, "company_name": "Cronus"}
    )
    assert status == 200
    assert len(body["companies"]) == 2
    assert [i["field"] for i in body["issues"]] == ["company_name"]

    status, body, _ = await api.call(
        "POST", PATH + "/options", json={**credentials, "client_secret": "nope-nope-nope"}
    )
    assert status == 422
    assert body["errors"][0]["field"] == "client_secret"

    # Without a secret, the organization's stored one is used (none yet: 422).
    no_secret = {k: v for k, v in credentials.items() if k != "client_secret"}
    status, body, _ = await api.call("POST", PATH + "/options", json=no_secret)
    assert (status, body["errors"][0]["code"]) == (422, "required")
    assert (await api.call("PUT", PATH, json=dialog()))[0] == 201
    status, body, _ = await api.call("POST", PATH + "/options", json=no_secret)
    assert status == 200
    assert len(body["companies"]) == 2


async def test_status_shows_outcomes_and_dead_letters(
    settings: Settings, tmp_path: Path, emulator: EmulatorHandle, make_store: MakeStore
) -> None:
    await make_dead_letters(
        settings,
        [Spec("1", org=ORG), Spec("2", org="org-other"), Spec("3", org=ORG, code="BC-X")],
    )
    store = make_store()
    await store.migrate()
    await store.record_success(ORG, "customer", "10006")
    await store.record_failure(ORG, "invoice", "BC-DIMENSION-MISSING", "Dimension missing")
    api_settings = emulator_settings(tmp_path, emulator, amqp_url=settings.amqp_url).model_copy(
        update={"queue_prefix": settings.queue_prefix, "exchange": settings.exchange}
    )
    async with bc_hub(api_settings, options=FAST_VERIFY) as hub:
        async for api in start_api(api_settings, store, hub):
            status, body, _ = await api.call("GET", PATH + "/status")
            assert status == 200
            assert body["organization"] == ORG
            assert body["configuration"] == {"configured": False}
            objects = {o["object_type"]: o for o in body["objects"]}
            assert objects["customer"]["last_success_ref"] == "10006"
            assert objects["invoice"]["last_failure_code"] == "BC-DIMENSION-MISSING"
            assert body["dead_letters"] == {
                "count": 2,
                "by_code": {"BC-POSTING-GROUP-MISSING": 1, "BC-X": 1},
            }
            assert (await api.call("PUT", PATH, json=dialog()))[0] == 201
            status, body, _ = await api.call("GET", PATH + "/status")
            assert body["configuration"]["configured"] is True
            assert body["configuration"]["version"] == 1


async def test_the_routes_find_store_hub_and_cache_on_the_runtime(
    tmp_path: Path, emulator: EmulatorHandle, make_store: MakeStore
) -> None:
    """As ``bc-sync run`` wires them: the config service on the runtime's store, hub and cache."""
    store = make_store()
    await store.migrate()
    settings = emulator_settings(tmp_path, emulator)
    async with bc_hub(settings, options=FAST_VERIFY) as hub:
        cache = ConfigCache(store, ttl=3600)
        assert await cache.config(ORG) is None  # cached as "not configured" for an hour
        runtime = SimpleNamespace(store=store, hub=hub, configs=cache)
        ctx = ApiContext(
            settings, config=ConfigService(runtime.store, runtime.hub, runtime.configs)
        )
        server = ApiServer(create_app(ctx, [add_routes]), "127.0.0.1", 0)
        await server.start()
        try:
            api = Api(f"http://127.0.0.1:{server.port}", store, cache, hub)
            assert (await api.call("PUT", PATH, json=dialog()))[0] == 201
        finally:
            await server.stop()
        # The save invalidated the runtime's cache: the worker sees it without waiting.
        assert await cache.config(ORG) is not None


async def test_status_counts_dead_letters_from_one_scan_not_one_per_call(
    settings: Settings, tmp_path: Path, emulator: EmulatorHandle, make_store: MakeStore
) -> None:
    """Moment's dialog polls the status route: a call must not scan the whole dead-letter
    queue each time (``ApiContext.dead_letter_counts`` serves calls from one scan)."""
    await make_dead_letters(settings, [Spec("1", org=ORG), Spec("2", org=ORG, code="BC-X")])
    store = make_store()
    await store.migrate()
    api_settings = emulator_settings(tmp_path, emulator, amqp_url=settings.amqp_url).model_copy(
        update={"queue_prefix": settings.queue_prefix, "exchange": settings.exchange}
    )
    counts = DeadLetterCounts(DeadLetters(api_settings), max_age_s=3600)
    async with bc_hub(api_settings, options=FAST_VERIFY) as hub:
        ctx = ApiContext(api_settings, config=ConfigService(store, hub), dead_letter_counts=counts)
        server = ApiServer(create_app(ctx, [add_routes]), "127.0.0.1", 0)
        await server.start()
        try:
            api = Api(f"http://127.0.0.1:{server.port}", store, ConfigCache(store), hub)
            for _ in range(5):
                status, body, _ = await api.call("GET", PATH + "/status")
                assert status == 200
                assert body["dead_letters"] == {
                    "count": 2,
                    "by_code": {"BC-POSTING-GROUP-MISSING": 1, "BC-X": 1},
                }
        finally:
            await server.stop()
    assert counts.scans == 1
