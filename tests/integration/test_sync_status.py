"""Successes reach the status table in batches: the latest per organization and object type,
never lost on a clean stop (real SQLite and PostgreSQL)."""

from __future__ import annotations

from worker.store import Store
from worker.sync.status import SuccessBuffer


async def test_the_latest_success_per_object_type_lands_and_a_stop_flushes(store: Store) -> None:
    buffer = SuccessBuffer(store.sync_outcomes, interval=3600)  # only stop() flushes here
    await buffer.start()
    for number in ("1001", "1002", "1003"):
        await buffer.record_success("org-1", "invoice", number)
    await buffer.record_success("org-1", "customer", "10001")
    await buffer.record_success("org-2", "invoice", "2001")
    assert await store.outcomes("org-1") == []  # not written yet: one batch later
    await buffer.stop()
    got = {o.object_type: o.last_success_ref for o in await store.outcomes("org-1")}
    assert got == {"invoice": "1003", "customer": "10001"}
    assert [o.last_success_ref for o in await store.outcomes("org-2")] == ["2001"]


async def test_a_failure_recorded_later_is_not_hidden_by_an_older_batched_success(
    store: Store,
) -> None:
    buffer = SuccessBuffer(store.sync_outcomes, interval=3600)
    await buffer.record_success("org-1", "invoice", "1001")
    await store.record_failure("org-1", "invoice", "BC-ACCOUNT-MISSING", "account 9999")
    await buffer.flush()
    [outcome] = await store.outcomes("org-1")
    assert outcome.last_success_ref == "1001"
    assert outcome.last_failure_code == "BC-ACCOUNT-MISSING"
    assert outcome.last_failure_at is not None and outcome.last_success_at is not None
    assert outcome.last_failure_at > outcome.last_success_at
