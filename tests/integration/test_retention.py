"""Retention on SQLite and PostgreSQL with the clock injected: ledger history and states,
published expense lines and notification items go by age, in small batches; what reconciliation
and the integration log still need stays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

from tests.support.settings import make_settings
from worker.notify.retention import Retention
from worker.notify.store import NotificationRepository, notification_digests, notification_items
from worker.store import Store
from worker.store.leases import Leases
from worker.sync.expenses import published_expenses
from worker.sync.ledger import sync_ledger, sync_ledger_steps

NOW = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)


def days(n: float) -> datetime:
    return NOW - timedelta(days=n)


def ledger_row(moment_id: str, state: str, updated: datetime) -> dict[str, object]:
    return {
        "org_id": "org-r",
        "moment_id": moment_id,
        "object_type": "invoice",
        "moment_number": moment_id,
        "state": state,
        "attempts": 1,
        "created_at": updated,
        "updated_at": updated,
    }


def step(moment_id: str, at: datetime, name: str = "received") -> dict[str, object]:
    return {
        "org_id": "org-r",
        "object_type": "invoice",
        "moment_id": moment_id,
        "at": at,
        "step": name,
    }


async def count(store: Store, table: object, *where: object) -> int:
    async with store.read() as conn:
        query = select(func.count()).select_from(table)  # type: ignore[arg-type]
        for w in where:
            query = query.where(w)  # type: ignore[arg-type]
        return int((await conn.execute(query)).scalar_one())


async def test_prunes_by_age_in_batches_and_keeps_what_is_needed(
    store: Store, tmp_path: Path
) -> None:
    s = make_settings(tmp_path)
    assert (s.retention_states_days, s.retention_steps_days) == (400, 90)
    async with store.write() as conn:
        await conn.execute(
            insert(sync_ledger),
            [
                ledger_row("old-synced", "synced", days(500)),
                ledger_row("old-failed", "failed", days(401)),
                ledger_row("old-retrying", "retrying", days(500)),  # in flight: kept
                ledger_row("recent", "synced", days(10)),
            ],
        )
        await conn.execute(
            insert(sync_ledger_steps),
            [step("old-synced", days(500))]
            + [step("recent", days(95) + timedelta(minutes=i)) for i in range(23)]
            + [step("recent", days(1) + timedelta(minutes=i), f"s{i}") for i in range(60)],
        )
        await conn.execute(
            insert(published_expenses),
            [
                {"org_id": "org-r", "line_id": f"L{i}", "event_id": f"e{i}", "published_at": t}
                for i, t in enumerate([days(401)] * 9 + [days(30)] * 2)
            ],
        )
        digests: list[int] = []
        for sent in (days(40), days(5)):
            stmt = insert(notification_digests).values(
                org_id="org-r",
                created_at=sent,
                window_start=sent,
                window_end=sent,
                failures=1,
                resolved=0,
                recipients=[],
                delivered={},
                sent_at=sent,
            )
            digests.append(
                (await conn.execute(stmt.returning(notification_digests.c.id))).scalar_one()
            )
        digest_old, digest_new = digests
        await conn.execute(
            insert(notification_items),
            [
                {
                    "org_id": "org-r",
                    "kind": "resolved",
                    "occurred_at": at,
                    "digest_id": digest,
                }
                for digest, at in ((digest_old, days(40)), (digest_new, days(5)))
            ],
        )

    retention = Retention(s, store, Leases(store), clock=lambda: NOW, batch=7, pause_s=0)
    pruned = await retention.run_once()

    async with store.read() as conn:
        kept: set[str] = set((await conn.execute(select(sync_ledger.c.moment_id))).scalars())
        query = select(sync_ledger_steps.c.step).order_by(sync_ledger_steps.c.id)
        steps: list[str] = list((await conn.execute(query)).scalars())
    assert kept == {"old-retrying", "recent"}
    # 90 days of steps, and at most 50 per object: the newest 50 of "recent".
    assert steps == [f"s{i}" for i in range(10, 60)]
    assert await count(store, published_expenses) == 2
    assert await count(store, notification_items) == 1
    assert await count(store, notification_digests) == 1
    assert pruned.rows == {
        "sync_ledger_steps": 1 + 23 + 10,
        "sync_ledger": 2,
        "published_expenses": 9,
        "notifications": 2,
    }
    # A second run finds nothing left to do.
    assert (await retention.run_once()).rows == {}
    assert await NotificationRepository(store).status("org-r") is not None
