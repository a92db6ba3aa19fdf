"""When the retry watch calls an event on the ladder lost (worker/messaging/retry_watch.py):
never while it may still be on its way back, always once it cannot be."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker.messaging import headers as H
from worker.messaging.retry_watch import SETTLE_S, is_lost, recorded_headers
from worker.store import ScheduledRetry

DUE = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
EXPORTS = "bc-sync.exports"
RETRY = "bc-sync.retry.60s"
GRACE = 900.0


def item() -> ScheduledRetry:
    return ScheduledRetry(
        event_id="ev-1",
        org_id="org-1",
        queue=RETRY,
        step_s=60.0,
        body=b"{}",
        headers={},
        due_at=DUE,
        scheduled_at=DUE - timedelta(seconds=60),
    )


@pytest.mark.parametrize(
    ("overdue_s", "retry_depth", "exports_depth", "lost"),
    [
        # Not yet due, or just due: it may be in the group commit of its delivery.
        (-30, 0, 0, False),
        (SETTLE_S - 1, 0, 0, False),
        # Both queues empty once settled: nothing can be ahead of it, it is gone.
        (SETTLE_S + 1, 0, 0, True),
        # Others wait in its retry queue: one with a longer wait may hold it back, for at
        # most the queue's wait; after that plus the grace it is lost.
        (SETTLE_S + 1, 3, 0, False),
        (60 + GRACE - 1, 3, 0, False),
        (60 + GRACE + 1, 3, 0, True),
        # A backlog in the exports queue: it may be waiting there, however late.
        (SETTLE_S + 1, 0, 500, False),
        (60 + GRACE + 3600, 3, 500, False),
        # A depth that could not be read counts as busy.
        (SETTLE_S + 1, None, 0, False),
    ],
)
def test_lost_only_when_it_cannot_be_on_its_way(
    overdue_s: float, retry_depth: int | None, exports_depth: int, lost: bool
) -> None:
    depths = {EXPORTS: exports_depth}
    if retry_depth is not None:
        depths[RETRY] = retry_depth
    now = DUE + timedelta(seconds=overdue_s)
    assert is_lost(item(), now, depths, EXPORTS, GRACE) is lost


def test_the_broker_headers_are_not_recorded() -> None:
    headers = {
        H.ATTEMPT: 2,
        H.ROUTING_KEY: "moment.customer.created",
        "traceparent": "00-abc-def-01",
        "x-death": [{"count": 1, "queue": RETRY}],
        "x-first-death-queue": RETRY,
    }
    assert recorded_headers(headers) == {
        H.ATTEMPT: 2,
        H.ROUTING_KEY: "moment.customer.created",
        "traceparent": "00-abc-def-01",
    }
