"""`dlq list/show/replay/purge` against a real broker with real dead letters (DESIGN §9)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from tests.support import factories as f
from tests.support.amqp import apply_topology, depth, drain, publish, wait_depth
from tests.support.dead_letters import (
    CREATED,
    UPDATED,
    Scripted,
    Spec,
    dead_ids,
    ids_of,
    make_dead_letters,
)
from tests.support.wait import wait_for
from worker.config.settings import Settings
from worker.errors import CATALOGUE, Permanent
from worker.messaging import headers as H
from worker.messaging.consumer import Consumer
from worker.ops import dlq

# More than one return chunk (32): a plain requeue scrambles the order past 32 messages.
MANY = 75


async def test_list_reads_only_and_keeps_count_and_order(settings: Settings) -> None:
    specs = [Spec(str(i)) for i in range(MANY)]
    expected = await make_dead_letters(settings, specs)
    dead = settings.queue("dead")
    for _ in range(2):
        letters = await dlq.list_dead_letters(settings)
        assert [x.id for x in letters] == expected
        assert await depth(settings, dead) == MANY
    # A limited listing holds only a prefix; it stays ahead of the rest.
    first = await dlq.list_dead_letters(settings, dlq.Filters(limit=5))
    assert [x.id for x in first] == expected[:5]
    # Read with plain acked gets (not our code): same messages, same order.
    assert await dead_ids(settings) == expected


async def test_rows_carry_what_ops_needs(settings: Settings) -> None:
    await make_dead_letters(settings, [Spec("1864", org="org-a")])
    [row] = [x.row() for x in await dlq.list_dead_letters(settings)]
    assert row["id"] == row["event_id"] == "ev-org-a-1864"
    assert row["org"] == "org-a"
    assert row["type"] == CREATED
    assert row["subject"] == "customer 1864"
    assert row["code"] == "BC-POSTING-GROUP-MISSING"
    assert row["error_class"] == "permanent"
    assert "posting group missing" in row["message"]
    assert row["attempts"] == 1
    assert row["first_failure"] <= row["last_failure"]
    assert row["last_failure"].endswith("Z")


async def test_filters_select_exactly(settings: Settings) -> None:
    early = [
        Spec("1", org="org-a", code="BC-POSTING-GROUP-MISSING"),
        Spec("2", org="org-a", type=UPDATED, code="BC-DIMENSION-MISSING"),
        Spec("3", org="org-b", code="BC-POSTING-GROUP-MISSING"),
    ]
    late = [
        Spec("4", org="org-b", type=UPDATED, code="BC-VALIDATION"),
        Spec("5", org="org-a", code="BC-POSTING-GROUP-MISSING"),
    ]
    await make_dead_letters(settings, early)
    await asyncio.sleep(0.05)
    boundary = datetime.now(UTC)
    await asyncio.sleep(0.05)
    await make_dead_letters(settings, late)

    async def ids(**kw: object) -> list[str]:
        filters = dlq.Filters.parse(**kw)  # type: ignore[arg-type]
        return [x.id for x in await dlq.list_dead_letters(settings, filters)]

    assert await ids(org="org-a") == ["ev-org-a-1", "ev-org-a-2", "ev-org-a-5"]
    assert await ids(type=UPDATED) == ["ev-org-a-2", "ev-org-b-4"]
    assert await ids(code="BC-POSTING-GROUP-MISSING") == ["ev-org-a-1", "ev-org-b-3", "ev-org-a-5"]
    assert await ids(code="BC-*-MISSING", org="org-b") == ["ev-org-b-3"]
    assert await ids(since=boundary) == ["ev-org-b-4", "ev-org-a-5"]
    assert await ids(until=boundary) == ["ev-org-a-1", "ev-org-a-2", "ev-org-b-3"]
    assert await ids(since="1h", until=boundary) == ["ev-org-a-1", "ev-org-a-2", "ev-org-b-3"]
    assert await ids(since="2999-01-01") == []
    assert await ids(org="org-a", limit=2) == ["ev-org-a-1", "ev-org-a-2"]
    assert await ids(ids=["ev-org-b-4"]) == ["ev-org-b-4"]

    everything = await dlq.list_dead_letters(settings)
    assert dlq.group_counts(everything, "code") == [
        ("BC-POSTING-GROUP-MISSING", 3),
        ("BC-DIMENSION-MISSING", 1),
        ("BC-VALIDATION", 1),
    ]
    assert dlq.group_counts(everything, "org") == [("org-a", 3), ("org-b", 2)]
    assert dlq.group_counts(everything, "type") == [(CREATED, 3), (UPDATED, 2)]
    assert await depth(settings, settings.queue("dead")) == 5


async def test_show_gives_envelope_history_and_fix_without_secrets(settings: Settings) -> None:
    customer = f.customer("77", website="https://admin:hunter2secret@example.com/")
    body = f.body(CREATED, {"customer": customer}, id_="ev-77")
    handler = Scripted(
        {
            "77": Permanent(
                "BC-POSTING-GROUP-MISSING", "rejected; Authorization: Bearer abc.def", bc_status=400
            )
        }
    )
    consumer = Consumer(settings, handler.registry())
    await consumer.start()
    try:
        await publish(settings, body, CREATED)
        await wait_depth(settings, settings.queue("dead"), 1)
    finally:
        await consumer.stop(grace=0)

    detail = await dlq.show_dead_letter(settings, "ev-77")
    assert detail is not None
    assert detail["envelope"]["id"] == "ev-77"
    assert detail["envelope"]["data"]["customer"]["number"] == "77"
    assert detail["headers"][H.ERROR_CODE] == "BC-POSTING-GROUP-MISSING"
    assert detail["headers"][H.BC_STATUS] == 400
    assert [h["code"] for h in detail["history"]] == ["BC-POSTING-GROUP-MISSING"]
    entry = CATALOGUE["BC-POSTING-GROUP-MISSING"]
    assert detail["error"] == {
        "code": "BC-POSTING-GROUP-MISSING",
        "title": entry.title,
        "fix": entry.fix,
    }
    shown = json.dumps(detail)
    assert "hunter2secret" not in shown
    assert "abc.def" not in shown
    assert await dlq.show_dead_letter(settings, "no-such-id") is None
    assert await depth(settings, settings.queue("dead")) == 1


async def test_show_of_a_body_that_is_not_json(settings: Settings) -> None:
    consumer = Consumer(settings, Scripted().registry())
    await consumer.start()
    try:
        await publish(settings, b"{not json, password=sw0rdfish", CREATED)
        await wait_depth(settings, settings.queue("dead"), 1)
    finally:
        await consumer.stop(grace=0)
    [letter] = await dlq.list_dead_letters(settings)
    assert letter.id.startswith("sha256:")
    assert letter.code == "EVENT-INVALID"
    detail = await dlq.show_dead_letter(settings, letter.id)
    assert detail is not None
    assert detail["envelope"] is None
    assert detail["body"].startswith("{not json")
    assert "sw0rdfish" not in detail["body"]


async def _delivery_limit_dead_letter(settings: Settings, body: bytes) -> None:
    """Make the broker itself dead-letter a message: deliver it past the exports queue's
    delivery limit without an outcome (what crashing consumers do)."""
    topology = await apply_topology(settings)
    await publish(settings, body, CREATED)
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(topology.exports.name, ensure=False)
        while await depth(settings, topology.dead.name) == 0:
            message = await queue.get(no_ack=False, fail=False)
            if message is not None:
                await message.nack(requeue=True)


async def test_broker_dead_lettered_message_is_delivery_limit_and_replays(
    settings: Settings,
) -> None:
    await _delivery_limit_dead_letter(settings, f.customer_event("9", id_="ev-9"))
    [letter] = await dlq.list_dead_letters(settings)
    assert (letter.id, letter.code, letter.error_class) == (
        "ev-9",
        "DELIVERY-LIMIT",
        "delivery_limit",
    )
    assert letter.org == f.ORG
    assert letter.subject == "customer 9"
    assert letter.last_failure is not None
    detail = await dlq.show_dead_letter(settings, "ev-9")
    assert detail is not None
    assert detail["error"]["title"] == CATALOGUE["DELIVERY-LIMIT"].title

    result = await dlq.replay(settings, actor="test")
    assert (result.matched, result.replayed) == (1, 1)
    [copy] = await drain(settings, settings.queue("exports"))
    assert copy.headers[H.ROUTING_KEY] == CREATED
    assert not {"x-death", "x-first-death-reason"} & set(copy.headers)
    assert copy.headers.get("x-delivery-count", 0) == 0  # the broker's count starts again
    assert copy.headers[H.REPLAY_ID] == result.replay_id


async def test_replay_moves_exactly_the_filtered_set_and_they_then_succeed(
    settings: Settings,
) -> None:
    a = [Spec(str(i), org="org-a") for i in range(3)]
    b = [Spec(str(i), org="org-b") for i in range(10, 12)]
    await make_dead_letters(settings, [a[0], b[0], a[1], b[1], a[2]])

    dry = await dlq.replay(settings, dlq.Filters(org="org-a"), actor="test", dry_run=True)
    assert [x.id for x in dry.letters] == [s.id for s in a]
    assert dry.replayed == 0
    assert await depth(settings, settings.queue("dead")) == 5
    assert await depth(settings, settings.queue("exports")) == 0

    progress: list[tuple[int, int]] = []
    result = await dlq.replay(
        settings,
        dlq.Filters(org="org-a"),
        actor="test",
        progress=lambda done, total: progress.append((done, total)),
    )
    assert (result.matched, result.replayed, result.error) == (3, 3, None)
    assert progress[-1] == (3, 3)
    await wait_depth(settings, settings.queue("exports"), 3)
    # The cause is fixed: the handler now succeeds for everything.
    fixed = Scripted()
    consumer = Consumer(settings, fixed.registry())
    await consumer.start()
    try:
        await wait_for(lambda: len(fixed.done) == 3)
    finally:
        await consumer.stop()
    assert sorted(fixed.done) == sorted(s.id for s in a)
    assert all(fixed.calls[s.id] == 1 for s in a)
    # The others are untouched, in their order.
    assert await dead_ids(settings) == [s.id for s in b]


async def test_after_many_acks_the_rest_keep_their_order(settings: Settings) -> None:
    """Many acks put the queue client over its pending-command limit; what is handed back
    afterwards must still come back in order."""
    specs = [Spec(str(i), org="org-b" if i % 3 == 0 else "org-a") for i in range(240)]
    await make_dead_letters(settings, specs)
    result = await dlq.replay(settings, dlq.Filters(org="org-b"), actor="test")
    assert result.replayed == 80
    assert await dead_ids(settings) == [s.id for s in specs if s.org == "org-a"]


async def test_replayed_copy_starts_a_fresh_history(settings: Settings) -> None:
    """Attempts and history reset: a replayed event that fails again shows one failure."""
    await make_dead_letters(settings, [Spec("5", transient=True, code="BC-THROTTLED")])
    [before] = await dlq.list_dead_letters(settings)
    assert (before.error_class, before.attempts) == ("attempts_exhausted", 3)

    result = await dlq.replay(settings, actor="test")
    [copy] = await drain(settings, settings.queue("exports"))
    assert copy.headers[H.REPLAY_ID] == result.replay_id
    assert copy.headers[H.REPLAYED_AT]
    assert copy.headers[H.ROUTING_KEY] == CREATED
    stale = {H.ATTEMPT, H.ATTEMPTS, H.HISTORY, H.ERROR_CODE, H.FIRST_FAILURE, H.ERROR_CLASS}
    assert not stale & set(copy.headers)

    # Put the copy back exactly as replay wrote it, and let it fail again (permanently now).
    await _to_queue(settings, settings.queue("exports"), copy.body, copy.headers)
    handler = Scripted({"5": Permanent("BC-VALIDATION", "still wrong")})
    consumer = Consumer(settings, handler.registry())
    await consumer.start()
    try:
        await wait_depth(settings, settings.queue("dead"), 1)
    finally:
        await consumer.stop(grace=0)
    [after] = await dlq.list_dead_letters(settings)
    assert (after.code, after.attempts, after.replay_id) == ("BC-VALIDATION", 1, result.replay_id)
    assert len(after.history()) == 1


async def _to_queue(settings: Settings, queue: str, body: bytes, headers: dict[str, Any]) -> None:
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        message = aio_pika.Message(
            body, headers=headers, content_type="application/cloudevents+json"
        )
        await channel.default_exchange.publish(message, routing_key=queue)


@pytest.mark.parametrize("exclusive", [True, False], ids=["locked", "unlocked"])
async def test_two_concurrent_replays_replay_each_message_once(
    settings: Settings, exclusive: bool
) -> None:
    """Held (unacked) messages are invisible to the other replay; with the lock they also
    run one after the other."""
    expected = await make_dead_letters(settings, [Spec(str(i)) for i in range(60)])
    one, two = await asyncio.gather(
        dlq.replay(settings, actor="one", exclusive=exclusive),
        dlq.replay(settings, actor="two", exclusive=exclusive),
    )
    assert one.replayed + two.replayed == 60
    assert not {x.id for x in one.letters} & {x.id for x in two.letters}
    arrived = ids_of(await drain(settings, settings.queue("exports")))
    assert sorted(arrived) == sorted(expected)  # each exactly once
    assert await depth(settings, settings.queue("dead")) == 0


async def test_concurrent_replays_with_different_filters_miss_nothing(
    settings: Settings,
) -> None:
    specs = [Spec(str(i), org="org-a" if i % 2 else "org-b") for i in range(40)]
    await make_dead_letters(settings, specs)
    a, b = await asyncio.gather(
        dlq.replay(settings, dlq.Filters(org="org-a"), actor="a"),
        dlq.replay(settings, dlq.Filters(org="org-b"), actor="b"),
    )
    assert (a.replayed, b.replayed) == (20, 20)
    arrived = ids_of(await drain(settings, settings.queue("exports")))
    assert sorted(arrived) == sorted(s.id for s in specs)


async def test_purge_archives_then_deletes(settings: Settings, tmp_path: Path) -> None:
    specs = [Spec("1", org="org-a"), Spec("2", org="org-b"), Spec("3", org="org-a")]
    await make_dead_letters(settings, specs)
    archive = tmp_path / "archive.jsonl"
    result = await dlq.purge(settings, dlq.Filters(org="org-a"), actor="test", archive=archive)
    assert (result.matched, result.purged, result.archive) == (2, 2, archive)
    records = [json.loads(line) for line in archive.read_text().splitlines()]
    assert [r["id"] for r in records] == ["ev-org-a-1", "ev-org-a-3"]
    assert records[0]["envelope"]["data"]["customer"]["number"] == "1"
    assert records[0]["headers"][H.ERROR_CODE] == "BC-POSTING-GROUP-MISSING"
    assert records[0]["purge_id"] == result.purge_id
    assert archive.stat().st_mode & 0o077 == 0  # customer data: owner only
    assert await dead_ids(settings) == ["ev-org-b-2"]


async def test_purge_only_what_was_confirmed(settings: Settings, tmp_path: Path) -> None:
    await make_dead_letters(settings, [Spec("1"), Spec("2")])
    result = await dlq.purge(settings, actor="test", archive=None, only_ids={f"ev-{f.ORG}-1"})
    assert result.purged == 1
    assert await dead_ids(settings) == [f"ev-{f.ORG}-2"]


async def test_missing_dead_letter_queue_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(dlq.DlqError, match="topology apply"):
        await dlq.list_dead_letters(settings)


async def test_operations_sharing_the_process_connection_take_turns(settings: Settings) -> None:
    """The API runs dead-letter operations on the runtime's one connection. The broker's
    exclusive-queue lock does not keep two operations on one connection apart, so the process
    orders them itself: two listings at once each see the whole queue, in order."""
    expected = await make_dead_letters(settings, [Spec(str(i)) for i in range(MANY)])
    connection = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
    async with connection:
        shared = dlq.DeadLetters(settings, connection)
        first, second = await asyncio.gather(shared.list_letters(), shared.list_letters())
    assert [x.id for x in first] == expected
    assert [x.id for x in second] == expected
    assert await depth(settings, settings.queue("dead")) == MANY
