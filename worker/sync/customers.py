"""``moment.customer.created`` / ``.updated`` → a BC customer with its posting groups.

What real BC does to a customer write (bc-api "Corrections" 1-3, from Customer.Table.al) and how
this module answers it:

- A value BC cannot take (a VAT number over 20 characters or outside the country's VAT
  Registration No. Formats, a phone number with letters) must not block the customer: it is left
  out and the outcome carries a warning for the organization's digest. The length and the
  letters are checked before sending; the format only BC knows, so a write BC refuses with a
  dialog error while it carries a VAT number is repeated once without it. The repeat is what
  recognises the cause (it passes only if the VAT number was the problem), so this works in any
  language BC answers in.
- BC validates the API page's properties in control order, city before country before post code,
  and a country change blanks city, post code and county. A customer who moves abroad is
  therefore written in two steps: the country alone, then the rest of the address. BC also checks
  the VAT number it already has against the new country; when that fails, the old number is
  blanked first (the second step sends the new one).
- When BC's Post Codes list knows a post code it overwrites city and country with its entry;
  what BC stored is compared with what was sent, and a difference is a warning.
- A customer number series without Manual Nos. refuses Moment's numbers: a permanent error that
  names the setting to change.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from worker.bc import BcConflict, BcConnection, BcError
from worker.bc.errors import DIALOG, Label, is_dialog, message_text
from worker.bc.models import Customer as BcCustomer
from worker.config.model import IntegrationConfig
from worker.errors import Permanent
from worker.events.envelope import Event
from worker.events.handlers import DataWarning, Outcome
from worker.events.models import Customer, ExportedData
from worker.sync.context import SyncContext, bc_failure
from worker.sync.errors import missing_facts, missing_record
from worker.sync.transforms import (
    address_changed,
    customer_export,
    payment_terms_id,
    posting_groups,
    vat_rejected,
)

VAT_FIELD = "taxRegistrationNumber"
ADDRESS_FIELDS = ("city", "postalCode", "country")
# The series' code in NoSeriesImpl.Codeunit.al CannotAssignManuallyErr ("You may not enter
# numbers manually. … in No. Series KUND."); the error itself is recognised by its label.
_SERIES = re.compile(r"No\. Series (?P<series>\S+?)\.?(\s|$)")


@dataclass(frozen=True)
class CustomerResult:
    """The customer as BC stored it, and the warnings of this export."""

    customer: BcCustomer
    warnings: tuple[DataWarning, ...] = ()


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
    stored = result.customer
    await ctx.succeeded(
        event,
        "customer",
        ExportedData(
            object_type="customer",
            moment_id=customer.id,
            moment_number=customer.number,
            bc_id=stored.id,
            bc_number=stored.number,
        ),
        ref=customer.number,
    )
    # The codes (not the values) go into the "succeeded" log line for operators.
    left_out = {"left_out": [w.code for w in result.warnings]} if result.warnings else {}
    return Outcome.ok(customer=stored.number, bc_id=stored.id, warnings=result.warnings, **left_out)


async def upsert(
    ctx: SyncContext, bc: BcConnection, config: IntegrationConfig, customer: Customer
) -> CustomerResult:
    """Find by number → create or PATCH (If-Match), then set the posting groups (≤ 3 calls
    unless the country changes or BC refuses the VAT number)."""
    facts = await ctx.facts(bc)
    export = customer_export(
        customer,
        local_currency=facts.local_currency,
        payment_terms=payment_terms_id(customer.payment_terms_days, facts.payment_terms),
    )
    writer = _Writer(bc, customer, export.body, list(export.warnings))
    number = export.body["number"]
    existing = await bc.find_customer(number)
    if existing is None:
        try:
            result = await writer.create()
        except BcConflict:
            # Someone else created it first (same key): update theirs instead.
            result = await writer.update(None)
    else:
        result = await writer.update(existing)
    sent = {k: v for k, v in export.body.items() if k in ADDRESS_FIELDS}
    moved = address_changed(customer, sent, (result.city, result.postal_code, result.country))
    if moved is not None:
        writer.warnings.append(moved)
    await _posting_groups(bc, config, customer, number, facts.country)
    return CustomerResult(result, tuple(writer.warnings))


class _Writer:
    """The create or update of one customer, with BC's field rules answered."""

    def __init__(
        self,
        bc: BcConnection,
        customer: Customer,
        payload: dict[str, Any],
        warnings: list[DataWarning],
    ) -> None:
        self.bc = bc
        self.customer = customer
        self.payload = payload
        self.number: str = payload["number"]
        self.warnings = warnings

    async def create(self) -> BcCustomer:
        try:
            return await self._without_refused_vat(self.bc.create_customer, self.payload)
        except BcError as exc:
            raise self._manual_numbers(exc) or exc from None

    async def update(self, existing: BcCustomer | None) -> BcCustomer:
        changes = {k: v for k, v in self.payload.items() if k != "number"}
        for _ in range(3):
            if existing is None:
                existing = await self.bc.find_customer(self.number)
                if existing is None:
                    return await self.create()
            try:
                return await self._patch(existing, changes)
            except BcConflict as exc:
                if exc.code != "Request_EntityChanged":
                    raise
                existing = None  # changed under us: re-read and try again
        raise BcConflict(
            "The customer kept changing while it was updated.", code="Request_EntityChanged"
        )

    async def _patch(self, existing: BcCustomer, changes: dict[str, Any]) -> BcCustomer:
        country = changes.get("country")
        if country is None or country.upper() == existing.country.upper():
            return await self._without_refused_vat(
                self._patcher(existing.id, existing.etag), changes
            )
        # Moving abroad. Customer.Table.al "Country/Region Code" OnValidate blanks city, post
        # code and county when the country changes (PostCode.CheckClearPostCodeCityCounty), and
        # the API page validates the city before the country: the country goes alone first.
        moved = await self._move(existing, country)
        rest = {k: v for k, v in changes.items() if k != "country"}
        return await self._without_refused_vat(self._patcher(moved.id, moved.etag), rest)

    async def _move(self, existing: BcCustomer, country: str) -> BcCustomer:
        try:
            return await self.bc.update_customer(existing.id, existing.etag, {"country": country})
        except BcError as exc:
            # The same trigger checks the VAT number BC has against the new country's formats
            # (VATRegistrationValidation): blank it, then move; the next PATCH sends Moment's.
            if exc.code != DIALOG or not existing.tax_registration_number:
                raise
        blanked = await self.bc.update_customer(existing.id, existing.etag, {VAT_FIELD: ""})
        try:
            return await self.bc.update_customer(blanked.id, blanked.etag, {"country": country})
        except BcError:
            # Not the VAT number after all: give it back rather than leave BC without it.
            with suppress(BcError):
                await self.bc.update_customer(
                    blanked.id, blanked.etag, {VAT_FIELD: existing.tax_registration_number}
                )
            raise

    def _patcher(
        self, customer_id: str, etag: str
    ) -> Callable[[dict[str, Any]], Awaitable[BcCustomer]]:
        async def patch(body: dict[str, Any]) -> BcCustomer:
            return await self.bc.update_customer(customer_id, etag, body)

        return patch

    async def _without_refused_vat(
        self, write: Callable[[dict[str, Any]], Awaitable[BcCustomer]], body: dict[str, Any]
    ) -> BcCustomer:
        """``write(body)``; when BC refuses it with a dialog error while it carries a VAT number,
        once more without the number. If that passes, the number was the cause: a warning."""
        try:
            return await write(body)
        except BcError as exc:
            vat = body.get(VAT_FIELD)
            if exc.code != DIALOG or not vat or self._manual_numbers(exc) is not None:
                raise
            first = exc
        result = await write({k: v for k, v in body.items() if k != VAT_FIELD})
        self.warnings.append(vat_rejected(self.customer, vat, message_text(first)))
        return result

    def _manual_numbers(self, exc: BcError) -> Permanent | None:
        """BC's "You may not enter numbers manually" (a customer number series without Manual
        Nos.) as a permanent error naming the setting; None for any other error."""
        if not is_dialog(exc, Label.MANUAL_NUMBERS):
            return None
        match = _SERIES.search(message_text(exc))
        series = f"number series '{match.group('series')}'" if match else "its number series"
        return Permanent(
            "BC-CUSTOMER-NOS-NOT-MANUAL",
            f"Business Central refused customer number {self.number}: the customer "
            f"{series} does not allow numbers from outside. Turn on Manual Nos. for "
            f"{series} in Business Central (Sales & Receivables Setup, Customer "
            "Nos.), then replay.",
            bc_status=exc.status,
            bc_code=exc.code,
            subject=f"customer {self.customer.number}",
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
    # Only these two fields: BC itself sets the VAT Bus. Posting Group from the gen. bus.
    # group's default when that changes (Customer.Table.al "Gen. Bus. Posting Group"
    # OnValidate), and nothing else of ours (no taxAreaId) overwrites it.
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
