"""``bc-sync run`` with every role in one process, driven the way Moment drives it: the admin
saves the config over the API, Moment publishes an event, expenses come back, status tells all.

The parts have their own suites; this one proves ``worker.app.build_services`` wires them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiohttp
import pytest
from aiormq.exceptions import AMQPError
from pydantic import SecretStr

from tests.chaos.postgres import OwnPostgres, postgres_missing
from tests.emulator.fixtures import EmulatorHandle
from tests.support import factories as f
from tests.support.amqp import drop_topology
from tests.support.api import call
from tests.support.factories import dialog
from tests.support.net import free_port
from tests.support.roles import running
from tests.support.settings import API_TOKEN, AUTH, emulator_settings
from tests.support.tcp_proxy import TcpProxy
from tests.support.wait import wait_for
from worker.api.app import CONTEXT, ApiServer
from worker.app import Runtime, build_services
from worker.config.settings import Settings
from worker.messaging.consumer import Consumer
from worker.ops.sampler import DeadLetterSampler

ORG = "org-roles"
PATH = f"/v1/organizations/{ORG}/integrations/business-central"


@pytest.fixture
async def app_settings(
    amqp_url: str, tmp_path: Path, emulator: EmulatorHandle
) -> AsyncIterator[Settings]:
    s = emulator_settings(
        tmp_path,
        emulator,
        amqp_url=amqp_url,
        http_port=free_port(),
        poll_interval_s=0.5,
        digest_first_delay_s=0,
        digest_window_s=1,
    )
    yield s
    await drop_topology(s)


@pytest.fixture
async def worker(app_settings: Settings) -> AsyncIterator[str]:
    async with running(app_settings, ["consume", "poll", "api", "notify"]):
        yield f"http://127.0.0.1:{app_settings.http_port}"


async def scrape(worker: str) -> dict[str, float]:
    """``/metrics`` as {'name{labels}': value} (the registry is per process: compare deltas)."""
    async with aiohttp.ClientSession() as session, session.get(worker + "/metrics") as resp:
        text = await resp.text()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def moved(before: dict[str, float], after: dict[str, float], name: str, **labels: str) -> float:
    """How much the samples of ``name`` with ``labels`` grew (summed over other labels)."""

    def total(samples: dict[str, float]) -> float:
        wanted = [f'{k}="{v}"' for k, v in labels.items()]
        return sum(
            v
            for key, v in samples.items()
            if key.split("{")[0] == name and all(w in key for w in wanted)
        )

    return total(after) - total(before)


async def test_every_role_in_one_process(
    worker: str, app_settings: Settings, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    before = await scrape(worker)
    connection = await aio_pika.connect(app_settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        outgoing = await channel.declare_queue(exclusive=True)
        await outgoing.bind(app_settings.exchange, "bc.#")

        status, answer = await call("PUT", worker + PATH, json=dialog(), headers=AUTH)
        assert (status, answer) == (201, {"status": "Created"})

        exchange = await channel.get_exchange(app_settings.exchange)
        bad = f.invoice(
            "1866",
            cust=f.customer("10001"),
            lines=[
                {"description": "x", "quantity": 1, "unit_price": 10.0, "account_number": "9999"}
            ],
        )
        for type_, data in (
            ("moment.customer.created", {"customer": f.customer("10001")}),
            ("moment.invoice.created", {"invoice": bad}),
        ):
            await exchange.publish(
                aio_pika.Message(f.body(type_, data, org=ORG), delivery_mode=2), routing_key=type_
            )

        seen: dict[str, int] = {}

        async def both_seen() -> bool:
            while message := await outgoing.get(fail=False, no_ack=True):
                type_ = json.loads(message.body)["type"]
                seen[type_] = seen.get(type_, 0) + 1
            return bool(seen.get("bc.customer.exported") and seen.get("bc.expense.imported"))

        await wait_for(both_seen, 30, 0.1)
        await wait_for(lambda: list((tmp_path / "outbox").glob("*.eml")), 30, 0.1)

    customers = (await emulator.control.company_state(emulator.company_ref))["customers"]
    assert "10001" in {c["number"] for c in customers}
    mail = next((tmp_path / "outbox").glob("*.eml")).read_text(encoding="utf-8")
    assert "ekonomi@example.se" in mail and "BC-ACCOUNT-MISSING" in mail

    # Successes reach the status table in batches (about once a second).
    report: dict[str, Any] = {}
    objects: dict[str, Any] = {}

    async def customer_success() -> bool:
        nonlocal report, objects
        status, report = await call("GET", worker + PATH + "/status", headers=AUTH)
        assert status == 200
        objects = {o["object_type"]: o for o in report["objects"]}
        return bool(objects.get("customer", {}).get("last_success_at"))

    await wait_for(customer_success, 10, 0.2)
    assert report["configuration"]["configured"] is True
    assert objects["invoice"]["last_failure_code"] == "BC-ACCOUNT-MISSING"
    assert report["dead_letters"]["by_code"] == {"BC-ACCOUNT-MISSING": 1}
    assert report["expenses"]["polled"] is True and report["expenses"]["paused"] is False
    assert "notifications" in report and "error" not in report["notifications"]
    assert API_TOKEN not in json.dumps(report) and "client_secret" not in json.dumps(report)

    # The integration log on the same API: the dead-lettered invoice with its error.
    async def history_written() -> bool:  # the ledger writes its history in 1 s batches
        status, log = await call("GET", worker + PATH + "/objects/invoice/i-1866", headers=AUTH)
        return status == 200 and "dead-lettered" in [s["step"] for s in log.get("history", [])]

    await wait_for(history_written, 10, 0.1)
    status, log = await call("GET", worker + PATH + "/objects/invoice/i-1866", headers=AUTH)
    assert status == 200 and log["state"] == "failed"
    assert log["error"]["code"] == "BC-ACCOUNT-MISSING"
    assert "dead-lettered" in [s["step"] for s in log["history"]]

    # health answers on the same port, without a token
    status, _ = await call("GET", worker + "/readyz")
    assert status == 200

    after = await scrape(worker)
    handled = "bcsync_events_handled_total"
    assert moved(before, after, handled, type="moment.customer.created", outcome="succeeded") == 1
    assert (
        moved(before, after, handled, type="moment.invoice.created", outcome="dead_lettered") == 1
    )
    assert moved(before, after, "bcsync_dead_letters_total", code="BC-ACCOUNT-MISSING") == 1
    assert moved(before, after, "bcsync_bc_request_seconds_count", resource="customers") >= 1
    assert moved(before, after, "bcsync_expenses_published_total") >= 1
    assert moved(before, after, "bcsync_notifications_sent_total", channel="email") >= 1
    assert moved({}, after, "bcsync_consumers", queue=app_settings.queue("exports")) == 1


async def test_one_broker_connection_serves_every_role(app_settings: Settings) -> None:
    """The runtime owns the process's broker connection; the consumer, the dead-letter
    sampler and the API's dead-letter operations use it instead of opening their own."""
    services = await build_services(app_settings, ["consume", "poll", "api", "notify"])
    runtime = services[0]
    assert isinstance(runtime, Runtime)
    try:
        consumer = next(s for s in services if isinstance(s, Consumer))
        sampler = next(s for s in services if isinstance(s, DeadLetterSampler))
        ctx = next(s for s in services if isinstance(s, ApiServer)).app[CONTEXT]
        assert consumer.connection is runtime.connection
        assert ctx.dead_letters is not None
        assert ctx.dead_letters.connection is runtime.connection
        assert sampler.counts is ctx.dead_letter_counts
        assert sampler.counts.dead_letters is ctx.dead_letters
        assert await sampler.sample() >= 0  # on the runtime's connection, not one of its own
        assert sampler.connection is runtime.connection
    finally:
        await runtime.stop()


async def test_a_worker_started_during_a_broker_outage_waits_for_the_broker(
    app_settings: Settings, amqp_url: str
) -> None:
    """``bc-sync run`` started while the broker restarts (or the network is cut) connects
    once the broker answers, instead of exiting; ``poll --once`` still fails at once."""
    parts = urlsplit(amqp_url)
    closed = free_port()  # nothing listens here: the proxy drops every connection
    proxy = TcpProxy("127.0.0.1", closed)
    await proxy.start()
    user = f"{parts.username}:{parts.password}@" if parts.username else ""
    through = SecretStr(f"amqp://{user}127.0.0.1:{proxy.port}{parts.path or '/'}")
    settings = app_settings.model_copy(update={"amqp_url": through})
    try:
        with pytest.raises((ConnectionError, OSError, AMQPError)):
            await Runtime.open(settings)  # no wait: one attempt

        async def broker_comes_back() -> None:
            await asyncio.sleep(1.5)
            proxy.target = (parts.hostname or "127.0.0.1", parts.port or 5672)

        back = asyncio.create_task(broker_comes_back())
        started = asyncio.get_running_loop().time()
        runtime = await Runtime.open(settings, broker_wait_s=30)
        try:
            assert asyncio.get_running_loop().time() - started >= 1.5
            assert not runtime.connection.is_closed
        finally:
            await runtime.stop()
        await back
    finally:
        await proxy.stop()


@pytest.mark.skipif(postgres_missing() is not None, reason=str(postgres_missing()))
async def test_a_worker_started_during_a_database_outage_waits_for_the_database(
    app_settings: Settings,
) -> None:
    """``bc-sync run`` started while PostgreSQL restarts migrates once it answers, instead of
    exiting (a server of the test's own: the shared one is never stopped)."""
    database = OwnPostgres()
    try:
        database.init()  # made, not started: connections are refused
        settings = app_settings.model_copy(update={"database_url": SecretStr(database.url)})
        with pytest.raises(OSError):
            await Runtime.open(settings)  # no wait: one attempt

        async def database_comes_back() -> None:
            await asyncio.sleep(1.5)
            await asyncio.to_thread(database.start)

        back = asyncio.create_task(database_comes_back())
        runtime = await Runtime.open(settings, broker_wait_s=60)
        try:
            assert database.running()
            assert await runtime.store.ping()
            assert await runtime.store.configs.get(f.ORG) is None  # the schema is there
        finally:
            await runtime.stop()
        await back
    finally:
        database.remove()
