"""The Business Central client: :class:`BcHub` (one per process) and :class:`BcConnection`
(one organization's environment and company). The methods are exactly the calls listed in
``bc-contract.md``; ODataV4 page calls are delegated to :mod:`worker.bc.pages`.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Generic, TypeVar, Unpack

import structlog
from pydantic import SecretStr

from worker.bc.auth import TokenProvider
from worker.bc.endpoints import BcEndpoints
from worker.bc.errors import (
    SAME_KEY,
    BcAuthError,
    BcCompanyNotFound,
    BcEnvironmentNotFound,
    BcError,
    BcNotFound,
    BcUnavailable,
    BcValidationError,
    Label,
    is_dialog,
)
from worker.bc.http import ClientOptions, Principal, RequestOptions, Transport
from worker.bc.models import (
    POSTED_CREDIT_MEMO_STATUSES,
    POSTED_INVOICE_STATUSES,
    Company,
    CompanyInformation,
    Customer,
    CustomerCard,
    Dimension,
    DimensionValue,
    GeneralLedgerSetup,
    LineDimension,
    LineDimensionResult,
    PageDimensionValue,
    PaymentTerms,
    PostedDocument,
    PostingGroup,
    PurchaseInvoice,
    PurchaseInvoicePage,
    SalesCreditMemo,
    SalesDocument,
    SalesInvoice,
    SalesInvoiceBalance,
    SalesInvoiceLine,
)
from worker.bc.odata import (
    MAX_OR_TERMS,
    BatchOperation,
    BatchResult,
    Guid,
    all_of,
    batch_body,
    batch_results,
    chunks,
    cond,
    decode_company_name,
    eq_filter,
    guid,
    is_valid_environment,
    is_valid_tenant,
    one_of,
    pages,
    query_string,
    segment,
)
from worker.bc.pages import ODataPages

log = structlog.get_logger(__name__)

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# How long dimension ids (needed to PATCH a line's dimension) are reused.
DIMENSION_CACHE_S = 300.0

D = TypeVar("D", bound=SalesDocument)


@dataclass(frozen=True, slots=True)
class DocumentSet:
    """Where one kind of sales document lives in API v2.0: its entity set and its lines' set
    (the lines are also the deep-insert key and the ``$expand`` name)."""

    entity_set: str
    lines_set: str


SALES_INVOICES = DocumentSet("salesInvoices", "salesInvoiceLines")
SALES_CREDIT_MEMOS = DocumentSet("salesCreditMemos", "salesCreditMemoLines")


@dataclass(frozen=True, slots=True)
class BcCredentials:
    """What one organization's integration needs to reach its BC company.

    ``company_name`` is the decoded name (see :meth:`from_config` for user input).
    """

    tenant_id: str
    client_id: str
    client_secret: SecretStr = field(repr=False)
    environment: str
    company_name: str

    @classmethod
    def from_config(
        cls,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: str | SecretStr,
        environment: str,
        company_name: str,
    ) -> BcCredentials:
        """From the configuration dialog's values: trims, and percent-decodes the company name
        once (``CRONUS%20Sverige%20AB`` → ``CRONUS Sverige AB``)."""
        secret = client_secret if isinstance(client_secret, SecretStr) else SecretStr(client_secret)
        return cls(
            tenant_id=tenant_id.strip(),
            client_id=client_id.strip(),
            client_secret=secret,
            environment=environment.strip(),
            company_name=decode_company_name(company_name),
        )

    @property
    def principal(self) -> Principal:
        return Principal(self.tenant_id, self.client_id, self.client_secret)


class _Lru(Generic[K, V]):
    """A small bounded mapping (least recently used entries go first)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self._size:
            self._data.popitem(last=False)

    def pop(self, key: K) -> None:
        self._data.pop(key, None)


class BcHub:
    """Process-wide BC client state: the HTTP session, msal apps, per-subject limiters and small
    caches (company ids, dimension ids). ``await hub.close()`` at shutdown."""

    def __init__(self, endpoints: BcEndpoints, *, options: ClientOptions | None = None):
        self.endpoints = endpoints
        self.options = options or ClientOptions()
        self.tokens = TokenProvider(
            endpoints.authority_url,
            ca_file=endpoints.ca_file,
            timeout_s=self.options.token_timeout_s,
        )
        self.transport = Transport(
            base_url=endpoints.api_url,
            tokens=self.tokens,
            ca_file=endpoints.ca_file,
            options=self.options,
        )
        self.services = endpoints.services
        self._company_ids: _Lru[tuple[str, str, str], str] = _Lru(4096)
        self._company_locks: _Lru[tuple[str, str, str], asyncio.Lock] = _Lru(4096)
        self._dimension_ids: _Lru[tuple[str, str, str], tuple[float, dict[str, str]]] = _Lru(1024)

    async def __aenter__(self) -> BcHub:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.transport.close()
        self.tokens.close()

    def credentials(
        self,
        *,
        tenant_id: str,
        client_secret: str | SecretStr,
        environment: str,
        company_name: str,
        client_id: str | None = None,
    ) -> BcCredentials:
        """Credentials from configuration values; the client id defaults to the setting."""
        cid = client_id or self.endpoints.client_id
        if not cid:
            raise BcAuthError(
                "No client ID: set BC_SYNC_CLIENT_ID or the integration's client ID.",
                code="NoClientId",
                field="client_id",
            )
        return BcCredentials.from_config(
            tenant_id=tenant_id,
            client_id=cid,
            client_secret=client_secret,
            environment=environment,
            company_name=company_name,
        )

    def connection(self, credentials: BcCredentials) -> BcConnection:
        """A connection for one organization; cheap, make one per unit of work."""
        return BcConnection(self, credentials)


class BcConnection:
    """The BC calls of one organization (tenant, app, environment, company)."""

    def __init__(self, hub: BcHub, credentials: BcCredentials) -> None:
        creds = credentials
        if not is_valid_tenant(creds.tenant_id):
            raise BcAuthError(
                "The tenant ID must be a GUID or a domain such as contoso.onmicrosoft.com.",
                code="InvalidTenant",
                field="tenant_id",
            )
        if not creds.client_id:
            raise BcAuthError("No client ID is configured.", code="NoClientId", field="client_id")
        if not is_valid_environment(creds.environment):
            raise BcEnvironmentNotFound(
                creds.environment,
                message="The environment name may contain only letters, digits, '-' and '_'.",
                code="InvalidEnvironment",
            )
        if not creds.company_name:
            raise BcCompanyNotFound("", message="The company name is empty.", code="EmptyCompany")
        self.hub = hub
        self.credentials = creds
        self._principal = creds.principal
        self._transport = hub.transport
        base = hub.endpoints.api_url
        self.env_url = f"{base}/v2.0/{segment(creds.tenant_id)}/{segment(creds.environment)}"
        self.api_url = f"{self.env_url}/api/v2.0"
        self.pages = ODataPages(
            self._transport, self._principal, self.env_url, creds.company_name, hub.services
        )
        self._company_key = (creds.tenant_id.lower(), creds.environment, creds.company_name)

    # -- plumbing ------------------------------------------------------------------------------

    def _specific(self, exc: BcError) -> BcError:
        """Name the configured environment / company in errors BC reports without them."""
        if isinstance(exc, BcEnvironmentNotFound) and not exc.environment:
            return BcEnvironmentNotFound(
                self.credentials.environment,
                status=exc.status,
                code=exc.code,
                correlation_id=exc.correlation_id,
            )
        if isinstance(exc, BcCompanyNotFound) and not exc.company_name:
            self.hub._company_ids.pop(self._company_key)
            return BcCompanyNotFound(
                self.credentials.company_name,
                message=(
                    f"The company '{self.credentials.company_name}' does not exist in this "
                    "environment."
                ),
                status=exc.status,
                code=exc.code,
                correlation_id=exc.correlation_id,
            )
        return exc

    async def _request(
        self, method: str, url: str, *, resource: str, **options: Unpack[RequestOptions]
    ) -> Any:
        try:
            resp = await self._transport.request(
                self._principal, method, url, resource=resource, **options
            )
        except (BcEnvironmentNotFound, BcCompanyNotFound) as exc:
            raise self._specific(exc) from None
        return resp.data

    async def _pages(
        self, url: str, *, resource: str, page_size: int | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        async def get_json(next_url: str, headers: Mapping[str, str]) -> Mapping[str, Any]:
            data = await self._request("GET", next_url, resource=resource, headers=headers)
            return data if isinstance(data, Mapping) else {}

        async for page in pages(get_json, url, page_size=page_size):
            yield page

    async def _all(self, url: str, *, resource: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        async for page in self._pages(url, resource=resource):
            rows.extend(page)
        return rows

    async def _company_url(self) -> str:
        return f"{self.api_url}/companies({await self.company_id()})"

    # -- auth and companies --------------------------------------------------------------------

    async def get_token(self) -> str:
        """An access token for BC (checks tenant, client id and secret with Entra ID)."""
        c = self.credentials
        return await self.hub.tokens.token(c.tenant_id, c.client_id, c.client_secret)

    async def list_companies(self) -> list[Company]:
        """``GET API/companies`` (404 ``NoEnvironment`` → :class:`BcEnvironmentNotFound`)."""
        rows = await self._all(f"{self.api_url}/companies", resource="companies")
        return [Company.from_row(r) for r in rows]

    async def company_id(self) -> str:
        """The configured company's id: exact name match after decoding, cached."""
        cached = self.hub._company_ids.get(self._company_key)
        if cached:
            return cached
        lock = self.hub._company_locks.get(self._company_key)
        if lock is None:
            lock = asyncio.Lock()
            self.hub._company_locks.put(self._company_key, lock)
        async with lock:  # many concurrent first calls make one lookup
            cached = self.hub._company_ids.get(self._company_key)
            if cached:
                return cached
            companies = await self.list_companies()
            for company in companies:
                if company.name == self.credentials.company_name:
                    company_id = guid(company.id)
                    self.hub._company_ids.put(self._company_key, company_id)
                    return company_id
        raise BcCompanyNotFound(
            self.credentials.company_name, tuple(c.name for c in companies), status=404
        )

    async def company_information(self) -> CompanyInformation:
        """``GET COMPANY/companyInformation`` (its ``country`` is the domestic country)."""
        row = await self._single("companyInformation", "company information")
        return CompanyInformation.from_row(row)

    async def general_ledger_setup(self) -> GeneralLedgerSetup:
        """``GET COMPANY/generalLedgerSetup`` (shortcut dimension codes 1 to 8)."""
        row = await self._single("generalLedgerSetup", "general ledger setup")
        return GeneralLedgerSetup.from_row(row)

    async def _single(self, resource: str, what: str) -> dict[str, Any]:
        """The one row of a company's singleton resource (``GET COMPANY/<resource>``)."""
        rows = await self._all(f"{await self._company_url()}/{resource}", resource=resource)
        if not rows:
            raise BcUnavailable(f"Business Central returned no {what}.")
        return rows[0]

    # -- dimensions ----------------------------------------------------------------------------

    async def dimensions(self) -> list[Dimension]:
        """``GET COMPANY/dimensions``."""
        rows = await self._all(f"{await self._company_url()}/dimensions", resource="dimensions")
        result = [Dimension.from_row(r) for r in rows]
        self._remember_dimensions(result)
        return result

    def _remember_dimensions(self, dims: Iterable[Dimension]) -> None:
        key = self._company_key
        self.hub._dimension_ids.put(key, (time.monotonic(), {d.code: d.id for d in dims}))

    async def _dimension_id(self, code: str) -> str:
        key = self._company_key
        cached = self.hub._dimension_ids.get(key)
        if (
            cached is None
            or time.monotonic() - cached[0] > DIMENSION_CACHE_S
            or (code not in cached[1])
        ):
            await self.dimensions()
            cached = self.hub._dimension_ids.get(key)
        if cached is None or code not in cached[1]:
            raise BcValidationError(
                f"The dimension '{code}' does not exist in Business Central.",
                code="DimensionNotFound",
            )
        return cached[1][code]

    async def find_dimension_value(self, dimension_id: str, code: str) -> DimensionValue | None:
        """``GET COMPANY/dimensionValues?$filter=dimensionId eq {id} and code eq '{code}'``."""
        query = query_string(
            {
                "$filter": all_of(
                    cond("dimensionId", "eq", Guid(dimension_id)), cond("code", "eq", code)
                )
            }
        )
        rows = await self._all(
            f"{await self._company_url()}/dimensionValues{query}", resource="dimensionValues"
        )
        return DimensionValue.from_row(rows[0]) if rows else None

    async def create_dimension_value(
        self, dimension_code: str, code: str, name: str
    ) -> PageDimensionValue:
        """``POST ODATA/DimensionValues`` ``{Dimension_Code, Code, Name}`` (ODataV4)."""
        return await self._page_call(self.pages.create_dimension_value(dimension_code, code, name))

    async def rename_dimension_value(
        self, dimension_code: str, code: str, name: str
    ) -> PageDimensionValue:
        """``PATCH ODATA/DimensionValues(Dimension_Code=…,Code=…)`` ``{Name}``, ``If-Match: *``."""
        return await self._page_call(self.pages.rename_dimension_value(dimension_code, code, name))

    async def _page_call(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except (BcEnvironmentNotFound, BcCompanyNotFound) as exc:
            raise self._specific(exc) from None

    async def probe_dimension_values(self) -> None:
        """``GET ODATA/DimensionValues?$top=1``: is the page published (verify on save)?"""
        await self._page_call(self.pages.probe_dimension_values())

    async def probe_customer_card(self) -> None:
        """``GET ODATA/CustomerCard?$top=1``: is the page published (verify on save)?"""
        await self._page_call(self.pages.probe_customer_card())

    # -- posting groups ------------------------------------------------------------------------

    async def gen_bus_posting_groups(self) -> list[PostingGroup]:
        """``GET ODATA/GenBusinessPostingGroups`` (ODataV4)."""
        return await self._page_call(self.pages.gen_bus_posting_groups())

    async def customer_posting_groups(self) -> list[PostingGroup]:
        """``GET ODATA/CustomerPostingGroups`` (ODataV4)."""
        return await self._page_call(self.pages.customer_posting_groups())

    async def account_exists(self, number: str) -> bool:
        """``GET COMPANY/accounts?$filter=number eq '{number}'&$select=number``: is the G/L
        account there (the self-healing probe of a BC-ACCOUNT-MISSING dead letter)?"""
        query = query_string({"$filter": eq_filter(number=number), "$select": "number"})
        rows = await self._all(f"{await self._company_url()}/accounts{query}", resource="accounts")
        return bool(rows)

    # -- customers -----------------------------------------------------------------------------

    async def find_customer(self, number: str) -> Customer | None:
        """``GET COMPANY/customers?$filter=number eq '{number}'``."""
        query = query_string({"$filter": eq_filter(number=number)})
        url = f"{await self._company_url()}/customers{query}"
        rows = await self._all(url, resource="customers")
        return Customer.from_row(rows[0]) if rows else None

    async def create_customer(self, payload: Mapping[str, Any]) -> Customer:
        """``POST COMPANY/customers`` with BC field names (``number``, ``displayName``, …)."""
        data = await self._request(
            "POST", f"{await self._company_url()}/customers", resource="customers", body=payload
        )
        return Customer.from_row(data or {})

    async def update_customer(
        self, customer_id: str, etag: str, payload: Mapping[str, Any]
    ) -> Customer:
        """``PATCH COMPANY/customers({id})`` with ``If-Match: {etag}`` (409 → :class:`BcConflict`:
        re-read and retry)."""
        data = await self._request(
            "PATCH",
            f"{await self._company_url()}/customers({guid(customer_id)})",
            resource="customers",
            body=payload,
            headers={"If-Match": etag or "*"},
        )
        return Customer.from_row(data or {})

    async def set_customer_posting_groups(
        self, number: str, gen_bus_posting_group: str, customer_posting_group: str
    ) -> CustomerCard:
        """``PATCH ODATA/CustomerCard('{number}')`` (ODataV4, ``If-Match: *``)."""
        return await self._page_call(
            self.pages.set_customer_posting_groups(
                number, gen_bus_posting_group, customer_posting_group
            )
        )

    async def payment_terms(self) -> list[PaymentTerms]:
        """``GET COMPANY/paymentTerms`` (to map Moment's terms to ``paymentTermsId``)."""
        rows = await self._all(f"{await self._company_url()}/paymentTerms", resource="paymentTerms")
        return [PaymentTerms.from_row(r) for r in rows]

    # -- sales documents (invoices and credit memos) ------------------------------------------

    def _find_query(self, docs: DocumentSet, external_document_number: str, customer: str) -> str:
        flt = eq_filter(externalDocumentNumber=external_document_number, customerNumber=customer)
        # The lines and their dimensions come along, so a draft is resumed without more reads.
        return query_string(
            {"$filter": flt, "$expand": f"{docs.lines_set}($expand=dimensionSetLines)"}
        )

    async def _find_documents(
        self, docs: DocumentSet, external_document_number: str, customer_number: str
    ) -> list[dict[str, Any]]:
        query = self._find_query(docs, external_document_number, customer_number)
        url = f"{await self._company_url()}/{docs.entity_set}{query}"
        return await self._all(url, resource=docs.entity_set)

    async def _create_document(
        self, docs: DocumentSet, payload: Mapping[str, Any]
    ) -> dict[str, Any]:
        data = await self._request(
            "POST",
            f"{await self._company_url()}/{docs.entity_set}?$expand={docs.lines_set}",
            resource=docs.entity_set,
            body=payload,
        )
        return dict(data or {})

    async def _get_document(self, docs: DocumentSet, document_id: str) -> dict[str, Any]:
        data = await self._request(
            "GET",
            f"{await self._company_url()}/{docs.entity_set}({guid(document_id)})",
            resource=docs.entity_set,
        )
        return dict(data or {})

    async def _document_lines(self, docs: DocumentSet, document_id: str) -> list[SalesInvoiceLine]:
        url = f"{await self._company_url()}/{docs.entity_set}({guid(document_id)})/{docs.lines_set}"
        rows = await self._all(url, resource=docs.lines_set)
        return [SalesInvoiceLine.from_row(r) for r in rows]

    async def _post_document(self, docs: DocumentSet, document_id: str) -> None:
        await self._request(
            "POST",
            f"{await self._company_url()}/{docs.entity_set}({guid(document_id)})"
            "/Microsoft.NAV.post",
            resource=f"{docs.entity_set}/Microsoft.NAV.post",
        )

    # -- sales invoices ------------------------------------------------------------------------

    async def find_sales_invoice(
        self, external_document_number: str, customer_number: str
    ) -> SalesInvoice | None:
        """``GET COMPANY/salesInvoices?$filter=externalDocumentNumber eq '…' and customerNumber eq
        '…'`` with the lines and their dimensions (the number must be upper case: Code fields
        are stored so, bc-api Corrections 8). Several matches: one that is surely posted wins,
        then an ``Open`` one (posted or released), then ``In Review``, then a draft."""
        rows = await self._find_documents(SALES_INVOICES, external_document_number, customer_number)
        return _furthest([SalesInvoice.from_row(r) for r in rows])

    async def create_sales_invoice(self, payload: Mapping[str, Any]) -> SalesInvoice:
        """``POST COMPANY/salesInvoices``: the draft with its ``salesInvoiceLines`` (deep insert).

        The answer carries the new lines (``$expand=salesInvoiceLines``), whose ids the line
        dimensions need. Not repeated in process after an ambiguous failure (timeout, 502/504):
        the caller finds the draft by external document number and resumes it.
        """
        return SalesInvoice.from_row(await self._create_document(SALES_INVOICES, payload))

    async def get_sales_invoice(self, invoice_id: str) -> SalesInvoice:
        """``GET COMPANY/salesInvoices({id})``: status and (after posting) the posted number."""
        return SalesInvoice.from_row(await self._get_document(SALES_INVOICES, invoice_id))

    async def delete_sales_invoice(self, invoice_id: str) -> None:
        """``DELETE COMPANY/salesInvoices({id})`` (a draft, ``If-Match: *``); already gone is
        fine (the delete is repeated after an ambiguous failure)."""
        try:
            await self._request(
                "DELETE",
                f"{await self._company_url()}/salesInvoices({guid(invoice_id)})",
                resource="salesInvoices",
                headers={"If-Match": "*"},
            )
        except BcNotFound as exc:
            if isinstance(exc, BcEnvironmentNotFound | BcCompanyNotFound):
                raise
            log.info("bc.sales_invoice_already_deleted", invoice_id=invoice_id)

    async def sales_invoice_lines(self, invoice_id: str) -> list[SalesInvoiceLine]:
        """``GET COMPANY/salesInvoices({id})/salesInvoiceLines``: the line ids of a draft."""
        return await self._document_lines(SALES_INVOICES, invoice_id)

    async def post_sales_invoice(self, invoice_id: str) -> None:
        """``POST COMPANY/salesInvoices({id})/Microsoft.NAV.post`` (then read it back with
        :meth:`get_sales_invoice` for the posted number)."""
        await self._post_document(SALES_INVOICES, invoice_id)

    # -- sales credit memos --------------------------------------------------------------------

    async def find_sales_credit_memo(
        self, external_document_number: str, customer_number: str
    ) -> SalesCreditMemo | None:
        """``GET COMPANY/salesCreditMemos?$filter=externalDocumentNumber eq '…' and customerNumber
        eq '…'`` with the lines and their dimensions; several matches as
        :meth:`find_sales_invoice`."""
        rows = await self._find_documents(
            SALES_CREDIT_MEMOS, external_document_number, customer_number
        )
        return _furthest([SalesCreditMemo.from_row(r) for r in rows])

    async def find_sales_credit_memo_and_invoices(
        self, external_document_number: str, customer_number: str, invoice_external_number: str
    ) -> tuple[SalesCreditMemo | None, list[SalesInvoice]]:
        """The credit memo (as :meth:`find_sales_credit_memo`) and the sales invoices whose
        external document number is ``invoice_external_number``, of any customer, furthest
        towards posted first, in one ``$batch`` of two GETs (so a credit note applied to an
        invoice stays within 5 requests)."""
        company = f"companies({await self.company_id()})"
        memo_query = self._find_query(SALES_CREDIT_MEMOS, external_document_number, customer_number)
        invoice_query = query_string(
            {"$filter": eq_filter(externalDocumentNumber=invoice_external_number)}
        )
        operations = [
            BatchOperation("GET", f"{company}/{SALES_CREDIT_MEMOS.entity_set}{memo_query}"),
            BatchOperation("GET", f"{company}/{SALES_INVOICES.entity_set}{invoice_query}"),
        ]
        results = await self._batch(operations)
        for result in results:
            if result.error is not None:
                raise self._specific(result.error)
        memo_rows, invoice_rows = (_rows(result.body) for result in results)
        memos = [SalesCreditMemo.from_row(r) for r in memo_rows]
        invoices = sorted((SalesInvoice.from_row(r) for r in invoice_rows), key=_posting_rank)
        return _furthest(memos), invoices

    async def create_sales_credit_memo(self, payload: Mapping[str, Any]) -> SalesCreditMemo:
        """``POST COMPANY/salesCreditMemos`` with its ``salesCreditMemoLines`` (deep insert; the
        answer carries the new lines). Not repeated in process after an ambiguous failure, as
        :meth:`create_sales_invoice`."""
        return SalesCreditMemo.from_row(await self._create_document(SALES_CREDIT_MEMOS, payload))

    async def get_sales_credit_memo(self, credit_memo_id: str) -> SalesCreditMemo:
        """``GET COMPANY/salesCreditMemos({id})``: status, the posted number, the invoice."""
        return SalesCreditMemo.from_row(
            await self._get_document(SALES_CREDIT_MEMOS, credit_memo_id)
        )

    async def sales_credit_memo_lines(self, credit_memo_id: str) -> list[SalesInvoiceLine]:
        """``GET COMPANY/salesCreditMemos({id})/salesCreditMemoLines``."""
        return await self._document_lines(SALES_CREDIT_MEMOS, credit_memo_id)

    async def post_sales_credit_memo(self, credit_memo_id: str) -> None:
        """``POST COMPANY/salesCreditMemos({id})/Microsoft.NAV.post``."""
        await self._post_document(SALES_CREDIT_MEMOS, credit_memo_id)

    async def set_line_dimensions(
        self,
        items: Sequence[LineDimension | tuple[str, str, str]],
        *,
        lines_set: str = SALES_INVOICES.lines_set,
    ) -> LineDimensionResult:
        """Set dimension values on sales document lines in ``$batch`` requests (≤ 100 each).

        Each item is ``(line_id, dimension_code, value_code)``. First ``POST
        {lines_set}({line})/dimensionSetLines`` (``salesInvoiceLines``, or
        ``salesCreditMemoLines``); where the line already has that dimension (e.g. from the
        customer's defaults) ``PATCH …/dimensionSetLines({dimensionId})`` with ``If-Match: *``.
        Safe to repeat. Raises the first failure (a transient one first).
        """
        wanted = [i if isinstance(i, LineDimension) else LineDimension(*i) for i in items]
        if not wanted:
            return LineDimensionResult(0, 0)
        company = f"companies({await self.company_id()})"
        posts = [
            BatchOperation(
                "POST",
                f"{company}/{lines_set}({guid(w.line_id)})/dimensionSetLines",
                {"code": w.dimension_code, "valueCode": w.value_code},
            )
            for w in wanted
        ]
        created = 0
        failures: list[BcError] = []
        patches: list[BatchOperation] = []
        for want, result in zip(wanted, await self._batch(posts), strict=True):
            if result.ok:
                created += 1
            elif _already_exists(result):
                dim_id = await self._dimension_id(want.dimension_code)
                patches.append(
                    BatchOperation(
                        "PATCH",
                        f"{company}/{lines_set}({guid(want.line_id)})"
                        f"/dimensionSetLines({guid(dim_id)})",
                        {"valueCode": want.value_code},
                        {"If-Match": "*"},
                    )
                )
            elif result.error is not None:
                failures.append(result.error)
        updated = 0
        for result in await self._batch(patches):
            if result.ok:
                updated += 1
            elif result.error is not None:
                failures.append(result.error)
        if failures:
            transient = [f for f in failures if f.transient]
            raise (transient or failures)[0]
        return LineDimensionResult(created, updated)

    async def _batch(self, operations: Sequence[BatchOperation]) -> list[BatchResult]:
        results: list[BatchResult] = []
        for chunk in chunks(operations):
            data = await self._request(
                "POST",
                f"{self.api_url}/$batch",
                resource="$batch",
                body=batch_body(chunk),
                idempotent=True,  # callers only batch operations that are safe to repeat
            )
            results.extend(batch_results(chunk, data if isinstance(data, Mapping) else {}))
        return results

    # -- purchase invoices (expense import) ----------------------------------------------------

    async def purchase_invoices_since(
        self,
        from_date: date,
        watermark: datetime | None = None,
        *,
        page_size: int | None = None,
    ) -> AsyncIterator[PurchaseInvoicePage]:
        """Posted purchase invoices with ``postingDate ge from_date`` and ``lastModifiedDateTime
        gt watermark``, lines and their dimensions expanded, one page at a time (nextLink)."""
        flt = all_of(
            cond("postingDate", "ge", from_date),
            cond("lastModifiedDateTime", "gt", watermark) if watermark else None,
        )
        query = query_string(
            {"$filter": flt, "$expand": "purchaseInvoiceLines($expand=dimensionSetLines)"}
        )
        url = f"{await self._company_url()}/purchaseInvoices{query}"
        async for rows in self._pages(url, resource="purchaseInvoices", page_size=page_size):
            invoices = [PurchaseInvoice.from_row(r) for r in rows]
            stamps = [i.last_modified for i in invoices if i.last_modified is not None]
            yield PurchaseInvoicePage(
                tuple(i for i in invoices if i.is_posted), max(stamps) if stamps else None
            )

    async def purchase_invoice_statuses(self, invoice_ids: Sequence[str]) -> list[PurchaseInvoice]:
        """``GET COMPANY/purchaseInvoices?$filter=id eq A or id eq B …&$select=id,number,status,
        lastModifiedDateTime``: the current status of these invoices, in one request (``or`` on
        one field is allowed, bc-api §5.4); an id BC does not know is left out."""
        ids = [guid(i) for i in invoice_ids]
        if not ids:
            return []
        query = query_string(
            {
                "$filter": one_of("id", [Guid(i) for i in ids]),
                "$select": "id,number,status,lastModifiedDateTime",
            }
        )
        url = f"{await self._company_url()}/purchaseInvoices{query}"
        rows = await self._all(url, resource="purchaseInvoices")
        return [PurchaseInvoice.from_row(r) for r in rows]

    # -- sales invoice balances (payment import) -----------------------------------------------

    async def sales_invoice_changes(
        self,
        from_date: date,
        since: datetime | None = None,
        *,
        statuses: Sequence[str] = ("Open", "Paid"),
        page_size: int | None = None,
    ) -> AsyncIterator[list[SalesInvoiceBalance]]:
        """Sales invoices posted on or after ``from_date`` whose ``lastModifiedDateTime`` is
        after ``since`` and whose status is one of ``statuses``, one page at a time (nextLink).
        BC updates ``lastModifiedDateTime`` when a posted invoice's status changes (Paid, or
        back to Open), not when a partial payment lowers its remaining amount."""
        flt = all_of(
            cond("postingDate", "ge", from_date),
            cond("lastModifiedDateTime", "gt", since) if since else None,
            one_of("status", statuses),
        )
        query = query_string({"$filter": flt, "$select": ",".join(SalesInvoiceBalance.FIELDS)})
        url = f"{await self._company_url()}/salesInvoices{query}"
        async for rows in self._pages(url, resource="salesInvoices", page_size=page_size):
            yield [SalesInvoiceBalance.from_row(r) for r in rows]

    async def sales_invoice_balances(
        self, invoice_ids: Sequence[str]
    ) -> AsyncIterator[tuple[list[str], list[SalesInvoiceBalance]]]:
        """Re-read these sales invoices by id, :data:`MAX_OR_TERMS` ids a request
        (``$filter=id eq … or id eq …`` with the few fields of :class:`SalesInvoiceBalance`);
        yields each request's ids and the invoices BC returned for them."""
        company_url = await self._company_url()
        for chunk in chunks([guid(i) for i in invoice_ids], MAX_OR_TERMS):
            flt = one_of("id", [Guid(i) for i in chunk])
            query = query_string({"$filter": flt, "$select": ",".join(SalesInvoiceBalance.FIELDS)})
            rows = await self._all(f"{company_url}/salesInvoices{query}", resource="salesInvoices")
            yield list(chunk), [SalesInvoiceBalance.from_row(r) for r in rows]

    # -- posted sales documents (reconciliation, read-only) -----------------------------------

    def _posted_set(self, credit_memos: bool) -> tuple[str, tuple[str, ...]]:
        if credit_memos:
            return "salesCreditMemos", POSTED_CREDIT_MEMO_STATUSES
        return "salesInvoices", POSTED_INVOICE_STATUSES

    async def posted_documents(
        self,
        from_date: date,
        to_date: date,
        *,
        credit_memos: bool = False,
        page_size: int | None = None,
    ) -> AsyncIterator[list[PostedDocument]]:
        """Posted sales invoices (or credit memos) with a ``postingDate`` from ``from_date`` to
        ``to_date`` (both included), the few fields of :class:`PostedDocument`, one page at a
        time (nextLink)."""
        entity, statuses = self._posted_set(credit_memos)
        flt = all_of(
            cond("postingDate", "ge", from_date),
            cond("postingDate", "le", to_date),
            one_of("status", statuses),
        )
        query = query_string({"$filter": flt, "$select": ",".join(PostedDocument.FIELDS)})
        url = f"{await self._company_url()}/{entity}{query}"
        async for rows in self._pages(url, resource=entity, page_size=page_size):
            yield [PostedDocument.from_row(r) for r in rows]

    async def posted_documents_by_number(
        self, external_numbers: Sequence[str], *, credit_memos: bool = False
    ) -> AsyncIterator[list[PostedDocument]]:
        """Posted sales invoices (or credit memos) with these external document numbers, any
        posting date; :data:`MAX_OR_TERMS` numbers a request."""
        entity, statuses = self._posted_set(credit_memos)
        company_url = await self._company_url()
        for chunk in chunks(list(external_numbers), MAX_OR_TERMS):
            flt = all_of(one_of("externalDocumentNumber", chunk), one_of("status", statuses))
            query = query_string({"$filter": flt, "$select": ",".join(PostedDocument.FIELDS)})
            rows = await self._all(f"{company_url}/{entity}{query}", resource=entity)
            yield [PostedDocument.from_row(r) for r in rows]

    async def probe_sales_invoices(self) -> None:
        """``GET COMPANY/salesInvoices?$top=1&$select=id``: the app may read sales invoices (the
        payment import's check on save)."""
        query = query_string({"$top": "1", "$select": "id"})
        await self._request(
            "GET", f"{await self._company_url()}/salesInvoices{query}", resource="salesInvoices"
        )


def _posting_rank(document: SalesDocument) -> int:
    """Sort key: the match furthest along towards posted first (stable among equals)."""
    if document.surely_posted:
        return 0
    if document.is_draft:
        return 3
    return 2 if document.in_review else 1


def _furthest(found: list[D]) -> D | None:
    """Of several documents with one external document number, the one furthest along."""
    return min(found, key=_posting_rank) if found else None


def _rows(body: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The ``value`` rows of a collection answer (inside a ``$batch``)."""
    value = (body or {}).get("value")
    return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


def _already_exists(result: BatchResult) -> bool:
    """The line has that dimension already: page 30022's RecordAlreadyExistErr (an AL Error(),
    so only its English label tells it), or a duplicate key."""
    err = result.error
    return err is not None and (
        err.code == SAME_KEY or is_dialog(err, Label.DIMENSION_SET_LINE_EXISTS)
    )
