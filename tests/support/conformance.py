"""BC documents made over the emulator's API v2.0 for the conformance tests: an account line
and a draft sales invoice."""

from __future__ import annotations

from typing import Any

from tests.emulator.fixtures import BCClient


def line(
    account: str = "3010", qty: float = 1, price: float = 100, tax: str = "25", **extra: Any
) -> dict[str, Any]:
    return {
        "lineType": "Account",
        "lineObjectNumber": account,
        "quantity": qty,
        "unitPrice": price,
        "taxCode": tax,
        **extra,
    }


async def new_invoice(
    bc: BCClient, *lines: dict[str, Any], customer: str = "10000", ext: str = "M-1"
) -> dict[str, Any]:
    resp = await bc.post(
        "salesInvoices",
        {
            "customerNumber": customer,
            "externalDocumentNumber": ext,
            "salesInvoiceLines": list(lines or [line()]),
        },
    )
    assert resp.status == 201, resp.body
    return resp.body  # type: ignore[no-any-return]
