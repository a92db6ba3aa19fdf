"""Every ODataV4 page web service call, in one place (bc-contract.md).

API v2.0 cannot write dimension values, set a customer's posting groups or list posting groups,
so these go through pages the BC admin publishes as web services. Microsoft stops exposing its
own pages as OData in BC version 30; a custom API extension can then replace this module alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.bc.errors import RESOURCE_NOT_FOUND, BcNotFound, BcServiceNotPublished
from worker.bc.http import Principal, Transport
from worker.bc.models import CustomerCard, PageDimensionValue, PostingGroup
from worker.bc.odata import company_segment, is_identifier, key_segment, pages, segment

DIMENSION_VALUE_NAME_MAX = 50  # "Dimension Value".Name is Text[50]

# BC page published under each service (told to the admin when a service is missing).
PAGE_DIMENSION_VALUES = "Dimension Values (page 537)"
PAGE_CUSTOMER_CARD = "Customer Card (page 21)"
PAGE_GEN_BUS_POSTING_GROUPS = "Gen. Business Posting Groups (page 312)"
PAGE_CUSTOMER_POSTING_GROUPS = "Customer Posting Groups (page 110)"


@dataclass(frozen=True, slots=True)
class ODataServices:
    """The service names under which the BC admin published the pages."""

    dimension_values: str = "DimensionValues"
    customer_card: str = "CustomerCard"
    gen_bus_posting_groups: str = "GenBusinessPostingGroups"
    customer_posting_groups: str = "CustomerPostingGroups"

    def __post_init__(self) -> None:
        for name in (
            self.dimension_values,
            self.customer_card,
            self.gen_bus_posting_groups,
            self.customer_posting_groups,
        ):
            if not is_identifier(name) or "/" in name:
                raise ValueError(f"not a web service name: {name!r}")


class ODataPages:
    """ODataV4 calls of one connection (``ENV/ODataV4/Company('…')/{Service}``)."""

    def __init__(
        self,
        transport: Transport,
        principal: Principal,
        env_url: str,
        company_name: str,
        services: ODataServices,
    ) -> None:
        self._transport = transport
        self._principal = principal
        self._root = f"{env_url}/ODataV4/{company_segment(company_name)}"
        self.services = services

    async def _call(
        self,
        method: str,
        service: str,
        page: str,
        *,
        key: str = "",
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        url = f"{self._root}/{key or segment(service)}"
        try:
            resp = await self._transport.request(
                self._principal,
                method,
                url,
                resource=f"odata:{service}",
                body=body,
                headers=headers,
            )
        except BcNotFound as exc:
            raise self._not_found(exc, service, page, keyed=bool(key)) from None
        return resp.data

    async def _patch(
        self, service: str, page: str, key: str, body: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """``PATCH`` one record with ``If-Match: *`` (whatever its etag); its new row."""
        data = await self._call(
            "PATCH", service, page, key=key, body=body, headers={"If-Match": "*"}
        )
        return data or {}

    @staticmethod
    def _not_found(exc: BcNotFound, service: str, page: str, *, keyed: bool) -> BcNotFound:
        if type(exc) is not BcNotFound:
            return exc  # environment / company missing: already specific
        # A collection URL that is not found means the service is not published; for a keyed
        # URL BC's code tells an unknown segment (the service) from a missing record
        # (Internal_RecordNotFound), whatever the language of its message.
        if not keyed or exc.code == RESOURCE_NOT_FOUND:
            return BcServiceNotPublished(
                service,
                page,
                status=exc.status,
                code=exc.code,
                correlation_id=exc.correlation_id,
            )
        return exc

    async def _list(self, service: str, page: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        url = f"{self._root}/{segment(service)}"

        async def get_json(next_url: str, headers: Mapping[str, str]) -> Mapping[str, Any]:
            try:
                resp = await self._transport.request(
                    self._principal, "GET", next_url, resource=f"odata:{service}", headers=headers
                )
            except BcNotFound as exc:
                raise self._not_found(exc, service, page, keyed=False) from None
            return resp.data if isinstance(resp.data, Mapping) else {}

        async for chunk in pages(get_json, url):
            rows.extend(chunk)
        return rows

    # -- dimension values ----------------------------------------------------------------------

    async def create_dimension_value(
        self, dimension_code: str, code: str, name: str
    ) -> PageDimensionValue:
        """``POST ODATA/DimensionValues`` (the name is cut to BC's 50 characters)."""
        svc = self.services.dimension_values
        data = await self._call(
            "POST",
            svc,
            PAGE_DIMENSION_VALUES,
            body={
                "Dimension_Code": dimension_code,
                "Code": code,
                "Name": name[:DIMENSION_VALUE_NAME_MAX],
            },
        )
        return PageDimensionValue.from_row(data or {})

    async def rename_dimension_value(
        self, dimension_code: str, code: str, name: str
    ) -> PageDimensionValue:
        """``PATCH ODATA/DimensionValues(Dimension_Code='…',Code='…')`` with ``If-Match: *``."""
        svc = self.services.dimension_values
        key = key_segment(svc, ("Dimension_Code", dimension_code), ("Code", code))
        data = await self._patch(
            svc, PAGE_DIMENSION_VALUES, key, {"Name": name[:DIMENSION_VALUE_NAME_MAX]}
        )
        return PageDimensionValue.from_row(data)

    # -- published? ----------------------------------------------------------------------------

    async def probe_dimension_values(self) -> None:
        """Raise :class:`BcServiceNotPublished` unless DimensionValues answers (one row)."""
        await self._probe(self.services.dimension_values, PAGE_DIMENSION_VALUES)

    async def probe_customer_card(self) -> None:
        """Raise :class:`BcServiceNotPublished` unless CustomerCard answers (one row)."""
        await self._probe(self.services.customer_card, PAGE_CUSTOMER_CARD)

    async def _probe(self, service: str, page: str) -> None:
        url = f"{self._root}/{segment(service)}?$top=1"
        try:
            await self._transport.request(self._principal, "GET", url, resource=f"odata:{service}")
        except BcNotFound as exc:
            raise self._not_found(exc, service, page, keyed=False) from None

    # -- posting groups ------------------------------------------------------------------------

    async def gen_bus_posting_groups(self) -> list[PostingGroup]:
        rows = await self._list(self.services.gen_bus_posting_groups, PAGE_GEN_BUS_POSTING_GROUPS)
        return [PostingGroup.from_row(r) for r in rows]

    async def customer_posting_groups(self) -> list[PostingGroup]:
        rows = await self._list(self.services.customer_posting_groups, PAGE_CUSTOMER_POSTING_GROUPS)
        return [PostingGroup.from_row(r) for r in rows]

    async def set_customer_posting_groups(
        self, number: str, gen_bus_posting_group: str, customer_posting_group: str
    ) -> CustomerCard:
        """``PATCH ODATA/CustomerCard('{number}')`` with both groups and ``If-Match: *``."""
        svc = self.services.customer_card
        body = {
            "Gen_Bus_Posting_Group": gen_bus_posting_group,
            "Customer_Posting_Group": customer_posting_group,
        }
        data = await self._patch(svc, PAGE_CUSTOMER_CARD, key_segment(svc, number), body)
        return CustomerCard.from_row(data)
