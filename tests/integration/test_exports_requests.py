"""BC requests per exported object, from the emulator's request log, once the company facts are
cached: customer ≤ 3, project ≤ 2, invoice ≤ 5 whatever its line count (one ``$batch`` for all
line dimensions, at most 100 operations in it)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import factories as f
from tests.support.exports import Exports


async def _measure(exports: Exports, type_: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    """The top-level BC requests one event caused (it must succeed)."""
    since = await exports.last_seq()
    assert await exports.done(await exports.send(type_, data)) == ["succeeded"]
    return await exports.bc_requests(since)


def _calls(requests: list[dict[str, Any]]) -> list[str]:
    return [f"{r['method']} {r['path'].rsplit('/', 1)[-1]}" for r in requests]


@pytest.fixture
async def warm(exports: Exports) -> Exports:
    """Token, company id and company facts fetched and cached by a first event."""
    await _measure(exports, "moment.customer.created", {"customer": f.customer("59999")})
    return exports


async def test_customer_and_project_requests(warm: Exports) -> None:
    created = await _measure(warm, "moment.customer.created", {"customer": f.customer("59001")})
    assert len(created) <= 3, _calls(created)
    updated = await _measure(
        warm, "moment.customer.updated", {"customer": f.customer("59001", name="Renamed AB")}
    )
    assert len(updated) <= 3, _calls(updated)
    assert (await warm.customer("59001") or {}).get("displayName") == "Renamed AB"

    project = await _measure(warm, "moment.project.created", {"project": f.project("4700")})
    assert len(project) <= 2, _calls(project)
    renamed = await _measure(
        warm, "moment.project.updated", {"project": f.project("4700", name="Renamed")}
    )
    assert len(renamed) <= 2, _calls(renamed)
    assert (await warm.dimension_value("PROJEKT", "4700") or {}).get("displayName") == "Renamed"


@pytest.mark.parametrize("lines", [1, 10, 50])
async def test_invoice_requests_do_not_grow_with_lines(warm: Exports, lines: int) -> None:
    cust = f.customer("10000")
    projects = [
        f.project("4005", department="100", cust=cust),
        f.project("4006", department="200", cust=cust),
    ]
    body = [
        {
            "description": f"Line {i}",
            "quantity": 1 + i % 3,
            "unit_price": 100.0 + i,
            "account_number": "3010",
            "vat_code": "25",
            "project": projects[i % 2],
        }
        for i in range(lines)
    ]
    number = f"95{lines:02d}"
    since = await warm.last_seq()
    requests = await _measure(
        warm, "moment.invoice.created", {"invoice": f.invoice(number, cust=cust, lines=body)}
    )
    assert len(requests) <= 5, _calls(requests)
    batches = [r for r in requests if r["path"].endswith("/$batch")]
    assert len(batches) == 1
    inner = [
        r
        for r in await warm.emulator.control.requests(since=since)
        if r["batch_parent"] == batches[0]["seq"]
    ]
    assert len(inner) == 2 * lines <= 100
    posted = await warm.posted(number)
    assert len(posted["salesInvoiceLines"]) == lines
    assert all(len(x["dimensionSetLines"]) == 2 for x in posted["salesInvoiceLines"])
