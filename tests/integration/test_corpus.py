"""The bad-input corpus (tests/corpus) through the real broker to a real consumer and the BC
emulator: each message ends as its case file says, and none crashes or blocks the worker."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from tests.corpus import Case, cases
from tests.emulator.fixtures import EmulatorHandle
from tests.support import factories as f
from tests.support.amqp import Got, depth, drop_topology
from tests.support.settings import emulator_settings
from tests.support.wait import wait_for
from worker.app import Runtime
from worker.config.model import parse_config
from worker.config.settings import Settings
from worker.events.envelope import Event
from worker.events.handlers import Observer, Outcome
from worker.messaging import headers as H
from worker.messaging.consumer import Consumer
from worker.messaging.topology import Topology
from worker.sync import registry
from worker.sync.status import StatusObserver

ORG = "corpus-org"
CASES = cases()


def demo_config(handle: EmulatorHandle) -> dict[str, Any]:
    """The demo organization's integration config against the emulator (every export on)."""
    return f.exports_only(
        tenant_id=handle.tenant_id,
        client_secret=handle.client_secret,
        environment=handle.environment,
    )


class Outcomes(Observer):
    """Successes and skips by event id."""

    def __init__(self) -> None:
        self.by_id: dict[str, Outcome] = {}

    async def on_success(self, event: Event[Any], outcome: Outcome) -> None:
        self.by_id[event.id] = outcome


@pytest.fixture
async def corpus_settings(
    amqp_url: str, tmp_path: Path, emulator: EmulatorHandle
) -> AsyncIterator[Settings]:
    s = emulator_settings(
        tmp_path,
        emulator,
        amqp_url=amqp_url,
        retry_delays=(0.2, 0.4),
        prefetch=8,
    )
    yield s
    await drop_topology(s)


async def publish_all(settings: Settings, items: list[Case]) -> None:
    """Publish every case (persistent, confirmed), its file name as the message id."""
    topo = Topology.from_settings(settings)
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(settings.exchange)
        for case in items:
            message = aio_pika.Message(
                case.body,
                content_type=case.content_type,
                headers=case.headers,
                message_id=case.name,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            if case.to_queue:
                await channel.default_exchange.publish(
                    message, routing_key=topo.exports.name, mandatory=True
                )
            else:
                await exchange.publish(message, routing_key=case.routing_key, mandatory=True)


def find_record(state: dict[str, Any], entity: str, key: str) -> list[dict[str, Any]]:
    if entity == "projects":
        [dim] = [d for d in state["dimensions"] if d["code"] == "PROJEKT"]
        return [v for v in dim["values"] if v["code"] == key]
    field = {"customers": "number", "salesInvoices": "externalDocumentNumber"}[entity]
    return [r for r in state.get(entity, []) if r.get(field) == key]


def check(
    case: Case, dead: dict[str, Got], outcomes: dict[str, Outcome], state: dict[str, Any]
) -> str | None:
    """None when the case ended as expected, else what happened instead."""
    expect = case.expect
    got = dead.get(case.name)
    if case.outcome == "dead_letter":
        if got is None:
            return f"not dead-lettered (outcome {outcomes.get(case.name)})"
        code = got.headers.get(H.ERROR_CODE)
        message = str(got.headers.get(H.ERROR_MESSAGE, ""))
        if code != expect["code"]:
            return f"dead letter code {code} ({message[:200]}), expected {expect['code']}"
        if expect.get("message_contains") and expect["message_contains"] not in message:
            return f"dead letter message {message[:300]!r} lacks {expect['message_contains']!r}"
        if got.body != case.body:
            return "dead letter body differs from the message published"
        return None
    if got is not None:
        return f"dead-lettered: {got.headers.get(H.ERROR_CODE)} {got.headers.get(H.ERROR_MESSAGE)}"
    if case.outcome == "skipped":
        outcome = outcomes.get(case.name)
        if outcome is None or outcome.kind != "skipped" or outcome.reason != expect["reason"]:
            return f"outcome {outcome}, expected skipped ({expect['reason']})"
        return None
    records = find_record(state, expect["entity"], expect["key"])
    if len(records) != 1:
        return f"{len(records)} {expect['entity']} with key {expect['key']!r} in BC"
    wrong = {
        k: (records[0].get(k), v)
        for k, v in expect.get("fields", {}).items()
        if records[0].get(k) != v
    }
    return f"fields differ (got, expected): {wrong}" if wrong else None


@pytest.mark.timeout(180)
async def test_corpus(corpus_settings: Settings, emulator: EmulatorHandle) -> None:
    settings = corpus_settings
    assert len(CASES) >= 60
    before = await emulator.control.company_state(emulator.company_ref)
    runtime = await Runtime.open(settings)
    outcomes = Outcomes()
    consumer = Consumer(
        settings,
        registry(runtime.sync_context()),
        observers=[outcomes, StatusObserver(runtime.store)],
        connection=runtime.connection,
    )
    try:
        assert await runtime.store.configs.put(ORG, parse_config(demo_config(emulator)))
        await consumer.start()
        await publish_all(settings, CASES)
        # A good event after the whole corpus: the worker still works and nothing is stuck.
        await _publish_good(settings, "after-corpus")
        topo = Topology.from_settings(settings)

        async def settled() -> bool:
            busy = [await depth(settings, q.name) for q in topo.queues if q is not topo.dead]
            return "after-corpus" in outcomes.by_id and not any(busy) and not consumer._inflight

        await wait_for(settled, timeout=120, interval=0.25)
        assert consumer.consuming
        dead = {str(g.headers["message_id"]): g for g in await _drain(settings)}
        state = await emulator.control.company_state(emulator.company_ref)
    finally:
        await consumer.stop()
        await runtime.stop()

    failures = {c.name: why for c in CASES if (why := check(c, dead, outcomes.by_id, state))}
    tally = Counter(c.expect.get("code") or c.expect.get("reason") or "record" for c in CASES)
    print(f"\ncorpus: {len(CASES)} cases, {len(CASES) - len(failures)} as expected")
    for what, n in sorted(tally.items()):
        print(f"  {what:28} {n}")
    unexpected = set(dead) - {c.name for c in CASES}
    assert not unexpected, f"dead letters not from the corpus: {unexpected}"
    assert not failures, "\n".join(f"{k}: {v}" for k, v in failures.items())
    # No injected filter matched the demo customers: they are exactly as seeded.
    for number in ("10000", "20000"):
        [was] = find_record(before, "customers", number)
        [now] = find_record(state, "customers", number)
        assert {k: v for k, v in now.items() if k != "lastModifiedDateTime"} == {
            k: v for k, v in was.items() if k != "lastModifiedDateTime"
        }
    assert len(find_record(state, "customers", "AFTER-CORPUS")) == 1


async def _publish_good(settings: Settings, number: str) -> None:
    body = f.body(
        "moment.customer.created", {"customer": f.customer(number.upper())}, org=ORG, id_=number
    )
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(settings.exchange)
        await exchange.publish(
            aio_pika.Message(body, message_id=number, delivery_mode=2),
            routing_key="moment.customer.created",
            mandatory=True,
        )


async def _drain(settings: Settings) -> list[Got]:
    """The dead letters with their message ids (kept in the headers dict under message_id)."""
    out: list[Got] = []
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(Topology.from_settings(settings).dead.name, ensure=False)
        while (msg := await queue.get(fail=False, no_ack=True)) is not None:
            headers = dict(msg.headers or {})
            headers["message_id"] = msg.message_id
            out.append(Got(msg.body, headers, msg.routing_key))
    return out
