"""Newest change wins, end to end (real broker, real worker, BC emulator): an older change that
the retry ladder, a replay or a racing worker delivers after a newer one is acked as superseded
and never reaches BC; an invoice's embedded customer snapshot never overwrites a newer customer.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.emulator.fixtures import EmulatorHandle
from tests.support import factories as f
from tests.support.exports import ORG, Exports, open_exports
from tests.support.wait import wait_for
from worker.ops import dlq
from worker.sync.ledger import LedgerRepository, LogFilters

CUSTOMER_CREATED = "moment.customer.created"
CUSTOMER_UPDATED = "moment.customer.updated"
PROJECT_CREATED = "moment.project.created"
PROJECT_UPDATED = "moment.project.updated"
INVOICE_CREATED = "moment.invoice.created"
BASE = datetime.now(UTC).replace(microsecond=0)


def at(seconds: float) -> str:
    """A CloudEvents time ``seconds`` after the test's base time."""
    return (BASE + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


@pytest.fixture
async def ladder(
    request: pytest.FixtureRequest, amqp_url: str, tmp_path: Path, emulator: EmulatorHandle
) -> AsyncIterator[Exports]:
    """Exports whose first ladder step waits 4 s: long enough for a newer change to pass."""
    async with open_exports(
        request, amqp_url, tmp_path, emulator, retry_delays=(4.0, 0.5, 0.5)
    ) as harness:
        yield harness


async def breaker_closed() -> None:
    """Five failed BC calls in a row open the tenant's circuit breaker for 1 s."""
    await asyncio.sleep(1.2)


def superseded_count(type_: str) -> float:
    value = REGISTRY.get_sample_value("bcsync_events_superseded_total", {"type": type_})
    return value or 0.0


async def steps(exports: Exports, object_type: str, moment_id: str) -> list[str]:
    await exports.runtime.ledger.flush()
    history = await LedgerRepository(exports.runtime.store).history(ORG, object_type, moment_id)
    return [s.step for s in history]


async def test_stale_customer_update_from_the_ladder_is_superseded(ladder: Exports) -> None:
    created = await ladder.send(
        CUSTOMER_CREATED, {"customer": f.customer("61001", name="Start AB")}, time=at(0)
    )
    assert await ladder.done(created) == ["succeeded"]
    # Every PATCH of the customer answers 503 five times: the older update (t=1) uses up its
    # in-process retries and waits 4 s on the ladder.
    await ladder.emulator.control.add_fault("status", status=503, count=5, path=r"/customers\(")
    old = await ladder.send(
        CUSTOMER_UPDATED, {"customer": f.customer("61001", name="Gammalt Namn AB")}, time=at(1)
    )
    await wait_for(lambda: "retried" in ladder.tracker.outcomes.get(old, []), 15)
    await breaker_closed()
    before = superseded_count(CUSTOMER_UPDATED)
    new = await ladder.send(
        CUSTOMER_UPDATED, {"customer": f.customer("61001", name="Nytt Namn AB")}, time=at(2)
    )
    assert await ladder.done(new) == ["succeeded"]
    # The older update comes back from the ladder after the newer one was applied.
    assert await ladder.done(old) == ["superseded"]

    customer = await ladder.customer("61001")
    assert customer is not None and customer["displayName"] == "Nytt Namn AB"
    assert superseded_count(CUSTOMER_UPDATED) == before + 1
    entry = await LedgerRepository(ladder.runtime.store).get(ORG, "customer", "c-61001")
    assert entry is not None
    assert (entry.state, entry.applied_event_id, entry.bc_number) == ("synced", new, "61001")
    history = await steps(ladder, "customer", "c-61001")
    assert "retry scheduled" in history and history.count("superseded") == 1
    assert history[-1] == "superseded"


async def test_stale_project_rename_from_the_ladder_is_superseded(ladder: Exports) -> None:
    created = await ladder.send(
        PROJECT_CREATED, {"project": f.project("4601", name="Start")}, time=at(0)
    )
    assert await ladder.done(created) == ["succeeded"]
    # The rename is a PATCH of the ODataV4 DimensionValues page.
    await ladder.emulator.control.add_fault(
        "status", status=503, count=5, method="PATCH", path="DimensionValues"
    )
    old = await ladder.send(
        PROJECT_UPDATED, {"project": f.project("4601", name="Gammalt namn")}, time=at(1)
    )
    await wait_for(lambda: "retried" in ladder.tracker.outcomes.get(old, []), 15)
    await breaker_closed()
    new = await ladder.send(
        PROJECT_UPDATED, {"project": f.project("4601", name="Nytt namn")}, time=at(2)
    )
    assert await ladder.done(new) == ["succeeded"]
    assert await ladder.done(old) == ["superseded"]
    value = await ladder.dimension_value("PROJEKT", "4601")
    assert value is not None and value["displayName"] == "Nytt namn"


async def test_replayed_old_dead_letter_is_superseded(ladder: Exports) -> None:
    created = await ladder.send(
        CUSTOMER_CREATED, {"customer": f.customer("61002", name="Start AB")}, time=at(0)
    )
    assert await ladder.done(created) == ["succeeded"]
    # BC is down for the customer's updates until the older one has used up the ladder.
    fault = await ladder.emulator.control.add_fault("status", status=503, path=r"/customers\(")
    old = await ladder.send(
        CUSTOMER_UPDATED, {"customer": f.customer("61002", name="Gammalt Namn AB")}, time=at(1)
    )
    assert await ladder.done(old, timeout=30) == ["dead_lettered"]
    await ladder.emulator.control.remove_fault(fault["id"])
    new = await ladder.send(
        CUSTOMER_UPDATED, {"customer": f.customer("61002", name="Nytt Namn AB")}, time=at(2)
    )
    assert await ladder.done(new) == ["succeeded"]

    result = await dlq.replay(ladder.settings, dlq.Filters(ids=frozenset({old})), actor="test")
    assert result.replayed == 1
    assert await ladder.done(old, 2) == ["dead_lettered", "superseded"]
    customer = await ladder.customer("61002")
    assert customer is not None and customer["displayName"] == "Nytt Namn AB"
    assert await ladder.dead_count() == 0
    history = await steps(ladder, "customer", "c-61002")
    assert history[-2:] == ["replayed", "superseded"]


@pytest.mark.parametrize("ladder", ["sqlite", "postgresql"], indirect=True)
async def test_two_workers_racing_leave_the_newest_version_in_bc(ladder: Exports) -> None:
    await ladder.start_worker()
    await ladder.save_config()
    rng = random.Random(17)
    versions = list(range(12))
    rng.shuffle(versions)
    # The newest version goes out first, so arrival order alone would leave an older one.
    versions.remove(11)
    order = [11, *versions]
    ids: dict[int, str] = {}
    for v in order:
        ids[v] = await ladder.send(
            CUSTOMER_UPDATED,
            {"customer": f.customer("61003", name=f"Version {v:02d} AB")},
            time=at(v),
        )
        ids[100 + v] = await ladder.send(
            PROJECT_UPDATED, {"project": f.project("4603", name=f"Version {v:02d}")}, time=at(v)
        )
    for event_id in ids.values():
        await ladder.done(event_id, timeout=60)
    outcomes = [ladder.tracker.outcomes[i][-1] for i in ids.values()]
    assert set(outcomes) <= {"succeeded", "superseded"}
    customer = await ladder.customer("61003")
    assert customer is not None and customer["displayName"] == "Version 11 AB"
    value = await ladder.dimension_value("PROJEKT", "4603")
    assert value is not None and value["displayName"] == "Version 11"
    repo = LedgerRepository(ladder.runtime.store)
    entry = await repo.get(ORG, "customer", "c-61003")
    assert entry is not None and entry.applied_event_id == ids[11] and entry.state == "synced"
    # Both workers took part (the claims made them take turns, not skip work).
    assert all(w.consumer.in_flight == 0 for w in ladder.workers)


async def test_invoice_snapshot_never_overwrites_a_newer_customer(exports: Exports) -> None:
    newer = await exports.send(
        CUSTOMER_CREATED, {"customer": f.customer("61004", name="Nytt Namn AB")}, time=at(10)
    )
    assert await exports.done(newer) == ["succeeded"]
    # Someone cleared the customer's posting groups in BC, so the invoice's export repairs the
    # customer from its snapshot; the snapshot is older than the customer change BC holds.
    await exports.seed_customer("61004", posting_groups=False)
    old_snapshot = f.customer("61004", name="Gammalt Namn AB")
    invoice = await exports.send(
        INVOICE_CREATED, {"invoice": f.invoice("7001", cust=old_snapshot)}, time=at(5)
    )
    await exports.done(invoice)
    customer = await exports.customer("61004")
    assert customer is not None and customer["displayName"] != "Gammalt Namn AB"
    history = await steps(exports, "customer", "c-61004")
    assert "superseded" in history

    # A newer invoice's snapshot is applied, and recorded as the customer's newest change.
    newest = f.customer("61004", name="Nyaste Namn AB")
    later = await exports.send(
        INVOICE_CREATED, {"invoice": f.invoice("7002", cust=newest)}, time=at(20)
    )
    assert await exports.done(later) == ["succeeded"]
    customer = await exports.customer("61004")
    assert customer is not None and customer["displayName"] == "Nyaste Namn AB"
    entry = await LedgerRepository(exports.runtime.store).get(ORG, "customer", "c-61004")
    assert entry is not None and entry.applied_event_id == later
    # ... so the customer event of t=15 that arrives now is superseded by the snapshot of t=20.
    stale = await exports.send(
        CUSTOMER_UPDATED, {"customer": f.customer("61004", name="Mellan AB")}, time=at(15)
    )
    assert await exports.done(stale) == ["superseded"]
    customer = await exports.customer("61004")
    assert customer is not None and customer["displayName"] == "Nyaste Namn AB"


async def test_same_event_again_is_applied_not_superseded(exports: Exports) -> None:
    data: dict[str, Any] = {"customer": f.customer("61005", name="Samma AB")}
    event_id = await exports.send(CUSTOMER_CREATED, data, time=at(0))
    assert await exports.done(event_id) == ["succeeded"]
    await exports.send(CUSTOMER_CREATED, data, id_=event_id, time=at(0))
    assert await exports.done(event_id, 2) == ["succeeded", "succeeded"]


async def test_switched_off_shows_as_skipped_and_unconfigured_leaves_no_trace(
    exports: Exports,
) -> None:
    await exports.save_config(export_projects=False)
    off = await exports.send(PROJECT_CREATED, {"project": f.project("4701")})
    assert await exports.done(off) == ["skipped"]
    nobody = await exports.send(
        CUSTOMER_CREATED, {"customer": f.customer("61009")}, org="org-without-integration"
    )
    assert await exports.done(nobody) == ["skipped"]

    repo = LedgerRepository(exports.runtime.store)
    entry = await repo.get(ORG, "project", "p-4701")
    assert entry is not None and (entry.state, entry.applied_event_id) == ("skipped", None)
    history = await steps(exports, "project", "p-4701")
    assert history == ["received", "skipped"]
    rows, _ = await repo.page("org-without-integration", LogFilters())
    assert rows == []


async def test_a_handler_that_stalled_past_its_claim_never_writes_over_a_newer_change(
    ladder: Exports,
) -> None:
    # Worker A's handler stalls (BC's customer lookup takes 4 s) past its claim (1 s here,
    # 120 s in production); meanwhile worker B claims the customer for a newer change and
    # writes it. When A resumes it must not write its older data over that (the cluster
    # chaos test caught BC left with an older name this way).
    a = ladder.workers[0]
    first = await ladder.send(CUSTOMER_UPDATED, {"customer": f.customer("61009")}, time=at(0))
    assert await ladder.done(first) == ["succeeded"]
    b = await ladder.start_worker()
    for worker in (a, b):
        worker.runtime.ledger._claim_ttl_s = 1.0
    await ladder.emulator.control.add_fault(
        "latency", latency_ms=4000, count=1, method="GET", path=r"/customers"
    )
    # Only A consumes while the older change arrives; then A takes nothing new (draining).
    await b.consumer.stop(grace=0)
    older = await ladder.send(
        CUSTOMER_UPDATED, {"customer": f.customer("61009", name="Version 01 AB")}, time=at(1)
    )
    await asyncio.sleep(0.5)
    c = await ladder.start_worker()
    c.runtime.ledger._claim_ttl_s = 1.0
    draining = asyncio.create_task(a.consumer.stop(grace=30))
    await asyncio.sleep(1.5)  # A's claim has run out while it waits on BC
    newer = await ladder.send(
        CUSTOMER_UPDATED, {"customer": f.customer("61009", name="Version 02 AB")}, time=at(2)
    )
    assert await ladder.done(newer, timeout=30) == ["succeeded"]
    await draining
    assert (await ladder.done(older, timeout=30))[-1] == "superseded"  # after a BC-BUSY
    customer = await ladder.customer("61009")
    assert customer is not None and customer["displayName"] == "Version 02 AB"
