"""The organizations page's BC health signals: written by the consumer's observer from its
failure reports (retries included), read by the console from the store."""

from __future__ import annotations

from datetime import timedelta

from worker.console.overview import Overview
from worker.events.handlers import FailureReport
from worker.ops.dlq.index import DeadLetterIndex
from worker.ops.signals import SignalObserver, SignalRepository
from worker.store import Store, utcnow


def report(code: str, *, org: str = "org-a", bc_code: str | None = None) -> FailureReport:
    return FailureReport(
        org=org,
        event_id="ev-1",
        event_type="moment.invoice.created",
        object_type="invoice",
        moment_id="i-1",
        moment_number="1864",
        code=code,
        message="m",
        attempts=1,
        final=False,
        bc_code=bc_code,
    )


async def test_throttling_breaker_and_rejected_credentials_reach_the_overview(
    store: Store,
) -> None:
    signals = SignalRepository(store)
    observer = SignalObserver(signals)
    overview = Overview(store, DeadLetterIndex(store), signals, poll_interval_s=300)
    await observer.on_failure(report("BC-THROTTLED"))
    await observer.on_failure(report("BC-UNAVAILABLE", bc_code="CircuitOpen"))
    await observer.on_failure(report("BC-CREDENTIALS-REJECTED", org="org-b"))
    await observer.on_failure(report("BC-UNAVAILABLE", org="org-c"))  # an outage: no signal
    health = await overview.health()
    a, b = health["org-a"], health["org-b"]
    assert (a.throttled, a.breaker_open, a.credentials_rejected) == (True, True, False)
    assert (b.throttled, b.breaker_open, b.credentials_rejected) == (False, False, True)
    assert "org-c" not in health
    page = await overview.page(problem="credentials")
    assert [h.org_id for h in page.rows] == ["org-b"]

    # A success after the rejection ends that signal; old throttling is over by itself.
    await store.sync_outcomes.record_success("org-b", "invoice", "103001")
    await signals.record("org-a", "throttled_at", utcnow() - timedelta(hours=1))
    await signals.record("org-a", "breaker_open_at", utcnow() - timedelta(hours=1))
    health = await overview.health()
    assert health["org-b"].credentials_rejected is False
    assert (health["org-a"].throttled, health["org-a"].breaker_open) == (False, False)


async def test_a_storm_of_429s_writes_a_few_rows_not_one_per_message(store: Store) -> None:
    writes: list[str] = []
    signals = SignalRepository(store)
    original = signals.record

    async def counting(org_id: str, signal: str, at: object = None) -> None:
        writes.append(signal)
        await original(org_id, signal)

    signals.record = counting  # type: ignore[method-assign]
    now = [0.0]
    observer = SignalObserver(signals, every_s=10, clock=lambda: now[0])
    for _ in range(500):
        await observer.on_failure(report("BC-THROTTLED"))
        now[0] += 0.01
    assert writes == ["throttled_at"]
    now[0] += 10
    await observer.on_failure(report("BC-THROTTLED"))
    assert writes == ["throttled_at", "throttled_at"]


async def test_paused_or_lagging_imports_are_a_problem(store: Store) -> None:
    from worker.store import integration_configs
    from worker.sync.expenses import expense_polls
    from worker.sync.payments import payment_polls

    now = utcnow()
    async with store.write() as conn:
        for org, expenses, payments in (("org-e", True, False), ("org-p", False, True)):
            await conn.execute(
                integration_configs.insert().values(
                    org_id=org,
                    config={"import_expenses": expenses, "import_payments": payments},
                    secret_ciphertext="x",
                    import_expenses=expenses,
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
        await conn.execute(
            expense_polls.insert().values(org_id="org-e", last_success_at=now, paused_at=now)
        )
        await conn.execute(
            payment_polls.insert().values(org_id="org-p", last_success_at=now - timedelta(hours=2))
        )
    signals = SignalRepository(store)
    overview = Overview(store, DeadLetterIndex(store), signals, poll_interval_s=300)
    health = await overview.health()
    assert (health["org-e"].import_paused, health["org-e"].payments_lagging) == (True, False)
    assert (health["org-p"].payments_paused, health["org-p"].payments_lagging) == (False, True)
    page = await overview.page(problem="import")
    assert [h.org_id for h in page.rows] == ["org-e", "org-p"]
