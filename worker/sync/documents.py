"""The export of a Moment document to a posted BC sales document, exactly once: the flow that
sales invoices (:mod:`worker.sync.invoices`) and sales credit memos
(:mod:`worker.sync.credit_notes`) share, parameterised by a :class:`DocumentKind`.

The happy path makes 5 calls whatever the line count: find by external document number,
create the draft with its lines, set every line's dimensions in one ``$batch``, post, read back.
A missing customer, a customer without posting groups (BC refuses both at the draft create) or a
missing project dimension value is detected from BC's answer and repaired from the event's
snapshots (when that export is on), then the step is repeated.

A document BC holds for approval is no failure: the outcome is ``waiting`` (acked, no
``bc.*.exported``, recorded for the status route and the digest), see :func:`_waiting`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog

from worker.bc import BcConnection, BcError, LineDimension
from worker.bc.models import SalesDocument, SalesInvoiceLine
from worker.config.model import IntegrationConfig
from worker.errors import Permanent
from worker.events.envelope import Event
from worker.events.handlers import DataWarning, Outcome
from worker.events.models import Invoice, Model
from worker.sync import bc_answers, projects, snapshots
from worker.sync.context import CompanyFacts, SyncContext, bc_failure
from worker.sync.transforms import (
    NUMBER_MAX,
    LineDims,
    bc_code,
    currency_read,
    line_dimensions,
    projects_of,
)

log = structlog.get_logger(__name__)

D = TypeVar("D", bound=SalesDocument)
C = TypeVar("C")  # what a kind's find learns besides the document (e.g. the credited invoice)


def exported_facts(doc: Invoice, posted: SalesDocument, local_currency: str) -> dict[str, Any]:
    """What the ``bc.<object_type>.exported`` of every sales document says of the posted one."""
    return {
        "moment_id": doc.id,
        "moment_number": doc.number,
        "bc_id": posted.id,
        "bc_number": posted.number,
        "status": posted.status,
        "total_excluding_tax": float(posted.total_amount_excluding_tax),
        "total_including_tax": float(posted.total_amount_including_tax),
        "currency_code": currency_read(posted.currency_code, local_currency),
    }


class DocumentKind(ABC, Generic[D, C]):
    """One kind of sales document: its names, its BC calls, its payload and its event out."""

    object_type: str  # "invoice": claims, outcomes, bc.<object_type>.exported
    noun: str  # the Moment document in messages: "invoice", "credit note"
    bc_noun: str  # the BC document in messages: "invoice", "credit memo"
    bc_plural: str  # "sales invoices": what an approval workflow is for
    lines_set: str  # the lines' entity set (line dimensions go through it)
    waiting_code: str  # the ``waiting`` outcome's code (worker.errors.CATALOGUE)

    @abstractmethod
    def payload(self, doc: Invoice, *, customer_number: str, local_currency: str) -> dict[str, Any]:
        """The create body, lines deep-inserted."""

    @abstractmethod
    async def find(
        self, bc: BcConnection, doc: Invoice, payload: dict[str, Any]
    ) -> tuple[D | None, C]:
        """The document in BC by external document number and customer (one request)."""

    @abstractmethod
    async def create(self, bc: BcConnection, payload: dict[str, Any]) -> D: ...

    @abstractmethod
    async def get(self, bc: BcConnection, document_id: str) -> D: ...

    @abstractmethod
    async def post(self, bc: BcConnection, document_id: str) -> None: ...

    @abstractmethod
    async def lines(self, bc: BcConnection, document_id: str) -> list[SalesInvoiceLine]: ...

    @abstractmethod
    def exported(self, doc: Invoice, posted: D, found: C, local_currency: str) -> Model:
        """The data of ``bc.<object_type>.exported``."""

    async def prepare(
        self,
        bc: BcConnection,
        config: IntegrationConfig,
        doc: Invoice,
        payload: dict[str, Any],
        found: C,
    ) -> dict[str, Any]:
        """The create body once the document is known to be missing (hook; as it is)."""
        return payload

    def check_resumed(self, config: IntegrationConfig, doc: Invoice, draft: D, found: C) -> None:
        """Refuse to resume a draft that does not fit the event (hook; nothing to check)."""

    def create_refused(self, config: IntegrationConfig, doc: Invoice, exc: BcError) -> None:
        """Turn a refused create into a failure of this kind, or return (hook)."""

    def post_refused(self, config: IntegrationConfig, doc: Invoice, draft: D, exc: BcError) -> None:
        """Turn a refused post into a failure of this kind, or return (hook)."""

    # -- words -------------------------------------------------------------------------------

    @property
    def title(self) -> str:
        """The noun at the start of a sentence: "Invoice", "Credit note"."""
        return self.noun[:1].upper() + self.noun[1:]

    def subject(self, doc: Invoice) -> str:
        return f"{self.noun} {doc.number}"


@dataclass(frozen=True)
class _Waiting(Generic[D]):
    """BC holds the document for approval: ``requested`` when it was sent for approval (status
    ``In Review``), else an approval workflow refused the post of a draft nobody sent yet."""

    draft: D
    requested: bool


async def export(ctx: SyncContext, event: Event[Any], kind: DocumentKind[D, C]) -> Outcome:
    """Handle one ``moment.invoice.created`` as a document of ``kind``."""
    config = await ctx.enabled(event.org, "export_invoices")
    if isinstance(config, Outcome):
        return config
    doc: Invoice = event.data.invoice
    subject = kind.subject(doc)
    # Everything that can be wrong with the event itself fails here, before any write.
    customer_number = bc_code(doc.customer.number, NUMBER_MAX, "Customer number", subject)
    dims = line_dimensions(
        doc,
        project_dimension=config.project_dimension,
        department_dimension=config.department_dimension,
        department_source=config.department_source,
        tag_group=config.department_tag_group,
        subject=subject,
    )
    bc = ctx.connection(config)
    # Values left out of a customer this document had to create or repair (e.g. a phone number
    # with letters): the document still goes through, the admin hears of them in the digest.
    warnings: list[DataWarning] = []
    try:
        facts = await ctx.facts(bc)
        payload = kind.payload(
            doc, customer_number=customer_number, local_currency=facts.local_currency
        )
        # Keyed like BC keys the document (upper case): "ab-12" and "AB-12" are one document.
        async with ctx.claim(f"{kind.object_type}/{event.org}/{payload['externalDocumentNumber']}"):
            result, found = await _export(
                ctx, bc, config, facts, doc, payload, dims, kind, warnings
            )
    except BcError as exc:
        raise bc_failure(exc, subject, config) from None
    except Permanent as exc:
        if exc.code == "BC-DIMENSION-MISSING":
            ctx.forget_facts(bc)  # the dimension may be added in BC before the replay
        raise
    if isinstance(result, _Waiting):
        return _waiting(config, doc, result, kind)
    posted = result
    await ctx.succeeded(
        event,
        kind.object_type,
        kind.exported(doc, posted, found, facts.local_currency),
        ref=doc.number,
    )
    return Outcome.ok(
        warnings=warnings,
        **{kind.object_type: doc.number},
        bc_number=posted.number,
        status=posted.status,
    )


def _waiting(
    config: IntegrationConfig, doc: Invoice, waiting: _Waiting[D], kind: DocumentKind[D, C]
) -> Outcome:
    """The ``waiting`` outcome, in words the organization's admin can act on."""
    draft = waiting.draft
    where = f"company '{config.company_name}'"
    if waiting.requested:
        message = (
            f"{kind.title} {doc.number} is waiting for approval in Business Central (draft "
            f"{draft.number} in {where}); it is not posted yet. Once it is approved, it is "
            f"posted when the {kind.noun} is exported again."
        )
    else:
        message = (
            f"{kind.title} {doc.number} must be approved in Business Central before it can be "
            f"posted: {where} has an approval workflow for {kind.bc_plural}. Send draft "
            f"{draft.number} for approval there; once it is approved, it is posted when the "
            f"{kind.noun} is exported again."
        )
    return Outcome.waiting(
        kind.waiting_code,
        message,
        **{kind.object_type: doc.number},
        bc_id=draft.id,
        bc_number=draft.number,
        status=draft.status,
    )


async def _export(
    ctx: SyncContext,
    bc: BcConnection,
    config: IntegrationConfig,
    facts: CompanyFacts,
    doc: Invoice,
    payload: dict[str, Any],
    dims: list[LineDims],
    kind: DocumentKind[D, C],
    warnings: list[DataWarning],
) -> tuple[D | _Waiting[D], C]:
    """Find, create or resume, set the line dimensions, post: the posted document, or waiting.

    How a draft is told from a posted document (bc-api Corrections 4): the API shows no
    ``Posted`` flag, only ``status``. ``Paid``/``Canceled``/``Corrective`` are posted,
    ``Draft`` and ``In Review`` are not, but ``Open`` is both a posted document and a released
    (or pending-prepayment) draft. For those BC itself decides: ``Microsoft.NAV.post`` posts a
    released draft and refuses a posted one with "The action can be applied to a draft invoice
    only." (APIV2SalesInvoices.Page.al, GetDraftInvoice tests ``Rec.Posted``; the credit memo
    page's GetDraftCreditMemo the same, "… draft credit memo only."). So an ``Open`` document
    is posted unless BC says it already is; it is never reported as posted on its status alone.
    The cost: a redelivery of a posted document makes two calls (find and the refused post)
    instead of one.
    """
    found, learned = await kind.find(bc, doc, payload)
    if found is not None and found.surely_posted:
        log.info("documents.already_posted", bc_number=found.number, status=found.status)
        return found, learned
    if found is not None and found.in_review:
        # Pending approval: BC takes no change and no post until someone approves it.
        log.info("documents.waiting_for_approval", draft=found.number)
        return _Waiting(found, requested=True), learned
    if found is None:
        body = await kind.prepare(bc, config, doc, payload, learned)
        draft = await _create_draft(ctx, bc, config, doc, body, kind, warnings)
    else:
        log.info("documents.resuming_draft", draft=found.number, status=found.status)
        kind.check_resumed(config, doc, found, learned)
        draft = found
    lines = draft.lines or tuple(await kind.lines(bc, draft.id))
    wanted = _wanted_dimensions(doc, draft, dims, lines, kind)
    if wanted and not draft.is_draft:
        # Open: posted, or released. Neither takes new dimensions, and a released draft must
        # not be posted without them; a person has to look.
        raise Permanent(
            "BC-VALIDATION",
            f"{kind.title} {doc.number} is in Business Central as {draft.number} with status "
            f"{draft.status} (posted, or released for posting), but its lines lack the "
            f"dimensions of the Moment {kind.noun}. If it is a released draft, reopen it in "
            f"Business Central, then ask support to replay the {kind.noun}; if it is posted, "
            "correct it in Business Central.",
            subject=kind.subject(doc),
        )
    await _set_dimensions(ctx, bc, config, facts, doc, wanted, kind)
    try:
        await kind.post(bc, draft.id)
    except BcError as exc:
        if exc.transient:
            raise
        if bc_answers.approval_required(exc):
            log.info("documents.approval_required", draft=draft.number)
            return _Waiting(draft, requested=False), learned
        if not bc_answers.not_a_draft(exc):
            kind.post_refused(config, doc, draft, exc)
            raise
        # Posted already: by us (an earlier delivery whose answer was lost, or a redelivery),
        # or by someone in BC after our draft was made.
        if found is not None and found.id == draft.id:
            log.info("documents.already_posted", bc_number=found.number, status=found.status)
            return found, learned
        current = await kind.get(bc, draft.id)
        log.info("documents.posted_meanwhile", bc_number=current.number)
        return current, learned
    return await kind.get(bc, draft.id), learned


async def _repair_customer(
    ctx: SyncContext,
    bc: BcConnection,
    config: IntegrationConfig,
    doc: Invoice,
    cause: BcError,
    kind: DocumentKind[D, C],
    warnings: list[DataWarning],
) -> None:
    number = doc.customer.number.upper()
    if not config.export_customers:
        raise Permanent(
            "BC-POSTING-GROUP-MISSING",
            f"Customer {number} has no posting groups in company '{config.company_name}', so "
            f"{kind.noun} {doc.number} cannot be created (Business Central checks them when the "
            "draft is made). Set them on the customer card in Business Central or switch on "
            "customer export.",
            bc_status=cause.status,
            bc_code=cause.code,
            subject=kind.subject(doc),
        )
    log.info("documents.setting_missing_posting_groups", customer=number)
    warnings.extend(await snapshots.customer(ctx, bc, config, doc.customer))


async def _create_draft(
    ctx: SyncContext,
    bc: BcConnection,
    config: IntegrationConfig,
    doc: Invoice,
    payload: dict[str, Any],
    kind: DocumentKind[D, C],
    warnings: list[DataWarning],
) -> D:
    """Create the draft, repairing what BC says is missing about the customer, each at most
    once: its posting groups, or the customer itself."""
    groups_repaired = customer_made = False
    while True:
        try:
            return await _create(bc, config, doc, payload, kind)
        except BcError as exc:
            if exc.transient:
                raise
            if bc_answers.posting_groups_missing(exc) and not groups_repaired:
                # The customer exists without posting groups (its export stopped between
                # creating it and setting them, or another worker is between the two right
                # now). BC tests them when the draft is made, not at the post
                # (SalesHeader.Table.al, bc-api Corrections 5): set them from the snapshot, then
                # make the draft. No repair after the post: a draft copies the groups when it is
                # made, so the post cannot fail on the customer's groups any more.
                await _repair_customer(ctx, bc, config, doc, exc, kind, warnings)
                groups_repaired = True
                continue
            if customer_made:
                raise
            missing = bc_answers.customer_missing(exc)
            if await bc.find_customer(payload["customerNumber"]) is not None:
                if not missing:
                    raise
                # A concurrent export (another document of this customer, or the customer's
                # own event) created it meanwhile, maybe still without its posting groups.
                customer_made = True
                continue
        # BC refused the draft because the customer does not exist.
        if not config.export_customers:
            raise Permanent(
                "BC-CUSTOMER-MISSING",
                f"Customer {payload['customerNumber']} does not exist in company "
                f"'{config.company_name}'. Create it in Business Central or switch on customer "
                "export.",
                subject=kind.subject(doc),
                missing=[{"kind": "customer", "value": payload["customerNumber"]}],
            )
        warnings.extend(await snapshots.customer(ctx, bc, config, doc.customer))
        customer_made = True


async def _create(
    bc: BcConnection,
    config: IntegrationConfig,
    doc: Invoice,
    payload: dict[str, Any],
    kind: DocumentKind[D, C],
) -> D:
    """Create the draft; a missing G/L account becomes BC-ACCOUNT-MISSING naming the accounts."""
    try:
        return await kind.create(bc, payload)
    except BcError as exc:
        if exc.transient:
            raise
        kind.create_refused(config, doc, exc)
        if not bc_answers.account_missing(exc):
            raise
        # BC's line validation does not name the account (page 30043): name the candidates.
        accounts = sorted({line["lineObjectNumber"] for line in payload[kind.lines_set]})
        raise Permanent(
            "BC-ACCOUNT-MISSING",
            f"A G/L account on {kind.noun} {doc.number} does not exist in company "
            f"'{config.company_name}' (accounts used: {', '.join(accounts)}). Add it in "
            "Business Central or correct the account in Moment, then replay.",
            bc_status=exc.status,
            bc_code=exc.code,
            subject=kind.subject(doc),
            missing=[{"kind": "gl_account", "value": a} for a in accounts],
        ) from None


def _wanted_dimensions(
    doc: Invoice,
    draft: D,
    dims: list[LineDims],
    lines: tuple[SalesInvoiceLine, ...],
    kind: DocumentKind[D, C],
) -> list[LineDimension]:
    """The line dimensions BC does not have yet (a resumed draft may have them already, e.g.
    after a crash after the batch); lines other than the Moment document's are an error."""
    by_sequence = {line.sequence: line for line in lines}
    if len({d.sequence for d in dims} - set(by_sequence)) > 0:
        raise Permanent(
            "BC-VALIDATION",
            f"The {kind.bc_noun} {draft.number} in Business Central ({draft.status}) has other "
            f"lines than the Moment {kind.noun}.",
            subject=kind.subject(doc),
        )
    return [
        LineDimension(by_sequence[d.sequence].id, dimension, value)
        for d in dims
        for dimension, value in d.values
        if (dimension.upper(), value) not in by_sequence[d.sequence].dimensions
    ]


async def _set_dimensions(
    ctx: SyncContext,
    bc: BcConnection,
    config: IntegrationConfig,
    facts: CompanyFacts,
    doc: Invoice,
    wanted: list[LineDimension],
    kind: DocumentKind[D, C],
) -> None:
    if not wanted:
        return
    try:
        await bc.set_line_dimensions(wanted, lines_set=kind.lines_set)
        return
    except BcError as exc:
        if exc.transient:
            raise
        first = exc
    # A dimension value is missing: create the projects (when exported) or name what is missing.
    await _ensure_values(ctx, bc, config, facts, doc, first, kind)
    await bc.set_line_dimensions(wanted, lines_set=kind.lines_set)


async def _ensure_values(
    ctx: SyncContext,
    bc: BcConnection,
    config: IntegrationConfig,
    facts: CompanyFacts,
    doc: Invoice,
    cause: BcError,
    kind: DocumentKind[D, C],
) -> None:
    missing: list[str] = []
    facts_missing: list[dict[str, str]] = []
    if config.project_dimension:
        dim_id = projects.dimension_id(config, facts, config.project_dimension)
        for project in projects_of(doc):
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
                doc,
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
            subject=kind.subject(doc),
            missing=facts_missing,
        )
    if not config.export_projects:
        raise cause  # nothing missing that we know of: BC's own reason stands


def _value_fact(dimension: str, code: str) -> dict[str, str]:
    return {"kind": "dimension_value", "dimension": dimension, "value": code}
