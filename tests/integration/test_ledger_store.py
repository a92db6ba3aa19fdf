"""The sync ledger's repository on SQLite and PostgreSQL: the newest-wins rule is decided by the
database atomically (claims, keys in byte order on both), and the integration log's queries stay
fast on an organization with 100,000 objects."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import StatementError

from tests.bench.ledger_log import ORG, measure, seed
from worker.store import Store
from worker.sync.ledger import Applied, LedgerRepository, LogFilters, order_key

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
WHERE = ("org-a", "customer", "c-1")


async def claim(
    repo: LedgerRepository, event_id: str, seconds: float, *, owner: str = "w1"
) -> tuple[bool, bool, bool]:
    result = await repo.claim(
        *WHERE,
        moment_number="10001",
        key=order_key(T0 + timedelta(seconds=seconds), None, event_id),
        event_id=event_id,
        attempt=1,
        owner=owner,
        ttl_s=60,
        now=T0,
    )
    return result.acquired, result.superseded, result.newest


async def apply(repo: LedgerRepository, event_id: str, seconds: float, owner: str = "w1") -> bool:
    when = T0 + timedelta(seconds=seconds)
    return await repo.finish(
        *WHERE,
        owner=owner,
        event_id=event_id,
        state="synced",
        applied=Applied(order_key(when, None, event_id), event_id, when, None),
        bc_number="10001",
        now=T0,
    )


async def test_claims_decide_newest_wins_atomically(store: Store) -> None:
    repo = LedgerRepository(store)
    assert await claim(repo, "e2", 2) == (True, False, True)
    # A second worker meanwhile: busy (it goes round the ladder), but it is the newer change.
    assert await claim(repo, "e3", 3, owner="w2") == (False, False, True)
    assert await apply(repo, "e2", 2)
    entry = await repo.get(*WHERE)
    # e2 was applied, but the newest change received is e3: the state stays pending for it.
    assert entry is not None and (entry.applied_event_id, entry.state) == ("e2", "pending")
    assert await claim(repo, "e1", 1) == (True, True, False)  # older than applied: superseded
    await repo.release(*WHERE, owner="w1", now=T0)
    assert await claim(repo, "e2", 2) == (True, False, False)  # the applied one again: not
    await repo.release(*WHERE, owner="w1", now=T0)
    assert await claim(repo, "e3", 3, owner="w2") == (True, False, True)
    assert await apply(repo, "e3", 3, owner="w2")
    entry = await repo.get(*WHERE)
    assert entry is not None and (entry.applied_event_id, entry.state) == ("e3", "synced")
    # A finish after the claim was lost writes nothing.
    assert not await apply(repo, "e3", 3, owner="w1")


async def test_failures_change_the_state_only_for_the_newest_change(store: Store) -> None:
    repo = LedgerRepository(store)
    await claim(repo, "e1", 1)
    await repo.release(*WHERE, owner="w1", now=T0)
    await claim(repo, "e2", 2)
    await repo.release(*WHERE, owner="w1", now=T0)
    older = await repo.record_failure(
        *WHERE, event_id="e1", state="failed", code="X", message="m", attempts=5, now=T0
    )
    assert older is None
    newer = await repo.record_failure(
        *WHERE,
        event_id="e2",
        state="failed",
        code="BC-ACCOUNT-MISSING",
        message="Bearer abc.def secret: line\nTraceback (most recent call last): boom",
        attempts=1,
        now=T0,
    )
    assert newer is not None
    entry, published = newer
    assert (entry.state, entry.last_error_code, published) == ("failed", "BC-ACCOUNT-MISSING", None)
    assert entry.last_error_message is not None and "Traceback" not in entry.last_error_message
    assert "abc.def" not in entry.last_error_message


async def test_tie_break_is_the_event_id_in_byte_order_on_every_database(store: Store) -> None:
    # Same time, no sequence: "B-1" < "a-1" in code point order (and in PostgreSQL's "C").
    repo = LedgerRepository(store)
    assert await claim(repo, "a-1", 5) == (True, False, True)
    assert await apply(repo, "a-1", 5)
    assert await claim(repo, "B-1", 5) == (True, True, False)
    await repo.release(*WHERE, owner="w1", now=T0)
    # A sequence breaks the tie before the id: 10 > 9 as integers, not as text.
    k9 = order_key(T0, "9", "z")
    k10 = order_key(T0, "10", "a")
    assert k9 < k10
    assert order_key(T0, None, "z") < order_key(T0, "0", "a")
    assert order_key(None, "99", "z") < order_key(T0, None, "a")


async def test_the_log_is_fast_on_100000_objects(store: Store) -> None:
    now = await seed(store, 100_000, other=20_000)
    times = await measure(store, now)
    print({name: round(ms, 2) for name, ms in times.items()})
    slow = {name: ms for name, ms in times.items() if ms > 250}
    assert not slow, f"queries slower than 250 ms on {store.dialect}: {slow}"
    repo = LedgerRepository(store)
    page, cursor = await repo.page(ORG, LogFilters(state="failed", object_type="invoice"))
    assert len(page) == 50 and cursor is not None
    assert all(e.state == "failed" and e.object_type == "invoice" for e in page)
    assert [e.updated_at for e in page] == sorted((e.updated_at for e in page), reverse=True)
    [one] = (await repo.page(ORG, LogFilters(number="150000")))[0]
    assert (one.moment_id, one.org_id) == ("i-50000", ORG)


async def test_concurrent_writes_share_transactions_and_one_bad_one_fails_alone(
    store: Store,
) -> None:
    repo = LedgerRepository(store)
    keys = [f"c-{i}" for i in range(20)]

    async def one(moment_id: str) -> tuple[bool, bool, bool]:
        result = await repo.claim(
            "org-g",
            "customer",
            moment_id,
            moment_number=moment_id,
            key=order_key(T0, None, f"e-{moment_id}"),
            event_id=f"e-{moment_id}",
            attempt=1,
            owner="w1",
            ttl_s=60,
            now=T0,
        )
        return result.acquired, result.superseded, result.newest

    bad = repo._writes.run(repo._sql.claim, {"org_id": "org-g"}, returning=True)
    results = await asyncio.gather(bad, *(one(k) for k in keys), return_exceptions=True)
    assert isinstance(results[0], StatementError)
    assert results[1:] == [(True, False, True)] * len(keys)
    for k in keys:
        assert (await repo.get("org-g", "customer", k)) is not None
