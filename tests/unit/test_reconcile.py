"""The reconciliation's pure matching (worker/ops/reconcile.py): classes, differences, the
organization's number pattern, sums per class and currency."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from worker.bc.models import PostedDocument
from worker.ops.reconcile import (
    BcDocument,
    MomentDocument,
    NumberPattern,
    ReconcileError,
    classify,
    parse_period,
    summarize,
)

PERIOD = (date(2026, 11, 1), date(2026, 11, 30))


def _moment(number: str, total: str = "100.00", **over: Any) -> MomentDocument:
    values: dict[str, Any] = {
        "type": "invoice",
        "moment_id": f"i-{number}",
        "number": number,
        "document_date": "2026-11-10",
        "customer_number": "10000",
        "currency_code": "SEK",
        "total_excluding_tax": Decimal(total),
        "total_including_tax": None,
        "state": "synced",
        **over,
    }
    return MomentDocument(**values)


def _bc(external: str, total: str = "100.00", type_: Any = "invoice", **over: Any) -> BcDocument:
    values: dict[str, Any] = {
        "id": f"id-{external}-{over.pop('n', 1)}",
        "number": f"10{external}",
        "external_document_number": external,
        "customer_number": "10000",
        "status": "Open",
        "posting_date": date(2026, 11, 10),
        "currency_code": "SEK",
        "total_amount_excluding_tax": Decimal(total),
        "total_amount_including_tax": Decimal(total) * Decimal("1.25"),
        **over,
    }
    return BcDocument(type_, PostedDocument(**values))


def _classes(rows: Any) -> dict[str | None, str]:
    return {r.moment_number: r.cls for r in rows}


def test_each_class() -> None:
    pattern = NumberPattern.learn(["1864", "1865"])
    moment = [_moment("1864"), _moment("1865"), _moment("1866"), _moment("1867", "90.00")]
    bc = [
        _bc("1864"),
        _bc("1865"),
        _bc("1865", n=2),
        _bc("1867"),
        _bc("1899"),
        _bc("PO-ABC"),  # not Moment-looking: no row
    ]
    rows = classify(moment, bc, pattern=pattern, period=PERIOD)
    assert _classes(rows) == {
        "1864": "matched",
        "1865": "duplicated_in_bc",
        "1866": "missing_in_bc",
        "1867": "different",
        "1899": "unknown_in_bc",
    }
    different = next(r for r in rows if r.moment_number == "1867")
    assert different.differences == ["total_excluding_tax"]


def test_a_credit_note_is_matched_against_credit_memos_only() -> None:
    note = _moment("K-12", type="credit_note")
    rows = classify(
        [note], [_bc("K-12", type_="invoice")], pattern=NumberPattern.learn(["K-1"]), period=PERIOD
    )
    assert sorted(r.cls for r in rows) == ["missing_in_bc", "unknown_in_bc"]
    rows = classify(
        [note], [_bc("K-12", type_="credit_note")], pattern=NumberPattern.learn([]), period=PERIOD
    )
    assert _classes(rows) == {"K-12": "matched"}


def test_customer_tax_and_posting_date_differences_are_named() -> None:
    moment = _moment("1864", total_including_tax=Decimal("126.00"))
    bc = _bc("1864", customer_number="20000", posting_date=date(2026, 12, 2))
    [row] = classify([moment], [bc], pattern=NumberPattern.learn([]), period=PERIOD)
    assert row.cls == "different"
    assert row.differences == ["total_including_tax", "customer", "posting_date"]


def test_a_document_read_twice_is_not_a_duplicate() -> None:
    doc = _bc("1864")
    [row] = classify([_moment("1864")], [doc, doc], pattern=NumberPattern.learn([]), period=PERIOD)
    assert row.cls == "matched"


def test_number_pattern_learns_shapes() -> None:
    pattern = NumberPattern.learn(["INV-2026-0012", "1864", "ABC"])
    assert pattern.matches("INV-2025-9")
    assert pattern.matches("99")
    assert not pattern.matches("PO-77") and not pattern.matches("ABC")


def test_summary_counts_and_sums_per_class_and_currency() -> None:
    rows = classify(
        [_moment("1", "10.00"), _moment("2", "5.50", currency_code="EUR"), _moment("3", "7.00")],
        [_bc("1", "10.00"), _bc("2", "5.50", currency_code="EUR"), _bc("9", "3.00")],
        pattern=NumberPattern.learn(["1"]),
        period=PERIOD,
    )
    summary = summarize(rows)
    assert summary["matched"]["count"] == 2
    assert summary["matched"]["currencies"]["SEK"]["total_excluding_tax"] == "10.00"
    assert summary["matched"]["currencies"]["EUR"]["total_excluding_tax"] == "5.50"
    assert summary["missing_in_bc"]["currencies"]["SEK"]["total_excluding_tax"] == "7.00"
    assert summary["unknown_in_bc"]["currencies"]["SEK"]["total_including_tax"] == "3.75"


def test_summary_is_net_credit_notes_count_negative() -> None:
    rows = classify(
        [_moment("1", "10.00"), _moment("K-1", "4.00", type="credit_note")],
        [_bc("1", "10.00"), _bc("K-1", "4.00", type_="credit_note")],
        pattern=NumberPattern.learn([]),
        period=PERIOD,
    )
    sek = summarize(rows)["matched"]["currencies"]["SEK"]
    assert (sek["invoices"], sek["credit_notes"], sek["total_excluding_tax"]) == (1, 1, "6.00")


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        (None, "2026-11-30", "from"),
        ("2026-11-01", "30/11", "to"),
        ("2026-12-01", "2026-11-01", "to"),
    ],
)
def test_bad_periods(start: str | None, end: str, field: str) -> None:
    with pytest.raises(ReconcileError) as caught:
        parse_period(start, end)
    assert caught.value.field == field


def test_a_document_the_ledger_does_not_call_synced_is_different() -> None:
    """A released, unposted BC invoice shows status Open like a posted one: the ledger's
    state (waiting) and BC number (the draft's) tell it apart."""
    moment = _moment("1864", state="waiting", bc_number="S-INV1")
    [row] = classify([moment], [_bc("1864")], pattern=NumberPattern.learn([]), period=PERIOD)
    assert row.cls == "different"
    assert row.differences == ["bc_number", "ledger_state"]
