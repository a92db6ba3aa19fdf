"""What ``make demo`` saw, and the readable summary it prints at the end."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from worker.errors import CATALOGUE
from worker.ops.dlq import DeadLetter

DIMENSIONS = ("PROJEKT", "AVDELNING")


@dataclass
class Observed:
    """Our outgoing events as Moment receives them (a queue bound to ``bc.#``)."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            try:
                envelope = json.loads(message.body)
            except ValueError:
                return
            self.events.append((message.routing_key or "", envelope.get("data") or {}))

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [data for t, data in self.events if t == type_]

    def latest(self, types: tuple[str, ...]) -> tuple[str, dict[str, Any]] | None:
        """The last event received of one of these types: (type, data)."""
        found = [(t, d) for t, d in self.events if t in types]
        return found[-1] if found else None

    def counts(self) -> Counter[str]:
        return Counter(t for t, _ in self.events)


def expected_expenses(state: dict[str, Any], from_date: str, dimension: str) -> int:
    """Posted purchase-invoice lines on the project dimension since ``from_date``."""
    return sum(
        1
        for inv in state.get("purchaseInvoices", [])
        if inv.get("status") != "Draft" and str(inv.get("postingDate", "")) >= from_date
        for line in inv.get("purchaseInvoiceLines", [])
        if any(d.get("code") == dimension for d in line.get("dimensionSetLines", []))
    )


def posted_invoices(state: dict[str, Any]) -> list[dict[str, Any]]:
    """In Moment's order (BC numbers them in the order the worker happened to post them)."""
    posted = [i for i in state.get("salesInvoices", []) if i.get("status") != "Draft"]
    return sorted(posted, key=lambda i: str(i.get("externalDocumentNumber")))


def posted_credit_memos(state: dict[str, Any]) -> list[dict[str, Any]]:
    posted = [m for m in state.get("salesCreditMemos", []) if m.get("status") != "Draft"]
    return sorted(posted, key=lambda m: str(m.get("externalDocumentNumber")))


def read_mail(outbox: Path) -> EmailMessage | None:
    files = sorted(outbox.glob("*.eml"))
    if not files:
        return None
    message = BytesParser(policy=policy.default).parsebytes(files[0].read_bytes())
    assert isinstance(message, EmailMessage)
    return message


def _h(title: str) -> None:
    print(f"\n== {title} ==")


def _money(value: Any) -> str:
    try:
        return f"{float(value):,.2f}".replace(",", " ")
    except (TypeError, ValueError):
        return str(value)


def print_summary(
    before: dict[str, Any],
    after: dict[str, Any],
    observed: Observed,
    dead: list[DeadLetter],
    mail: EmailMessage | None,
) -> None:
    old_customers = {c["number"] for c in before.get("customers", [])}
    _h("Business Central: customers created")
    for c in sorted(after.get("customers", []), key=lambda c: str(c["number"])):
        if c["number"] in old_customers:
            continue
        print(
            f"  {c['number']:<6} {c['displayName']:<26} {c['country']}  "
            f"{c['currencyCode'] or '':<4}"
            f"posting groups {c['genBusPostingGroup']} / {c['customerPostingGroup']}"
        )

    old_values = {
        (d["code"], v["code"]) for d in before.get("dimensions", []) for v in d.get("values", [])
    }
    _h("Business Central: dimension values")
    for d in after.get("dimensions", []):
        if d["code"] not in DIMENSIONS:
            continue
        for v in sorted(d.get("values", []), key=lambda v: str(v["code"])):
            new = "  (new)" if (d["code"], v["code"]) not in old_values else ""
            print(f"  {d['code']:<10} {v['code']:<6} {v['displayName']}{new}")

    _h("Business Central: posted sales invoices")
    for inv in posted_invoices(after):
        print(
            f"  {inv['number']} (Moment {inv['externalDocumentNumber']}) customer "
            f"{inv['customerNumber']} {inv['customerName']}: {inv['status']}, "
            f"{_money(inv['totalAmountIncludingTax'])} {inv['currencyCode']} incl. VAT"
            + (f", credited {_money(inv['creditedAmount'])}" if inv.get("creditedAmount") else "")
        )
        for line in inv.get("salesInvoiceLines", []):
            dims = ", ".join(
                f"{d['code']}={d['valueCode']}" for d in line.get("dimensionSetLines", [])
            )
            print(
                f"    {line['lineObjectNumber']}  {line['description']:<24} "
                f"{line['quantity']:>4g} x {_money(line['unitPrice']):>9}  {dims}"
            )

    _h("Business Central: posted sales credit memos")
    for memo in posted_credit_memos(after):
        print(
            f"  {memo['number']} (Moment {memo['externalDocumentNumber']}) customer "
            f"{memo['customerNumber']} {memo['customerName']}: {memo['status']}, "
            f"{_money(memo['totalAmountIncludingTax'])} {memo['currencyCode']} incl. VAT, "
            f"applied to invoice {memo['invoiceNumber'] or '(none)'}"
        )
        for line in memo.get("salesCreditMemoLines", []):
            dims = ", ".join(
                f"{d['code']}={d['valueCode']}" for d in line.get("dimensionSetLines", [])
            )
            print(
                f"    {line['lineObjectNumber']}  {line['description']:<24} "
                f"{line['quantity']:>4g} x {_money(line['unitPrice']):>9}  {dims}"
            )

    expenses = observed.of("bc.expense.imported")
    _h(f"Moment receives: bc.expense.imported ({len(expenses)})")
    for data in expenses:
        e = data.get("expense", {})
        print(
            f"  {e.get('document_number')} project {e.get('project_number')}: "
            f"{e.get('description')}, {_money(e.get('amount'))} {e.get('currency_code')}, "
            f"activity {e.get('activity')}, billable {str(e.get('billable')).lower()}"
        )
    counts = observed.counts()
    exported = ", ".join(
        f"{t} {counts[t]}"
        for t in (
            "bc.customer.exported",
            "bc.project.exported",
            "bc.invoice.exported",
            "bc.credit_note.exported",
        )
    )
    print(f"  and {exported}")

    _h(f"Dead letters ({len(dead)})")
    for letter in dead:
        info = CATALOGUE.get(letter.code)
        print(f"  {letter.subject or letter.type}: {letter.code} ({letter.error_class})")
        print(f"    {letter.message}")
        if info is not None:
            print(f"    Fix: {info.fix}")

    _h("Notification mail (outbox)")
    if mail is None:
        print("  (none written)")
    else:
        print(f"  To: {mail['To']}")
        print(f"  Subject: {mail['Subject']}")
        body = mail.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        for text_line in str(text).rstrip().splitlines():
            print(f"  | {text_line}".rstrip())
    for data in observed.of("bc.integration.failed"):
        codes = ", ".join(f"{g['code']} x{g['count']}" for g in data.get("failures", []))
        print(
            f"  and bc.integration.failed for Moment user {data.get('recipient_user_id')}: {codes}"
        )
