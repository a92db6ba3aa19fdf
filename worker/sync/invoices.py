"""``moment.invoice.created`` → a posted BC sales invoice with line dimensions, exactly once.

The happy path makes 5 calls whatever the line count: find by external document number,
create the draft with its lines, set every line's dimensions in one ``$batch``, post, read back.
A missing customer or project dimension value is detected from BC's answer and created from the
event's snapshots (when that export is on), then the step is repeated.
"""

from __future__ import annotations

import re
from typing import Any

import structlog

from worker.bc import BcConnection, BcError, LineDimension
from worker.bc.models import SalesInvoice
from worker.config.model import IntegrationConfig
from worker.errors import Permanent
from worker.events.envelope import Event
from worker.events.handlers import Outcome
from worker.events.models import ExportedData, Invoice
from worker.sync import projects, snapshots
from worker.sync.context import CompanyFacts, SyncContext, bc_failure
from worker.sync.transforms import (
    NUMBER_MAX,
    LineDims,
    bc_code,
    invoice_payload,
    line_dimensions,
    projects_of,
)

log = structlog.get_logger(__name__)


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
        async with ctx.claim(f"invoice/{event.org}/{invoice.number}"):
            posted = await _export(ctx, bc, config, facts, invoice, payload, dims)
    except BcError as exc:
        raise bc_failure(exc, subject, config) from None
    except Permanent as exc:
        if exc.code == "BC-DIMENSION-MISSING":
            ctx.forget_facts(bc)  # the dimension may be added in BC before the replay
        raise
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
            currency_code=posted.currency_code or facts.local_currency,
        ),
        ref=invoice.number,
    )
    return Outcome.ok(invoice=invoice.number, bc_number=posted.number, status=posted.status)


async def _export(
    ctx: SyncContext,
    bc: BcConnection,
    config: IntegrationConfig,
    facts: CompanyFacts,
    invoice: Invoice,
    payload: dict[str, Any],
    dims: list[LineDims],
) -> SalesInvoice:
    found = await bc.find_sales_invoice(
        payload["externalDocumentNumber"], payload["customerNumber"]
    )
    if found is not None and not found.is_draft:
        log.info("already posted", bc_number=found.number)
        return found
    for last in (False, True):
        if found is None:
            draft = await _create_draft(ctx, bc, config, invoice, payload)
        else:
            log.info("resuming draft", draft=found.number)
            draft = found
        lines = draft.lines or tuple(await bc.sales_invoice_lines(draft.id))
        await _set_dimensions(ctx, bc, config, facts, invoice, dims, lines)
        try:
            await bc.post_sales_invoice(draft.id)
        except BcError as exc:
            if exc.transient:
                raise
            # "Draft invoices only": someone posted it meanwhile (e.g. after our claim expired).
            current = await bc.get_sales_invoice(draft.id)
            if not current.is_draft:
                log.info("posted meanwhile", bc_number=current.number)
                return current
            if last or not _posting_groups_missing(exc):
                raise
            # The customer exists without posting groups (its export stopped between creating
            # it and setting them). Set them from the snapshot; the draft copied the empty ones
            # when it was made, so it is made again.
            await _repair_customer(ctx, bc, config, invoice, exc)
            await bc.delete_sales_invoice(draft.id)
            found = None
        else:
            return await bc.get_sales_invoice(draft.id)
    raise AssertionError("unreachable: the last round returns or raises")


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
            f"invoice {invoice.number} cannot be posted. Set them on the customer card in "
            "Business Central or switch on customer export.",
            bc_status=cause.status,
            bc_code=cause.code,
            subject=f"invoice {invoice.number}",
        )
    log.info("setting missing posting groups", customer=number)
    await snapshots.customer(ctx, bc, config, invoice.customer)


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
            missing=[{"kind": "customer", "value": payload["customerNumber"]}],
        )
    await snapshots.customer(ctx, bc, config, invoice.customer)
    return await _create(bc, config, invoice, payload)


async def _create(
    bc: BcConnection, config: IntegrationConfig, invoice: Invoice, payload: dict[str, Any]
) -> SalesInvoice:
    """Create the draft; a missing G/L account becomes BC-ACCOUNT-MISSING naming the accounts."""
    try:
        return await bc.create_sales_invoice(payload)
    except BcError as exc:
        if exc.transient or "account does not exist" not in (exc.message or "").lower():
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
            missing=[{"kind": "gl_account", "value": a} for a in accounts],
        ) from None


_GROUPS_MISSING = re.compile(
    r"(Customer Posting Group|Gen\. Bus\. Posting Group) must have a value", re.IGNORECASE
)


def _posting_groups_missing(exc: BcError) -> bool:
    """BC refused to post because the customer has no posting groups (a TestField text)."""
    return bool(_GROUPS_MISSING.search(exc.message or ""))


def _customer_missing(exc: BcError) -> bool:
    """BC's answer says the invoice's customer does not exist ("The sell-to customer cannot be
    found.", or a record-not-found naming the Customer table)."""
    text = (exc.message or "").lower()
    return "customer" in text and ("cannot be found" in text or "does not exist" in text)


async def _set_dimensions(
    ctx: SyncContext,
    bc: BcConnection,
    config: IntegrationConfig,
    facts: CompanyFacts,
    invoice: Invoice,
    dims: list[LineDims],
    lines: tuple[Any, ...],
) -> None:
    by_sequence = {line.sequence: line for line in lines}
    # A resumed draft may have some already (a crash after the batch): set only what differs.
    wanted = [
        LineDimension(by_sequence[d.sequence].id, dimension, value)
        for d in dims
        if d.sequence in by_sequence
        for dimension, value in d.values
        if (dimension.upper(), value) not in by_sequence[d.sequence].dimensions
    ]
    if len({d.sequence for d in dims} - set(by_sequence)) > 0:
        raise Permanent(
            "BC-VALIDATION",
            "The draft invoice in Business Central has other lines than the Moment invoice.",
            subject=f"invoice {invoice.number}",
        )
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
    await _ensure_values(ctx, bc, config, facts, invoice, first)
    await bc.set_line_dimensions(wanted)


async def _ensure_values(
    ctx: SyncContext,
    bc: BcConnection,
    config: IntegrationConfig,
    facts: CompanyFacts,
    invoice: Invoice,
    cause: BcError,
) -> None:
    subject = f"invoice {invoice.number}"
    missing: list[str] = []
    facts_missing: list[dict[str, str]] = []
    if config.project_dimension:
        dim_id = projects.dimension_id(config, facts, config.project_dimension)
        for project in projects_of(invoice):
            if config.export_projects:
                await snapshots.project(ctx, bc, config, facts, project)
            elif await bc.find_dimension_value(dim_id, project.number.upper()) is None:
                missing.append(f"{config.project_dimension} '{project.number.upper()}'")
                facts_missing.append(_value_fact(config.project_dimension, project.number.upper()))
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
                facts_missing.append(_value_fact(config.department_dimension, code))
    if missing:
        raise Permanent(
            "BC-DIMENSION-VALUE-MISSING",
            f"Dimension value {', '.join(missing)} does not exist in company "
            f"'{config.company_name}'."
            + ("" if config.export_projects else " Switch on project export or create it in BC."),
            bc_status=cause.status,
            bc_code=cause.code,
            subject=subject,
            missing=facts_missing,
        )
    if not config.export_projects:
        raise cause  # nothing missing that we know of: BC's own reason stands


def _value_fact(dimension: str, code: str) -> dict[str, str]:
    return {"kind": "dimension_value", "dimension": dimension, "value": code}
