"""Reconciliation end to end: Moment events through the real broker and worker into the
emulator (which follows Microsoft's AL for posted sales invoices and credit memos), documents a
person posted in BC by hand, then ``bc-sync reconcile`` and ``GET …/reconciliation`` over one
period that holds every class: matched (an invoice and a credit note), missing_in_bc (a
dead-lettered invoice, with its ledger state and error), duplicated_in_bc, different (an
invoice Moment changed after it was posted)
and unknown_in_bc (a Moment-looking number Moment never sent); a BC document with another kind
of number and a Moment invoice outside the period leave no row.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from tests.support import factories as f
from tests.support.cli import printed_json
from tests.support.exports import ORG, Exports, bc_sync
from worker.api import config_routes, reconcile_routes
from worker.api.app import ApiContext, ApiServer, create_app
from worker.cli import build_parser
from worker.ops.reconcile import CSV_COLUMNS, Reconciler
from worker.sync.ledger import sync_ledger

INVOICE_CREATED = "moment.invoice.created"
CUSTOMER = f.customer("10000")
PROJECT = f.project("4005", department="100", cust=CUSTOMER)
TOKEN = "tok-reconcile-5b2e77"
PERIOD = ["--from", "2026-11-01", "--to", "2026-11-30"]
ROUTE = "/v1/organizations/{org}/integrations/business-central/reconciliation"


def _line(quantity: float, price: float, account: str = "3010") -> dict[str, Any]:
    return {
        "description": "Konsulttimmar",
        "quantity": quantity,
        "unit_price": price,
        "account_number": account,
        "vat_code": "25",
        "project": PROJECT,
    }


def _invoice(number: str, *lines: dict[str, Any], **over: Any) -> dict[str, Any]:
    return {
        "invoice": f.invoice(number, cust=CUSTOMER, lines=list(lines) or [_line(10, 1200)], **over)
    }


async def _by_hand(exports: Exports, external: str, amount: float, posting: str) -> dict[str, Any]:
    """A sales invoice a person created and posted in BC."""
    emulator = exports.emulator
    return await emulator.control.add_sales_invoice(
        {
            "customerNumber": "10000",
            "externalDocumentNumber": external,
            "invoiceDate": posting,
            "postingDate": posting,
            "salesInvoiceLines": [
                {
                    "lineType": "Account",
                    "lineObjectNumber": "3010",
                    "quantity": 1,
                    "unitPrice": amount,
                }
            ],
        },
        at=emulator.company_ref,
    )


@pytest.fixture
async def period(exports: Exports) -> Exports:
    """November 2026 with one document of every class (and two that must not show)."""
    sent = {
        "1864": await exports.send(INVOICE_CREATED, _invoice("1864")),
        "K-1865": await exports.send(
            INVOICE_CREATED, _invoice("K-1865", _line(-2, 1200), kind="credit_note")
        ),
        "1866": await exports.send(INVOICE_CREATED, _invoice("1866", _line(1, 100, "9999"))),
        "1867": await exports.send(INVOICE_CREATED, _invoice("1867")),
        "1868": await exports.send(INVOICE_CREATED, _invoice("1868")),
        "1850": await exports.send(
            INVOICE_CREATED,
            _invoice("1850", invoice_date="2026-10-15", due_date="2026-11-15"),
        ),
    }
    for number, event_id in sent.items():
        expected = "dead_lettered" if number == "1866" else "succeeded"
        assert await exports.done(event_id) == [expected], number
    # Moment changed 1867 after it was posted (12,000 → 6,000): BC keeps what was posted.
    changed = await exports.send(INVOICE_CREATED, _invoice("1867", _line(5, 1200)))
    assert await exports.done(changed) == ["succeeded"]
    await _by_hand(exports, "1868", 12000, "2026-11-20")  # a second BC invoice for 1868
    await _by_hand(exports, "1899", 800, "2026-11-21")  # Moment never sent 1899
    await _by_hand(exports, "PO-ABC", 50, "2026-11-22")  # not a Moment-looking number
    await exports.runtime.ledger.flush()
    return exports


async def _run(exports: Exports, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    args = build_parser().parse_args(["reconcile", ORG, *PERIOD, *argv])
    capsys.readouterr()
    code = await args.func(args, exports.settings)
    out = capsys.readouterr().out
    # The test's log lines go to stdout too: the command's output starts at its first line.
    first = min(i for i in (out.find("{\n"), out.find("Reconciliation of ")) if i >= 0)
    return code, out[first:]


def _by_number(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["moment_number"]: r for r in rows}


async def test_every_class_in_one_period_as_json(
    period: Exports, capsys: pytest.CaptureFixture[str]
) -> None:
    await period.emulator.control.clear_requests()
    code, out = await _run(period, capsys, "--json")
    assert code == 1  # rows need a look
    seen = await period.emulator.control.requests()
    report = json.loads(out)
    rows = _by_number(report["rows"])
    assert set(rows) == {"1864", "K-1865", "1866", "1867", "1868", "1899"}
    assert {n: r["class"] for n, r in rows.items()} == {
        "1864": "matched",
        "K-1865": "matched",
        "1866": "missing_in_bc",
        "1867": "different",
        "1868": "duplicated_in_bc",
        "1899": "unknown_in_bc",
    }
    posted = await period.posted("1864")
    matched = rows["1864"]
    assert matched["type"] == "invoice" and matched["moment_id"] == "i-1864"
    assert matched["bc_numbers"] == [posted["number"]] and matched["bc_ids"] == [posted["id"]]
    assert matched["moment_total_excluding_tax"] == matched["bc_total_excluding_tax"] == "12000.00"
    assert matched["bc_total_including_tax"] == "15000.00"
    assert matched["moment_total_including_tax"] == "15000.00"
    assert matched["moment_customer_number"] == "10000"
    assert matched["bc_customer_numbers"] == ["10000"]
    assert matched["currency_code"] == "SEK"

    note = rows["K-1865"]
    assert note["type"] == "credit_note"
    assert note["moment_total_excluding_tax"] == note["bc_total_excluding_tax"] == "2400.00"

    missing = rows["1866"]
    assert missing["bc_numbers"] == [] and missing["ledger_state"] == "failed"
    assert missing["ledger_error_code"] == "BC-ACCOUNT-MISSING"
    assert "9999" in missing["ledger_error_message"]

    different = rows["1867"]
    assert different["differences"] == ["total_excluding_tax"]
    assert (different["moment_total_excluding_tax"], different["bc_total_excluding_tax"]) == (
        "6000.00",
        "12000.00",
    )
    assert len(rows["1868"]["bc_numbers"]) == 2
    assert len(set(rows["1868"]["bc_ids"])) == 2
    unknown = rows["1899"]
    assert unknown["moment_id"] is None and unknown["bc_total_excluding_tax"] == "800.00"

    summary = report["summary"]
    assert {c: s["count"] for c, s in summary.items()} == {
        "missing_in_bc": 1,
        "duplicated_in_bc": 1,
        "different": 1,
        "unknown_in_bc": 1,
        "matched": 2,
    }
    # Net, as in the books: the credit note counts negative.
    assert summary["matched"]["currencies"]["SEK"] == {
        "count": 2,
        "invoices": 1,
        "credit_notes": 1,
        "total_excluding_tax": "9600.00",
        "total_including_tax": "12000.00",
    }
    # Read-only: one page per document set, 1866 looked up by number, the LCY code.
    api_calls = [r for r in seen if "/companies(" in str(r.get("path", ""))]
    assert {r["method"] for r in api_calls} == {"GET"}
    assert report["bc_requests"] == len(api_calls) == 4


async def test_the_terminal_shows_the_summary_then_the_rows(
    period: Exports, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = await _run(period, capsys)
    assert code == 1
    summary_at = out.index("CLASS  ")
    rows_at = out.index("MOMENT NO")
    assert out.startswith("Reconciliation of ") and summary_at < rows_at
    summary = out[summary_at:rows_at]
    assert "missing_in_bc" in summary and "matched" in summary and "9600.00" in summary
    line_1866 = next(line for line in out[rows_at:].splitlines() if " 1866 " in line)
    assert "missing_in_bc" in line_1866 and "BC-ACCOUNT-MISSING" in line_1866
    line_1867 = next(line for line in out[rows_at:].splitlines() if " 1867 " in line)
    assert "total_excluding_tax" in line_1867


async def test_csv_has_a_header_and_one_line_per_row(
    period: Exports, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "november.csv"
    code, out = await _run(period, capsys, "--csv", str(target))
    assert code == 1 and "6 rows written" in out
    with target.open(newline="", encoding="utf-8") as fh:
        lines = list(csv.reader(fh))
    assert tuple(lines[0]) == CSV_COLUMNS
    rows = [dict(zip(CSV_COLUMNS, line, strict=True)) for line in lines[1:]]
    assert len(rows) == 6
    dup = next(r for r in rows if r["moment_number"] == "1868")
    assert dup["class"] == "duplicated_in_bc" and len(dup["bc_numbers"].split(";")) == 2
    missing = next(r for r in rows if r["moment_number"] == "1866")
    assert missing["ledger_error_code"] == "BC-ACCOUNT-MISSING" and missing["bc_ids"] == ""


async def test_bad_period_is_a_usage_error(
    exports: Exports, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args(
        ["reconcile", ORG, "--from", "2026-11-30", "--to", "2026-11-01"]
    )
    assert await args.func(args, exports.settings) == 2
    assert "before" in capsys.readouterr().err


@pytest.fixture
async def api(period: Exports) -> AsyncIterator[str]:
    settings = period.settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    runtime = period.runtime
    ctx = ApiContext(
        settings,
        reconciler=Reconciler.with_hub(settings, runtime.store, runtime.configs, runtime.hub),
    )
    app = create_app(ctx, [config_routes.add_routes, reconcile_routes.add_routes])
    server = ApiServer(app, "127.0.0.1", 0)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


async def test_the_api_route_answers_the_same_report(api: str) -> None:
    url = api + ROUTE.format(org=ORG)
    async with aiohttp.ClientSession() as session:
        async with session.get(url, params={"from": "2026-11-01", "to": "2026-11-30"}) as resp:
            assert resp.status == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        params = {"from": "2026-11-01", "to": "2026-11-30"}
        async with session.get(url, params=params, headers=auth) as resp:
            assert resp.status == 200
            report = await resp.json()
        async with session.get(url, params={"from": "2026-11-01"}, headers=auth) as resp:
            assert resp.status == 422
            assert (await resp.json())["errors"][0]["field"] == "to"
        other = api + ROUTE.format(org="org-nobody")
        async with session.get(other, params=params, headers=auth) as resp:
            assert resp.status == 404
    classes = {r["moment_number"]: r["class"] for r in report["rows"]}
    assert classes["1866"] == "missing_in_bc" and classes["1899"] == "unknown_in_bc"
    assert classes["1868"] == "duplicated_in_bc" and classes["1864"] == "matched"
    assert report["summary"]["different"]["count"] == 1


# --- a period of 5,000 invoices --------------------------------------------------------------

BENCH_INVOICES = int(os.environ.get("BC_SYNC_RECONCILE_BENCH_INVOICES", "5000"))


async def _seed_ledger(exports: Exports, numbers: list[str]) -> None:
    """Ledger rows as the worker leaves them after exporting these invoices (one statement)."""
    now = datetime.now(UTC)
    rows = [
        {
            "org_id": ORG,
            "moment_id": f"i-{n}",
            "object_type": "invoice",
            "moment_number": n,
            "state": "synced",
            "attempts": 1,
            "created_at": now,
            "updated_at": now,
            "document_date": f"2026-11-{1 + i % 28:02d}",
            "customer_number": "10000",
            "currency_code": "SEK",
            "total_excluding_tax": "100.00",
            "total_including_tax": "125.00",
        }
        for i, n in enumerate(numbers)
    ]
    async with exports.runtime.store.write() as conn:
        await conn.execute(sync_ledger.insert(), rows)


@pytest.mark.slow
async def test_a_period_of_5000_invoices_finishes_in_minutes(exports: Exports) -> None:
    """5,000 posted invoices (and their ledger rows): every one read in pages of 1,000, the few
    that differ found. Prints the time and the BC requests (README, Reconciliation)."""
    n = BENCH_INVOICES
    numbers = [str(500000 + i) for i in range(n)]
    missing = set(numbers[:3])  # in the ledger, never posted
    unknown = [str(900000 + i) for i in range(2)]  # posted by hand, Moment-looking
    emulator = exports.emulator
    gate = asyncio.Semaphore(8)

    async def post(number: str, i: int) -> None:
        async with gate:
            await emulator.control.add_sales_invoice(
                {
                    "customerNumber": "10000",
                    "externalDocumentNumber": number,
                    "invoiceDate": f"2026-11-{1 + i % 28:02d}",
                    "postingDate": f"2026-11-{1 + i % 28:02d}",
                    "salesInvoiceLines": [
                        {
                            "lineType": "Account",
                            "lineObjectNumber": "3010",
                            "quantity": 1,
                            "unitPrice": 100,
                        }
                    ],
                },
                at=emulator.company_ref,
            )

    started = time.monotonic()
    await asyncio.gather(
        *(post(x, i) for i, x in enumerate(numbers) if x not in missing),
        *(post(x, 0) for x in unknown),
    )
    await _seed_ledger(exports, numbers)
    seeded_s = time.monotonic() - started

    await emulator.control.clear_requests()
    runtime = exports.runtime
    reconciler = Reconciler.with_hub(exports.settings, runtime.store, runtime.configs, runtime.hub)
    started = time.monotonic()
    report = await reconciler.run(ORG, (date(2026, 11, 1), date(2026, 11, 30)))
    took_s = time.monotonic() - started
    seen = [r for r in await emulator.control.requests() if "/companies(" in str(r["path"])]

    summary = report.summary()
    assert summary["matched"]["count"] == n - len(missing)
    assert summary["missing_in_bc"]["count"] == len(missing)
    assert summary["unknown_in_bc"]["count"] == len(unknown)
    assert summary["matched"]["currencies"]["SEK"]["total_excluding_tax"] == (
        f"{(n - len(missing)) * 100}.00"
    )
    pages = -(-(n - len(missing) + len(unknown)) // 1000)
    # Invoice pages, one credit memo page, one lookup by number, the LCY code.
    assert report.bc_requests == len(seen) == pages + 3
    assert {r["method"] for r in seen} == {"GET"}
    assert took_s < 180
    print(
        f"\nreconcile bench: {n} invoices, seeded in {seeded_s:.1f} s; reconciled in "
        f"{took_s:.2f} s with {report.bc_requests} BC requests ({report.bc_documents_read} "
        "documents read)"
    )


async def test_bc_sync_reconcile_as_an_operator_runs_it(period: Exports, tmp_path: Path) -> None:
    """The real ``bc-sync`` entry point in its own process: the summary first, the rows, exit
    code 1 (rows need a look); nothing on stderr but the log (stderr is not a terminal: no
    progress line)."""
    done = await bc_sync(period, tmp_path, "reconcile", ORG, *PERIOD)
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert "reading Business Central" not in done.stderr
    assert out.index("Reconciliation of ") < out.index("MOMENT NO")
    assert "duplicated_in_bc  1" in out and "unknown_in_bc     1" in out
    json_run = await bc_sync(period, tmp_path, "reconcile", ORG, *PERIOD, "--json")
    report = printed_json(json_run.stdout)
    assert {r["class"] for r in report["rows"]} == {
        "matched",
        "missing_in_bc",
        "duplicated_in_bc",
        "different",
        "unknown_in_bc",
    }
