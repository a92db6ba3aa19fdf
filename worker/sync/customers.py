"""``moment.customer.created`` / ``.updated`` → a BC customer with its posting groups."""

from __future__ import annotations

from typing import Any

from worker.bc import BcConflict, BcConnection, BcError
from worker.bc.models import Customer as BcCustomer
from worker.config.model import IntegrationConfig
from worker.errors import Permanent
from worker.events.envelope import Event
from worker.events.handlers import Outcome
from worker.events.models import Customer, ExportedData
from worker.sync.context import SyncContext, bc_failure
from worker.sync.errors import missing_facts, missing_record
from worker.sync.transforms import customer_payload, payment_terms_id, posting_groups


async def handle(ctx: SyncContext, event: Event[Any]) -> Outcome:
    config = await ctx.enabled(event.org, "export_customers")
    if isinstance(config, Outcome):
        return config
    customer: Customer = event.data.customer
    subject = f"customer {customer.number}"
    bc = ctx.connection(config)
    try:
        result = await upsert(ctx, bc, config, customer)
    except BcError as exc:
        raise bc_failure(exc, subject, config) from None
    await ctx.succeeded(
        event,
        "customer",
        ExportedData(
            object_type="customer",
            moment_id=customer.id,
            moment_number=customer.number,
            bc_id=result.id,
            bc_number=result.number,
        ),
        ref=customer.number,
    )
    return Outcome.ok(customer=result.number, bc_id=result.id)


async def upsert(
    ctx: SyncContext, bc: BcConnection, config: IntegrationConfig, customer: Customer
) -> BcCustomer:
    """Find by number → create or PATCH (If-Match), then set the posting groups (≤ 3 calls)."""
    facts = await ctx.facts(bc)
    payload = customer_payload(
        customer,
        local_currency=facts.local_currency,
        payment_terms=payment_terms_id(customer.payment_terms_days, facts.payment_terms),
    )
    number = payload["number"]
    existing = await bc.find_customer(number)
    if existing is None:
        try:
            result = await bc.create_customer(payload)
        except BcConflict:
            # Someone else created it first (same key): update theirs instead.
            result = await _update(bc, number, None, payload)
    else:
        result = await _update(bc, number, existing, payload)
    await _posting_groups(bc, config, customer, number, facts.country)
    return result


async def _update(
    bc: BcConnection, number: str, existing: BcCustomer | None, payload: dict[str, Any]
) -> BcCustomer:
    changes = {k: v for k, v in payload.items() if k != "number"}
    for _ in range(3):
        if existing is None:
            existing = await bc.find_customer(number)
            if existing is None:
                return await bc.create_customer(payload)
        try:
            return await bc.update_customer(existing.id, existing.etag, changes)
        except BcConflict as exc:
            if exc.code != "Request_EntityChanged":
                raise
            existing = None  # changed under us: re-read and try again
    raise BcConflict(
        "The customer kept changing while it was updated.", code="Request_EntityChanged"
    )


async def _posting_groups(
    bc: BcConnection,
    config: IntegrationConfig,
    customer: Customer,
    number: str,
    company_country: str,
) -> None:
    groups = config.customer_posting_groups
    choice = posting_groups(
        customer,
        company_country,
        (groups.domestic.gen_bus_posting_group or "", groups.domestic.customer_posting_group or ""),
        (groups.abroad.gen_bus_posting_group or "", groups.abroad.customer_posting_group or ""),
    )
    try:
        await bc.set_customer_posting_groups(
            number, choice.gen_bus_posting_group, choice.customer_posting_group
        )
    except BcError as exc:
        found = missing_record(exc)
        if found is None or found[0] != "BC-POSTING-GROUP-MISSING":
            raise
        _, thing, value = found
        where = "domestic" if choice.domestic else "abroad"
        raise Permanent(
            "BC-POSTING-GROUP-MISSING",
            f"{thing} '{value}' (for {where} customers) does not exist in company "
            f"'{config.company_name}'. Add it in Business Central or change the integration "
            "settings.",
            bc_status=exc.status,
            bc_code=exc.code,
            subject=f"customer {customer.number}",
            missing=missing_facts(exc),
        ) from None
