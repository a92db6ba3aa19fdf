"""``moment.invoice.created`` → a posted BC sales invoice with line dimensions, exactly once.

The flow (find, create with lines, line dimensions in one ``$batch``, post, read back; repairs;
waiting for approval) is the one all sales documents share: :mod:`worker.sync.documents`. This
module names the invoice's entity sets, its payload and its ``bc.invoice.exported``.
"""

from __future__ import annotations

from typing import Any

from worker.bc import BcConnection
from worker.bc.client import SALES_INVOICES
from worker.bc.models import SalesInvoice, SalesInvoiceLine
from worker.events.envelope import Event
from worker.events.handlers import Outcome
from worker.events.models import ExportedData, Invoice
from worker.sync.context import SyncContext
from worker.sync.documents import DocumentKind, export, exported_facts
from worker.sync.transforms import invoice_payload

AWAITING_APPROVAL = "BC-INVOICE-AWAITING-APPROVAL"


class InvoiceKind(DocumentKind[SalesInvoice, None]):
    """Sales invoices (bc-contract "Invoices")."""

    object_type = "invoice"
    noun = "invoice"
    bc_noun = "invoice"
    bc_plural = "sales invoices"
    lines_set = SALES_INVOICES.lines_set
    waiting_code = AWAITING_APPROVAL

    def payload(self, doc: Invoice, *, customer_number: str, local_currency: str) -> dict[str, Any]:
        return invoice_payload(doc, customer_number=customer_number, local_currency=local_currency)

    async def find(
        self, bc: BcConnection, doc: Invoice, payload: dict[str, Any]
    ) -> tuple[SalesInvoice | None, None]:
        found = await bc.find_sales_invoice(
            payload["externalDocumentNumber"], payload["customerNumber"]
        )
        return found, None

    async def create(self, bc: BcConnection, payload: dict[str, Any]) -> SalesInvoice:
        return await bc.create_sales_invoice(payload)

    async def get(self, bc: BcConnection, document_id: str) -> SalesInvoice:
        return await bc.get_sales_invoice(document_id)

    async def post(self, bc: BcConnection, document_id: str) -> None:
        await bc.post_sales_invoice(document_id)

    async def lines(self, bc: BcConnection, document_id: str) -> list[SalesInvoiceLine]:
        return await bc.sales_invoice_lines(document_id)

    def exported(
        self, doc: Invoice, posted: SalesInvoice, found: None, local_currency: str
    ) -> ExportedData:
        return ExportedData(object_type="invoice", **exported_facts(doc, posted, local_currency))


INVOICE = InvoiceKind()


async def handle(ctx: SyncContext, event: Event[Any]) -> Outcome:
    """A Moment invoice (not a credit note: see :mod:`worker.sync.credit_notes`)."""
    return await export(ctx, event, INVOICE)
