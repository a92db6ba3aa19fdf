"""A Moment credit note (``moment.invoice.created`` with ``kind`` ``credit_note``, or a negative
total) → a posted BC sales credit memo with line dimensions, applied to the posted invoice it
credits, exactly once.

The flow is the one all sales documents share (:mod:`worker.sync.documents`): find, create with
lines, line dimensions in one ``$batch``, post, read back. What is the credit note's own:

- Applying: the credit memo header's ``invoiceId`` applies it to the credited invoice
  (APIV2SalesCreditMemos.Page.al). The credit memo and the credited invoice are found in one
  ``$batch`` of two GETs, so the export stays at 5 requests.
- The credited invoice not posted in BC yet (not there, a draft, in review, or an ``Open`` draft
  BC refuses as ``invoiceId``): a transient ``BC-CREDITED-INVOICE-MISSING``, so the credit note
  waits on the retry ladder; when the ladder is used up it is dead-lettered with the same plain
  words. It is never posted unapplied: a stray credit in the customer's account is worse than a
  visible failure (and the dead letter can be replayed, or healed, once the invoice is posted).
- No ``credited_invoice``: posted unapplied, as Moment asked.
- The credited invoice of another customer: a permanent ``BC-CREDITED-INVOICE-OTHER-CUSTOMER``
  naming both customers and both documents. Closed in BC (paid or fully credited, canceled):
  a permanent ``BC-CREDITED-INVOICE-CLOSED`` (BC cannot apply to a closed entry).
- Amounts: the credit memo's total is minus the credit note's (see
  :func:`worker.sync.transforms.credit_line_payload`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.bc import BcConnection, BcError
from worker.bc.client import SALES_CREDIT_MEMOS
from worker.bc.models import SalesCreditMemo, SalesInvoice, SalesInvoiceLine
from worker.config.model import IntegrationConfig
from worker.errors import Permanent, Transient
from worker.events.envelope import Event
from worker.events.handlers import Outcome
from worker.events.models import AppliedInvoice, CreditNoteExportedData, Invoice
from worker.sync import bc_answers
from worker.sync.context import SyncContext
from worker.sync.documents import DocumentKind, export, exported_facts
from worker.sync.transforms import (
    EXTERNAL_DOCUMENT_MAX,
    bc_code,
    credit_memo_payload,
)

AWAITING_APPROVAL = "BC-CREDIT-NOTE-AWAITING-APPROVAL"
CREDITED_MISSING = "BC-CREDITED-INVOICE-MISSING"
CREDITED_OTHER_CUSTOMER = "BC-CREDITED-INVOICE-OTHER-CUSTOMER"
CREDITED_CLOSED = "BC-CREDITED-INVOICE-CLOSED"


@dataclass(frozen=True)
class Credited:
    """What the find learned of the credited invoice: BC's invoices with its number (any
    customer, furthest towards posted first), or nothing when the note credits none."""

    invoices: tuple[SalesInvoice, ...] = ()


class CreditNoteKind(DocumentKind[SalesCreditMemo, Credited]):
    """Sales credit memos (bc-contract "Credit notes")."""

    object_type = "credit_note"
    noun = "credit note"
    bc_noun = "credit memo"
    bc_plural = "sales credit memos"
    lines_set = SALES_CREDIT_MEMOS.lines_set
    waiting_code = AWAITING_APPROVAL

    def payload(self, doc: Invoice, *, customer_number: str, local_currency: str) -> dict[str, Any]:
        return credit_memo_payload(
            doc, customer_number=customer_number, local_currency=local_currency
        )

    async def find(
        self, bc: BcConnection, doc: Invoice, payload: dict[str, Any]
    ) -> tuple[SalesCreditMemo | None, Credited]:
        ext, customer = payload["externalDocumentNumber"], payload["customerNumber"]
        if doc.credited_invoice is None:
            return await bc.find_sales_credit_memo(ext, customer), Credited()
        # Upper-cased like every external document number we write (bc-api Corrections 8).
        invoice_ext = bc_code(
            doc.credited_invoice.number,
            EXTERNAL_DOCUMENT_MAX,
            "Credited invoice number",
            self.subject(doc),
        )
        memo, invoices = await bc.find_sales_credit_memo_and_invoices(ext, customer, invoice_ext)
        return memo, Credited(tuple(invoices))

    async def prepare(
        self,
        bc: BcConnection,
        config: IntegrationConfig,
        doc: Invoice,
        payload: dict[str, Any],
        found: Credited,
    ) -> dict[str, Any]:
        """The create body applied to the credited invoice, or a failure saying why not."""
        if doc.credited_invoice is None:
            return payload
        invoice = self._credited(config, doc, payload["customerNumber"], found)
        return {**payload, "invoiceId": invoice.id}

    def _credited(
        self, config: IntegrationConfig, doc: Invoice, customer: str, found: Credited
    ) -> SalesInvoice:
        """The customer's credited invoice in BC, posted (its status says so, or BC decides
        when it takes the ``invoiceId``)."""
        ours = [i for i in found.invoices if i.customer_number == customer]
        if not ours and found.invoices:
            raise self._other_customer(config, doc, customer, found.invoices[0])
        if not ours:
            raise self._missing(config, doc, "is not in Business Central")
        invoice = ours[0]
        if invoice.is_draft or invoice.in_review:
            waits = " waiting for approval" if invoice.in_review else ""
            raise self._missing(
                config, doc, f"is in Business Central as draft {invoice.number}{waits}, not posted"
            )
        if invoice.status in ("Paid", "Canceled"):
            state = "paid or fully credited" if invoice.status == "Paid" else "canceled"
            raise self._closed(config, doc, invoice.number, state, draft=None)
        return invoice  # Open (posted, or a released draft) or Corrective: BC decides

    def check_resumed(
        self, config: IntegrationConfig, doc: Invoice, draft: SalesCreditMemo, found: Credited
    ) -> None:
        """A credit memo of this credit note found in BC must be applied as the note says (ours
        always are: the create carries the invoiceId)."""
        credited = doc.credited_invoice
        if credited is None:
            return
        ours = [i for i in found.invoices if i.customer_number == draft.customer_number]
        if draft.applied and (not ours or ours[0].id == draft.invoice_id):
            return
        applied = f"applied to invoice {draft.invoice_number}" if draft.applied else "unapplied"
        raise Permanent(
            "BC-VALIDATION",
            f"Credit note {doc.number} is in Business Central as credit memo {draft.number} "
            f"({draft.status}, company '{config.company_name}'), {applied}, but the credit note "
            f"credits invoice {credited.number}. Correct the application in Business Central "
            "(Applies-to Doc. No. on a draft; delete a wrong draft), then ask support to replay "
            "the credit note.",
            subject=self.subject(doc),
        )

    def create_refused(self, config: IntegrationConfig, doc: Invoice, exc: BcError) -> None:
        if doc.credited_invoice is not None and bc_answers.invoice_not_posted(exc):
            # An Open invoice that BC does not take as posted: a released draft.
            raise self._missing(
                config, doc, "is in Business Central as a draft released for posting, not posted"
            )

    def post_refused(
        self, config: IntegrationConfig, doc: Invoice, draft: SalesCreditMemo, exc: BcError
    ) -> None:
        if bc_answers.no_open_invoice_entry(exc):
            # The invoice closed (paid, credited or canceled) between our look and the post.
            raise self._closed(
                config,
                doc,
                draft.invoice_number or "?",
                "closed (paid or fully credited)",
                draft=draft.number,
            )

    async def create(self, bc: BcConnection, payload: dict[str, Any]) -> SalesCreditMemo:
        return await bc.create_sales_credit_memo(payload)

    async def get(self, bc: BcConnection, document_id: str) -> SalesCreditMemo:
        return await bc.get_sales_credit_memo(document_id)

    async def post(self, bc: BcConnection, document_id: str) -> None:
        await bc.post_sales_credit_memo(document_id)

    async def lines(self, bc: BcConnection, document_id: str) -> list[SalesInvoiceLine]:
        return await bc.sales_credit_memo_lines(document_id)

    def exported(
        self, doc: Invoice, posted: SalesCreditMemo, found: Credited, local_currency: str
    ) -> CreditNoteExportedData:
        applied_to = None
        if posted.applied:
            credited = doc.credited_invoice
            applied_to = AppliedInvoice(
                bc_id=posted.invoice_id,
                bc_number=posted.invoice_number,
                moment_id=credited.id if credited else None,
                moment_number=credited.number if credited else None,
            )
        return CreditNoteExportedData(
            **exported_facts(doc, posted, local_currency), applied_to=applied_to
        )

    # -- failures in plain words --------------------------------------------------------------

    def _missing(self, config: IntegrationConfig, doc: Invoice, state: str) -> Transient:
        """Transient: the same words serve each retry and the dead letter after the last."""
        invoice = doc.credited_invoice.number if doc.credited_invoice else "?"
        return Transient(
            CREDITED_MISSING,
            f"Credit note {doc.number} credits invoice {invoice}, which {state} yet (company "
            f"'{config.company_name}'). A credit note is only posted applied to the invoice it "
            f"credits, so it waits and is posted once invoice {invoice} is posted in Business "
            f"Central. If this lasts, export invoice {invoice} from Moment or post it in "
            "Business Central, then ask support to replay the credit note.",
            subject=self.subject(doc),
        )

    def _other_customer(
        self, config: IntegrationConfig, doc: Invoice, customer: str, invoice: SalesInvoice
    ) -> Permanent:
        credited = doc.credited_invoice.number if doc.credited_invoice else "?"
        return Permanent(
            CREDITED_OTHER_CUSTOMER,
            f"Credit note {doc.number} is for customer {customer}, but the invoice it credits, "
            f"{credited}, is invoice {invoice.number} of customer {invoice.customer_number} in "
            f"Business Central (company '{config.company_name}'). A credit note can only credit "
            "an invoice of its own customer: correct the customer or the credited invoice of "
            "the credit note in Moment, then ask support to replay it.",
            subject=self.subject(doc),
        )

    def _closed(
        self,
        config: IntegrationConfig,
        doc: Invoice,
        bc_number: str,
        state: str,
        *,
        draft: str | None,
    ) -> Permanent:
        credited = doc.credited_invoice.number if doc.credited_invoice else "?"
        left = f" (its draft credit memo {draft} stays unposted)" if draft else ""
        return Permanent(
            CREDITED_CLOSED,
            f"Credit note {doc.number} credits invoice {credited} (invoice {bc_number} in "
            f"Business Central, company '{config.company_name}'), which is {state} there, so "
            "Business Central cannot apply the credit note to it. Decide in Business Central how "
            "the customer gets the amount back (for example a credit memo applied to a refund "
            f"or to another invoice); the credit note was not posted{left}.",
            subject=self.subject(doc),
        )


CREDIT_NOTE = CreditNoteKind()


async def handle(ctx: SyncContext, event: Event[Any]) -> Outcome:
    """A Moment credit note."""
    return await export(ctx, event, CREDIT_NOTE)
