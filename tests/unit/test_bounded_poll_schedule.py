"""The poll schedule of many organizations (issue #22): rounds spread evenly over the interval
when the process starts, after every organization was polled at once (the catch-up after an
outage), and while every round fails; no thundering herd."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography.fernet import Fernet

from tests.support import factories as f
from tests.support.settings import make_settings
from worker.app import bc_hub
from worker.config.crypto import SecretBox
from worker.config.model import parse_config
from worker.store import ConfigCache, Leases, Store
from worker.sync.context import SyncContext
from worker.sync.expenses import ExpenseState
from worker.sync.poller import ExpensePoller, phases

ORGS = 200
INTERVAL = 60.0


class NoSink:
    """Moment's side of the poll: nothing is published in these rounds (no BC is reached)."""

    async def events(self, items: Iterable[tuple[str, bytes, str]]) -> int:
        return len(list(items))


def deviation(offsets: Sequence[float], start: float, interval: float) -> float:
    """Largest distance of the k-th sorted offset from a uniform spread over
    [start, start + interval), as a share of the interval."""
    ordered = sorted(offsets)
    return (
        max(abs(o - (start + (k + 0.5) / len(ordered) * interval)) for k, o in enumerate(ordered))
        / interval
    )


def test_phases_are_evenly_spaced_deterministic_and_stable() -> None:
    orgs = [f"org-{i}" for i in range(500)]
    spread = phases(orgs, INTERVAL)
    assert spread == phases(list(reversed(orgs)), INTERVAL)  # the same on every replica
    gaps = sorted(spread.values())
    assert gaps[0] == 0.0
    assert all(abs((b - a) - INTERVAL / 500) < 1e-9 for a, b in itertools.pairwise(gaps))
    # One organization more moves the others by a couple of slots at most, not all over.
    moved = phases([*orgs, "org-new"], INTERVAL)
    assert max(abs(moved[o] - spread[o]) for o in orgs) <= 2 * INTERVAL / 500


async def _world(tmp_path: Path, *, readable: bool = True) -> tuple[Store, ExpensePoller]:
    """200 organizations with the expense import on, paused (a round then needs no BC), or
    with configs this poller cannot decrypt (every round fails)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'poll.db'}"
    key = Fernet.generate_key().decode()
    writer = Store.from_url(url, secrets=SecretBox([key]))
    await writer.migrate()
    state = ExpenseState(writer)
    config = parse_config(f.dialog(notification_recipients=[]))
    for i in range(ORGS):
        await writer.configs.put(f"org-{i}", config)
        await state.record_error(f"org-{i}", "BC-COMPANY-MISSING", "gone", pause_version=1)
    await writer.close()
    store = Store.from_url(
        url, secrets=SecretBox([key if readable else Fernet.generate_key().decode()])
    )
    settings = make_settings(tmp_path, database_url=url)
    hub = bc_hub(settings)  # never reached: the rounds stop before BC
    ctx = SyncContext(settings, ConfigCache(store), hub, claims=Leases(store))
    poller = ExpensePoller(
        settings=settings,
        store=store,
        ctx=ctx,
        sink=NoSink(),
        leases=Leases(store),
        interval_s=INTERVAL,
    )
    return store, poller


def _offsets(poller: ExpensePoller, now: float) -> list[float]:
    return [s.due - now for s in poller._schedule.values()]


async def test_at_start_the_first_rounds_are_spread_over_the_interval(tmp_path: Path) -> None:
    store, poller = await _world(tmp_path)
    try:
        now = time.monotonic()
        results = await poller.run_round(due_only=True)
        assert len(results) <= 2  # not every organization at once
        offsets = _offsets(poller, now)
        assert len(offsets) == ORGS
        first = [o for o in offsets if o < INTERVAL]
        assert len(first) >= ORGS - len(results)
        assert deviation(first, 0.0, INTERVAL) <= 0.02
    finally:
        await poller.ctx.hub.close()
        await store.close()


async def test_after_every_organization_was_polled_at_once_they_spread_again(
    tmp_path: Path,
) -> None:
    """The catch-up after an outage polls every overdue organization back to back; their next
    rounds are on their own phases again, not one burst an interval later."""
    store, poller = await _world(tmp_path)
    try:
        now = time.monotonic()
        results = await poller.run_round()  # everyone at once
        assert {r.status for r in results} == {"paused"}
        offsets = _offsets(poller, now)
        assert min(offsets) >= INTERVAL / 2 - 1
        assert deviation(offsets, INTERVAL / 2, INTERVAL) <= 0.05
    finally:
        await poller.ctx.hub.close()
        await store.close()


async def test_while_every_round_fails_the_retries_stay_spread(tmp_path: Path) -> None:
    store, poller = await _world(tmp_path, readable=False)
    try:
        now = time.monotonic()
        results = await poller.run_round()
        assert {r.reason for r in results} == {"CONFIG-UNREADABLE"}
        offsets = _offsets(poller, now)
        assert min(offsets) >= INTERVAL - 1  # backed off a whole interval
        assert deviation(offsets, INTERVAL, INTERVAL) <= 0.05
        again = await poller.run_round()  # failing again: twice the interval, still spread
        assert {r.reason for r in again} == {"CONFIG-UNREADABLE"}
        offsets = _offsets(poller, now)
        assert min(offsets) >= 2 * INTERVAL - 1
        assert deviation(offsets, 2 * INTERVAL, INTERVAL) <= 0.05
    finally:
        await poller.ctx.hub.close()
        await store.close()
