"""``moment.invoice.created`` → a posted BC sales invoice with line dimensions, exactly once.

The happy path makes 5 calls whatever the line count: find by external document number,
create the draft with its lines, set every line's dimensions in one ``$batch``, post, read back.
A missing customer, a customer without posting groups (BC refuses both at the draft create) or a
missing project dimension value is detected from BC's answer and repaired from the event's
snapshots (when that export is on), then the step is repeated.

An invoice BC holds for approval is no failure: the outcome is ``waiting`` (acked, no
``bc.invoice.exported``, recorded for the status route and the digest), see :func:`_waiting`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from worker.bc import BcConnection, BcError, LineDimension
from worker.bc.errors import DIALOG, Label, facts, is_dialog, message_text, names_field
from worker.bc.models import SalesInvoice
from worker.config.model import IntegrationConfig
from worker.errors import Permanent
from worker.events.envelope import Event
from worker.events.handlers import Outcome
from worker.events.models import ExportedData, Invoice
from worker.sync import customers, projects
from worker.sync.context import CompanyFacts, SyncContext, bc_failure
from worker.sync.transforms import (
    NUMBER_MAX,
    LineDims,
    bc_code,
    currency_read,
    invoice_payload,
    line_dimensions,
    projects_of,
)

log = structlog.get_logger(__name__)

AWAITING_APPROVAL = "BC-INVOICE-AWAITING-APPROVAL"


@dataclass(frozen=True)
class _Waiting:
    """BC holds the invoice for approval: ``requested`` when it was sent for approval (status
    ``In Review``), else an approval workflow refused the post of a draft nobody sent yet."""

    draft: SalesInvoice
    requested: bool


async def handle(ctx: SyncContext, event: Event[Any]) -> Outcome:
    config = await ctx.enabled(event.org, "export_invoices")
    if isinstance(config, Outcome):
        return config
    invoice: Invoice = event.data.invoice
    subject = f"invoice {invoice.number}"
    # Everything that can be wrong with the event itself fails here, before any write.
    customer_number = bc_code(invoice.customer.number, NUMBER_MAX, "Customer number", subject)
    dims = line_dimensions(
        invoice,
        project_dimension=config.project_dimension,
        department_dimension=config.department_dimension,
        department_source=config.department_source,
        tag_group=config.department_tag_group,
    )
    bc = ctx.connection(config)
    try:
        facts = await ctx.facts(bc)
        payload = invoice_payload(
            invoice, customer_number=customer_number, local_currency=facts.local_currency
        )
        # Keyed like BC keys the document (upper case): "ab-12" and "AB-12" are one BC invoice.
        async with ctx.claim(f"invoice/{event.org}/{payload['externalDocumentNumber']}"):
            result = await _export(ctx, bc, config, facts, invoice, payload, dims)
    except BcError as exc:
        raise bc_failure(exc, subject, config) from None
    except Permanent as exc:
        if exc.code == "BC-DIMENSION-MISSING":
            ctx.forget_facts(bc)  # the dimension may be added in BC before the replay
        raise
    if isinstance(result, _Waiting):
        return _waiting(config, invoice, result)
    posted = result
    await ctx.succeeded(
        event,
        "invoice",
        ExportedData(
            object_type="invoice",
            moment_id=invoice.id,
            moment_number=invoice.number,
            bc_id=posted.id,
            bc_number=posted.number,
            status=posted.status,
            total_excluding_tax=float(posted.total_amount_excluding_tax),
            total_including_tax=float(posted.total_amount_including_tax),
            currency_code=currency_read(posted.currency_code, facts.local_currency),
        ),
        ref=invoice.number,
    )
    return Outcome.ok(invoice=invoice.number, bc_number=posted.number, status=posted.status)


def _waiting(config: IntegrationConfig, invoice: Invoice, waiting: _Waiting) -> Outcome:
    """The ``waiting`` outcome, in words the organization's admin can act on."""
    draft = waiting.draft
    where = f"company '{config.company_name}'"
    if waiting.requested:
        message = (
            f"Invoice {invoice.number} is waiting for approval in Business Central (draft "
            f"{draft.number} in {where}); it is not posted yet. Once it is approved, it is "
            "posted when the invoice is exported again."
        )
    else:
        message = (
            f"Invoice {invoice.number} must be approved in Business Central before it can be "
            f"posted: {where} has an approval workflow for sales invoices. Send draft "
            f"{draft.number} for approval there; once it is approved, it is posted when the "
            "invoice is exported again."
        )
    return Outcome.waiting(
        AWAITING_APPROVAL,
        message,
        invoice=invoice.number,
        bc_id=draft.id,
        bc_number=draft.number,
        status=draft.status,
    )


async def _export(
    ctx: SyncContext,
    bc: BcConnection,
    config: IntegrationConfig,
    facts: CompanyFacts,
    invoice: Invoice,
    payload: dict[str, Any],
    dims: list[LineDims],
) -> SalesInvoice | _Waiting:
    """Find, create or resume, set the line dimensions, post: the posted invoice, or waiting.

    How a draft is told from a posted invoice (bc-api Corrections 4): the API shows no
    ``Posted`` flag, only ``status``. ``Paid``/``Canceled``/``Corrective`` are posted,
    ``Draft`` and ``In Review`` are not, but ``Open`` is both a posted invoice and a released
    (or pending-prepayment) draft. For those BC itself decides: ``Microsoft.NAV.post`` posts a
    released draft and refuses a posted invoice with "The action can be applied to a draft
    invoice only." (APIV2SalesInvoices.Page.al, GetDraftInvoice tests ``Rec.Posted``). So an
    ``Open`` invoice is posted unless BC says it already is; it is never reported as posted on
    its status alone. The cost: a redelivery of a posted invoice makes two calls (find and the
    refused post) instead of one.
    """
    found = await bc.find_sales_invoice(
        payload["externalDocumentNumber"], payload["customerNumber"]
    )
    if found is not None and found.surely_posted:
        log.info("invoice.already_posted", bc_number=found.number, status=found.status)
        return found
    if found is not None and found.in_review:
        # Pending approval: BC takes no change and no post until someone approves it.
        log.info("invoice.waiting_for_approval", draft=found.number)
        return _Waiting(found, requested=True)
    if found is None:
        draft = await _create_draft(ctx, bc, config, invoice, payload)
    else:
        log.info("invoice.resuming_draft", draft=found.number, status=found.status)
        draft = found
    lines = draft.lines or tuple(await bc.sales_invoice_lines(draft.id))
    wanted = _wanted_dimensions(invoice, draft, dims, lines)
    if wanted and not draft.is_draft:
        # Open: posted, or released. Neither takes new dimensions, and a released draft must
        # not be posted without them; a person has to look.
        raise Permanent(
            "BC-VALIDATION",
            f"Invoice {invoice.number} is in Business Central as {draft.number} with status "
            f"{draft.status} (posted, or released for posting), but its lines lack the "
            "dimensions of the Moment invoice. If it is a released draft, reopen it in "
            "Business Central, then ask support to replay the invoice; if it is posted, "
            "correct it in Business Central.",
            subject=f"invoice {invoice.number}",
        )
    await _set_dimensions(bc, config, facts, invoice, wanted)
    try:
        await bc.post_sales_invoice(draft.id)
    except BcError as exc:
        if exc.transient:
            raise
        if _approval_required(exc):
            log.info("invoice.approval_required", draft=draft.number)
            return _Waiting(draft, requested=False)
        if not _not_a_draft(exc):
            raise
        # Posted already: by us (an earlier delivery whose answer was lost, or a redelivery),
        # or by someone in BC after our draft was made.
        if found is not None and found.id == draft.id:
            log.info("invoice.already_posted", bc_number=found.number, status=found.status)
            return found
        current = await bc.get_sales_invoice(draft.id)
        log.info("invoice.posted_meanwhile", bc_number=current.number)
        return current
    return await bc.get_sales_invoice(draft.id)


async def _repair_customer(
    ctx: SyncContext,
    bc: BcConnection,
    config: IntegrationConfig,
    invoice: Invoice,
    cause: BcError,
) -> None:
    number = invoice.customer.number.upper()
    if not config.export_customers:
        raise Permanent(
            "BC-POSTING-GROUP-MISSING",
            f"Customer {number} has no posting groups in company '{config.company_name}', so "
            f"invoice {invoice.number} cannot be created (Business Central checks them when the "
            "draft is made). Set them on the customer card in Business Central or switch on "
            "customer export.",
            bc_status=cause.status,
            bc_code=cause.code,
            subject=f"invoice {invoice.number}",
        )
    log.info("invoice.setting_missing_posting_groups", customer=number)
    await customers.upsert(ctx, bc, config, invoice.customer)


async def _create_draft(
    ctx: SyncContext,
    bc: BcConnection,
    config: IntegrationConfig,
    invoice: Invoice,
    payload: dict[str, Any],
) -> SalesInvoice:
    try:
        return await _create(bc, config, invoice, payload)
    except BcError as exc:
        if exc.transient:
            raise
        if _posting_groups_missing(exc):
            # The customer exists without posting groups (its export stopped between creating
            # it and setting them). BC tests them when the draft is made, not at the post
            # (SalesHeader.Table.al, bc-api Corrections 5): set them from the snapshot, then
            # make the draft. No repair after the post: a draft copies the groups when it is
            # made, so the post cannot fail on the customer's groups any more.
            await _repair_customer(ctx, bc, config, invoice, exc)
            return await _create(bc, config, invoice, payload)
        missing = _customer_missing(exc)
        if await bc.find_customer(payload["customerNumber"]) is not None:
            if not missing:
                raise
            # A concurrent export (another invoice of this customer) created it meanwhile.
            return await _create(bc, config, invoice, payload)
    # BC refused the draft because the customer does not exist.
    if not config.export_customers:
        raise Permanent(
            "BC-CUSTOMER-MISSING",
            f"Customer {payload['customerNumber']} does not exist in company "
            f"'{config.company_name}'. Create it in Business Central or switch on customer export.",
            subject=f"invoice {invoice.number}",
        )
    await customers.upsert(ctx, bc, config, invoice.customer)
    return await _create(bc, config, invoice, payload)


async def _create(
    bc: BcConnection, config: IntegrationConfig, invoice: Invoice, payload: dict[str, Any]
) -> SalesInvoice:
    """Create the draft; a missing G/L account becomes BC-ACCOUNT-MISSING naming the accounts."""
    try:
        return await bc.create_sales_invoice(payload)
    except BcError as exc:
        if exc.transient or not is_dialog(exc, Label.ACCOUNT_DOES_NOT_EXIST):
            raise
        # BC's line validation does not name the account (page 30043): name the candidates.
        accounts = sorted({line["lineObjectNumber"] for line in payload["salesInvoiceLines"]})
        raise Permanent(
            "BC-ACCOUNT-MISSING",
            f"A G/L account on invoice {invoice.number} does not exist in company "
            f"'{config.company_name}' (accounts used: {', '.join(accounts)}). Add it in "
            "Business Central or correct the account in Moment, then replay.",
            bc_status=exc.status,
            bc_code=exc.code,
            subject=f"invoice {invoice.number}",
        ) from None


def _posting_groups_missing(exc: BcError) -> bool:
    """BC refused the draft because the customer has no posting groups: Customer.TestField on
    them when the draft is made (SalesHeader.Table.al), a field validation naming the field,
    "Gen. Bus. Posting Group must have a value in Customer: No.=50080. …"."""
    return names_field(exc, "Customer Posting Group", "Gen. Bus. Posting Group", table="Customer")


def _approval_required(exc: BcError) -> bool:
    """BC refused the post because an approval workflow requires approval first
    (ApprovalsMgmt.Codeunit.al SalesPrePostCheckErr: "Sales Invoice 1001 must be approved and
    released before you can perform this action.")."""
    return exc.code in (None, DIALOG) and Label.APPROVAL_REQUIRED.casefold() in (
        message_text(exc).casefold()
    )


def _not_a_draft(exc: BcError) -> bool:
    """BC refused the post because the invoice is posted (APIV2SalesInvoices.Page.al
    DraftInvoiceActionErr, raised only for a posted invoice)."""
    return is_dialog(exc, Label.DRAFT_INVOICE_ONLY)


def _customer_missing(exc: BcError) -> bool:
    """BC's answer says the invoice's customer does not exist ("The sell-to customer cannot be
    found.", or a record-not-found naming the Customer table)."""
    if is_dialog(exc, Label.SELL_TO_CUSTOMER_NOT_FOUND, Label.BILL_TO_CUSTOMER_NOT_FOUND):
        return True
    found = facts(exc)
    return found.missing_record and (found.related_table or "").casefold() == "customer"


def _wanted_dimensions(
    invoice: Invoice, draft: SalesInvoice, dims: list[LineDims], lines: tuple[Any, ...]
) -> list[LineDimension]:
    """The line dimensions BC does not have yet (a resumed draft may have them already, e.g.
    after a crash after the batch); lines other than the Moment invoice's are an error."""
    by_sequence = {line.sequence: line for line in lines}
    if len({d.sequence for d in dims} - set(by_sequence)) > 0:
        raise Permanent(
            "BC-VALIDATION",
            f"The invoice {draft.number} in Business Central ({draft.status}) has other lines "
            "than the Moment invoice.",
            subject=f"invoice {invoice.number}",
        )
    return [
        LineDimension(by_sequence[d.sequence].id, dimension, value)
        for d in dims
        for dimension, value in d.values
        if (dimension.upper(), value) not in by_sequence[d.sequence].dimensions
    ]


async def _set_dimensions(
    bc: BcConnection,
    config: IntegrationConfig,
    facts: CompanyFacts,
    invoice: Invoice,
    wanted: list[LineDimension],
) -> None:
    if not wanted:
        return
    try:
        await bc.set_line_dimensions(wanted)
        return
    except BcError as exc:
        if exc.transient:
            raise
        first = exc
    # A dimension value is missing: create the projects (when exported) or name what is missing.
    await _ensure_values(bc, config, facts, invoice, first)
    await bc.set_line_dimensions(wanted)


async def _ensure_values(
    bc: BcConnection,
    config: IntegrationConfig,
    facts: CompanyFacts,
    invoice: Invoice,
    cause: BcError,
) -> None:
    subject = f"invoice {invoice.number}"
    missing: list[str] = []
    if config.project_dimension:
        dim_id = projects.dimension_id(config, facts, config.project_dimension)
        for project in projects_of(invoice):
            if config.export_projects:
                await projects.upsert(bc, config, facts, project)
            elif await bc.find_dimension_value(dim_id, project.number.upper()) is None:
                missing.append(f"{config.project_dimension} '{project.number.upper()}'")
    if config.department_dimension:
        dim_id = projects.dimension_id(config, facts, config.department_dimension)
        codes = {
            value
            for d in line_dimensions(
                invoice,
                project_dimension=None,
                department_dimension=config.department_dimension,
                department_source=config.department_source,
                tag_group=config.department_tag_group,
            )
            for _, value in d.values
        }
        for code in sorted(codes):
            if await bc.find_dimension_value(dim_id, code) is None:
                missing.append(f"{config.department_dimension} '{code}'")
    if missing:
        raise Permanent(
            "BC-DIMENSION-VALUE-MISSING",
            f"Dimension value {', '.join(missing)} does not exist in company "
            f"'{config.company_name}'."
            + ("" if config.export_projects else " Switch on project export or create it in BC."),
            bc_status=cause.status,
            bc_code=cause.code,
            subject=subject,
        )
    if not config.export_projects:
        raise cause  # nothing missing that we know of: BC's own reason stands
