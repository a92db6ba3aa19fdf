"""Every console page at 100,000 dead letters (index rows) and 1,000 organizations answers in
well under a second, on SQLite and on PostgreSQL (``python -m tests.bench.console_pages``
prints the same figures as a table)."""

from __future__ import annotations

import pytest

from tests.bench.console_pages import PAGES, measure, seed
from tests.support.db import MakeStore

LETTERS = 100_000
ORGS = 1_000
# "Well under a second" on a 2-core machine shared with other work: best of 3 below 1 s.
LIMIT_MS = 1000


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_every_page_is_fast_at_100000_dead_letters(make_store: MakeStore) -> None:
    store = make_store()
    await store.migrate()
    await seed(store, LETTERS, ORGS)
    timings = await measure(store, runs=3)
    assert set(timings) == set(PAGES)
    slow = {name: round(ms) for name, ms in timings.items() if ms >= LIMIT_MS}
    assert not slow, f"pages slower than {LIMIT_MS} ms: {slow} (all: {timings})"
