"""BC documents made over the emulator's API v2.0 for the conformance tests: an account line
and draft sales invoices and credit memos."""

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


async def new_document(
    bc: BCClient,
    entity: str,
    *lines: dict[str, Any],
    customer: str = "10000",
    ext: str = "M-1",
    **extra: Any,
) -> dict[str, Any]:
    """A draft sales document (``salesInvoices``, ``salesCreditMemos``) with ``lines`` (one
    account line by default), created over the API; the emulator's answer."""
    path = entity if entity == "salesInvoices" else f"{entity}?$expand={entity[:-1]}Lines"
    resp = await bc.post(
        path,
        {
            "customerNumber": customer,
            "externalDocumentNumber": ext,
            f"{entity[:-1]}Lines": list(lines or [line()]),
            **extra,
        },
    )
    assert resp.status == 201, resp.body
    return resp.body  # type: ignore[no-any-return]


async def new_invoice(
    bc: BCClient, *lines: dict[str, Any], customer: str = "10000", ext: str = "M-1"
) -> dict[str, Any]:
    return await new_document(bc, "salesInvoices", *lines, customer=customer, ext=ext)


async def new_credit_memo(
    bc: BCClient, *lines: dict[str, Any], customer: str = "10000", ext: str = "CN-1", **extra: Any
) -> dict[str, Any]:
    return await new_document(bc, "salesCreditMemos", *lines, customer=customer, ext=ext, **extra)
