"""``bc.sync.status`` for Moment: one event when an object's state changes to failed or waiting,
or back to synced after one of them; none for a first success (``bc.*.exported`` says that),
none twice for the same state. Real broker, real worker, the BC emulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support import factories as f
from tests.support.amqp import Got, bound_queue, drain
from tests.support.exports import ORG, Exports, account_invoice
from worker.events.envelope import parse
from worker.events.handlers import Outcome
from worker.events.models import OUTGOING, SyncStatusData
from worker.ops import dlq
from worker.sync.ledger import LedgerRepository
from worker.sync.tracking import Ledger

STATUS = "bc.sync.status"


@pytest.fixture
async def status_queue(exports: Exports) -> AsyncIterator[str]:
    async with bound_queue(exports.settings, "test-status", [STATUS]) as name:
        yield name


async def statuses(exports: Exports, queue: str, *, settle: float = 0.5) -> list[dict[str, Any]]:
    await asyncio.sleep(settle)
    got: list[Got] = await drain(exports.settings, queue)
    out = []
    for g in got:
        body = g.json
        assert body["type"] == STATUS and body["organizationid"] == ORG
        out.append(OUTGOING[STATUS].model_validate(body["data"]).model_dump(mode="json"))
    return out


async def test_failed_then_synced_again_one_event_each(exports: Exports, status_queue: str) -> None:
    first = await exports.send("moment.customer.created", {"customer": f.customer("62001")})
    assert await exports.done(first) == ["succeeded"]
    assert await statuses(exports, status_queue) == []  # a first success is not a change

    bad = await exports.send("moment.invoice.created", account_invoice("7101", "9999"))
    assert await exports.done(bad) == ["dead_lettered"]
    [failed] = await statuses(exports, status_queue)
    assert (failed["object_type"], failed["moment_id"], failed["moment_number"]) == (
        "invoice",
        "i-7101",
        "7101",
    )
    assert (failed["state"], failed["previous_state"], failed["error_code"]) == (
        "failed",
        None,
        "BC-ACCOUNT-MISSING",
    )
    assert failed["event_id"] == bad

    # Replayed and failing again: still failed, nothing new for Moment.
    await dlq.replay(exports.settings, dlq.Filters(ids=frozenset({bad})), actor="test")
    assert await exports.done(bad, 2) == ["dead_lettered", "dead_lettered"]
    assert await statuses(exports, status_queue) == []

    # The account exists now: the replay posts it, and Moment hears "synced" once.
    await exports.add_gl_account("9999")
    await dlq.replay(exports.settings, dlq.Filters(ids=frozenset({bad})), actor="test")
    assert await exports.done(bad, 3) == ["dead_lettered", "dead_lettered", "succeeded"]
    posted = await exports.posted("7101")
    [synced] = await statuses(exports, status_queue)
    assert (synced["state"], synced["previous_state"], synced["bc_number"]) == (
        "synced",
        "failed",
        posted["number"],
    )
    assert synced["error_code"] is None


async def test_waiting_is_announced_once(exports: Exports, status_queue: str) -> None:
    """Any outcome kind "waiting" (e.g. an invoice waiting for approval in BC) → waiting."""
    ledger: Ledger = exports.runtime.ledger
    waiting = Outcome("waiting", reason="approval")

    async def handler(_event: Any) -> Outcome:
        return waiting

    guarded = ledger.guard(handler, exports.runtime.configs)
    body = f.body("moment.invoice.created", account_invoice("7102", "3010"))
    event = parse(body)
    assert await guarded(event) is waiting
    assert await guarded(event) is waiting
    [one] = await statuses(exports, status_queue)
    assert (one["state"], one["moment_number"]) == ("waiting", "7102")
    SyncStatusData.model_validate(one)
    entry = await LedgerRepository(exports.runtime.store).get(ORG, "invoice", "i-7102")
    assert entry is not None and entry.state == "waiting"
