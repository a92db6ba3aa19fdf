"""Dead letters that heal themselves, end to end (real broker, worker, store, the BC emulator,
the outbox mailer): adding the missing G/L account in BC heals the dead letter without a replay
command, exactly once, and the next digest lists it as resolved; saving the configuration heals
a dead letter caused by a setting; a heal that fails again is not replayed again until its
cause looked fixed again."""

from __future__ import annotations

import asyncio
import email
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.emulator.fixtures import EmulatorHandle
from tests.support import factories as f
from tests.support.clock import WallClock
from tests.support.exports import ORG, Exports, account_invoice, open_exports
from tests.support.notify import make_service
from tests.support.wait import wait_for
from worker.messaging import headers as H
from worker.notify import NotificationRecorder, NotificationRepository
from worker.ops import dlq
from worker.ops.dlq.index import DeadLetterIndex
from worker.ops.heal import Healer, heal_headers
from worker.store.config_cache import ConfigCache
from worker.sync.ledger import LedgerRepository

RECIPIENT = {"email": "ekonomi@example.se"}


@pytest.fixture
async def harness(
    request: pytest.FixtureRequest, amqp_url: str, tmp_path: Path, emulator: EmulatorHandle
) -> AsyncIterator[Exports]:
    """Exports whose worker also records notifications, with recipients and a short digest
    window; the heal probe runs every 0.3 s when started."""
    async with open_exports(
        request,
        amqp_url,
        tmp_path,
        emulator,
        heal_interval_s=0.3,
        digest_first_delay_s=0,
        digest_window_s=1,
    ) as exports:
        consumer = exports.workers[0].consumer
        recorder = NotificationRecorder(NotificationRepository(exports.runtime.store), ttl_s=0)
        consumer.observers.insert(0, recorder)
        await exports.save_config(notification_recipients=[RECIPIENT])
        yield exports


def healer(exports: Exports, **kw: Any) -> Healer:
    rt = exports.runtime
    return Healer(
        exports.settings,
        rt.store,
        ConfigCache(rt.store, ttl=0),
        rt.hub,
        rt.leases,
        connection=rt.connection,
        **kw,
    )


def mails(exports: Exports) -> list[str]:
    out = []
    for path in sorted(exports.settings.outbox_dir.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        out.append(f"{message['Subject']}\n{body.get_content()}")
    return out


def healed(trigger: str) -> float:
    return REGISTRY.get_sample_value("bcsync_dead_letters_healed_total", {"trigger": trigger}) or 0


async def peek_dead(exports: Exports) -> list[dlq.DeadLetter]:
    return await dlq.list_dead_letters(exports.settings)


async def test_adding_the_missing_account_heals_the_dead_letter_once(harness: Exports) -> None:
    exports = harness
    event_id = await exports.send("moment.invoice.created", account_invoice("1866", "9999"))
    assert await exports.done(event_id) == ["dead_lettered"]
    [letter] = await peek_dead(exports)
    assert letter.headers[H.MISSING] == [{"kind": "gl_account", "value": "9999"}]

    digests = make_service(exports.settings, exports.runtime.store)
    assert await digests.run_once() == 1
    [first] = mails(exports)
    assert "Invoice 1866" in first

    before = healed("probe")
    service = healer(exports)
    await service.start()
    try:
        await asyncio.sleep(1.0)  # a few probe rounds: the account is still missing
        assert await exports.dead_count() == 1
        assert healed("probe") == before
        await exports.add_gl_account("9999")  # the admin adds it in BC; nobody runs a replay
        posted = await exports.posted("1866", timeout=15)
        assert await exports.done(event_id, 2) == ["dead_lettered", "succeeded"]
        await asyncio.sleep(1.0)  # more rounds: nothing left to heal, nothing sent twice
    finally:
        await service.stop()
    assert healed("probe") == before + 1
    assert await exports.dead_count() == 0
    assert len(await exports.invoices("1866")) == 1
    assert exports.tracker.outcomes[event_id] == ["dead_lettered", "succeeded"]

    await exports.runtime.ledger.flush()
    repo = LedgerRepository(exports.runtime.store)
    entry = await repo.get(ORG, "invoice", "i-1866")
    assert entry is not None and (entry.state, entry.bc_number) == ("synced", posted["number"])
    replayed = [s for s in await repo.history(ORG, "invoice", "i-1866") if s.step == "replayed"]
    assert len(replayed) == 1 and replayed[0].detail is not None
    assert "G/L account '9999' exists" in replayed[0].detail

    # The next digest says the invoice is resolved.
    assert await digests.run_once(datetime.now(UTC) + timedelta(seconds=5)) == 1
    second = mails(exports)[-1]
    assert "resolved" in second.lower() and "1866" in second


async def test_saving_the_configuration_heals_a_setting_dead_letter(harness: Exports) -> None:
    exports = harness
    # The abroad customer posting group of the settings does not exist in BC.
    groups = {
        "domestic": {"gen_bus_posting_group": "INRIKES", "customer_posting_group": "KUNDER"},
        "abroad": {"gen_bus_posting_group": "EU", "customer_posting_group": "KUNDER-XX"},
    }
    await exports.save_config(customer_posting_groups=groups, notification_recipients=[RECIPIENT])
    service = healer(exports)
    assert await service.check_configs() == 0  # first sight of the organization: nothing to do
    event_id = await exports.send(
        "moment.customer.created", {"customer": f.customer("63001", country="NO")}
    )
    assert await exports.done(event_id) == ["dead_lettered"]
    [letter] = await peek_dead(exports)
    assert letter.code == "BC-POSTING-GROUP-MISSING"
    assert letter.headers[H.MISSING] == [{"kind": "customer_posting_group", "value": "KUNDER-XX"}]
    assert await service.check_configs() == 0  # no save since: nothing

    groups["abroad"]["customer_posting_group"] = "KUNDER-EXP"
    await exports.save_config(customer_posting_groups=groups, notification_recipients=[RECIPIENT])
    # Not at once: every worker's config cache must have the new settings first (10 s).
    assert await service.check_configs() == 0
    later = datetime.now(UTC) + timedelta(seconds=11)
    service = healer(exports, clock=lambda: later)
    other = healer(exports, clock=lambda: later)  # a second healer: exactly one replays
    results = await asyncio.gather(service.check_configs(), other.check_configs())
    assert sorted(results) == [0, 1]
    assert await exports.done(event_id, 2) == ["dead_lettered", "succeeded"]
    customer = await exports.customer("63001")
    assert customer is not None and customer["customerPostingGroup"] == "KUNDER-EXP"
    assert await service.check_configs() == 0


async def test_a_heal_that_fails_again_waits_until_the_cause_looked_fixed_again(
    harness: Exports,
) -> None:
    exports = harness
    event_id = await exports.send("moment.invoice.created", account_invoice("1867", "9998"))
    assert await exports.done(event_id) == ["dead_lettered"]
    clock = WallClock()
    service = healer(exports, clock=clock)
    [missing] = await service.probe_once()
    assert (missing.checked, missing.replayed) == ({"gl_account::9998": False}, 0)
    # A heal that failed again: the copy went back with the healer's marks (as the consumer
    # keeps them), here made by hand at a time after the probe saw the account missing.
    result = await dlq.replay(
        exports.settings,
        dlq.Filters(ids=frozenset({event_id})),
        actor="test",
        extra_headers=heal_headers("test", datetime.now(UTC) + timedelta(seconds=1)),
    )
    assert result.replayed == 1
    assert await exports.done(event_id, 2) == ["dead_lettered", "dead_lettered"]
    [letter] = await peek_dead(exports)
    assert letter.headers[H.HEAL_COUNT] == 1 and letter.headers[H.HISTORY]

    # The account exists now, but a heal already failed with it present: no replay, round
    # after round (no loop).
    await exports.add_gl_account("9998")
    for _ in range(2):
        [present] = await service.probe_once()
        assert present.checked == {"gl_account::9998": True}
        assert (present.replayed, present.skipped_disarmed) == (0, 1)
    assert await exports.dead_count() == 1

    # The account goes and comes back: the cause looked fixed again, so one more replay.
    await exports.emulator.control.delete("gl_account", "9998", at=exports.emulator.company_ref)
    clock.advance(1.1)  # past the heal mark
    [gone] = await service.probe_once()
    assert (gone.checked, gone.replayed) == ({"gl_account::9998": False}, 0)
    await exports.add_gl_account("9998")
    [back] = await service.probe_once()
    assert back.replayed == 1
    assert await exports.done(event_id, 3) == ["dead_lettered", "dead_lettered", "succeeded"]


async def test_a_healed_dead_letter_leaves_the_console_index(harness: Exports) -> None:
    """The console counts dead letters from its index: a healed one leaves it at once, not
    only at the next reconcile of the index with the queue."""
    exports = harness
    event_id = await exports.send("moment.invoice.created", account_invoice("1866", "9999"))
    assert await exports.done(event_id) == ["dead_lettered"]
    [letter] = await peek_dead(exports)
    index = DeadLetterIndex(exports.runtime.store)
    await index.add(letter)  # as the consumer's indexer writes it in `bc-sync run`
    service = healer(exports)
    await service.start()
    try:
        await exports.add_gl_account("9999")
        await exports.posted("1866", timeout=15)

        async def forgotten() -> bool:
            return await index.get(letter.id) is None

        # The invoice may be posted before the healer's replay has handed the queue back.
        assert await wait_for(forgotten, 10, interval=0.1)
    finally:
        await service.stop()
    assert await index.totals() == (0, 0)
