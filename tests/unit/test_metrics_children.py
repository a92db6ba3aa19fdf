"""Remembered metric children count into the same series as ``labels()``."""

from __future__ import annotations

from prometheus_client import REGISTRY

from worker import metrics


def test_child_is_the_labelled_series() -> None:
    labels = {"type": "moment.test.child", "outcome": "succeeded"}
    before = REGISTRY.get_sample_value("bcsync_events_handled_total", labels) or 0.0
    first = metrics.child(metrics.EVENTS_HANDLED, "moment.test.child", "succeeded")
    assert first is metrics.child(metrics.EVENTS_HANDLED, "moment.test.child", "succeeded")
    assert first is metrics.EVENTS_HANDLED.labels(type="moment.test.child", outcome="succeeded")
    first.inc()
    first.inc()
    assert REGISTRY.get_sample_value("bcsync_events_handled_total", labels) == before + 2
