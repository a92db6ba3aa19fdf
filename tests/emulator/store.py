"""In-memory state: tenants, apps, environments, companies and their tables.

Every mutation goes through :class:`Table`, which keeps dict indexes (no scans for key or
``eq`` lookups) and, while a transaction is open, an undo log. Each BC request runs as one
transaction, as in BC; ``$batch`` with ``Isolation: snapshot`` runs all its operations in one.
Handlers are synchronous, so a transaction never interleaves with another request.
"""

from __future__ import annotations

import base64
import itertools
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .entities import EMPTY_DATETIME, EMPTY_GUID, now_iso

Undo = Callable[[], None]


class Tx:
    """Holds the undo log of the open transaction (at most one: handlers are synchronous)."""

    def __init__(self) -> None:
        self.log: list[Undo] | None = None

    def record(self, undo: Undo) -> None:
        if self.log is not None:
            self.log.append(undo)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run a block atomically: on any exception, undo its changes and re-raise."""
        if self.log is not None:  # nested: the outer transaction owns the log
            yield
            return
        self.log = []
        try:
            yield
        except BaseException:
            log, self.log = self.log, None
            for undo in reversed(log):
                undo()
            raise
        self.log = None


class Versions:
    """Row versions → ETags shaped like BC's (``W/"base64('<n>;<rowversion>;00;')"``)."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def etag(self) -> str:
        rv = f"{next(self._counter):019d}1"
        raw = f"'{len(rv)};{rv};00;'".encode()
        return 'W/"' + base64.b64encode(raw).decode() + '"'


@dataclass(slots=True)
class Row:
    id: str
    data: dict[str, Any]
    etag: str
    seq: int


class Table:
    """Rows by id in insertion order, with unique and multi-value indexes on data keys."""

    def __init__(
        self,
        name: str,
        tx: Tx,
        versions: Versions,
        *,
        unique: Iterable[str] = (),
        multi: Iterable[str] = (),
        modified_field: str | None = "lastModifiedDateTime",
    ) -> None:
        self.name = name
        self.tx = tx
        self.versions = versions
        self.rows: dict[str, Row] = {}
        self.unique: dict[str, dict[Any, str]] = {k: {} for k in unique}
        self.multi: dict[str, dict[Any, dict[str, None]]] = {k: {} for k in multi}
        self.modified_field = modified_field
        self._seq = itertools.count(1)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(list(self.rows.values()))

    def get(self, row_id: str) -> Row | None:
        return self.rows.get(row_id)

    def find(self, key: str, value: Any) -> Row | None:
        row_id = self.unique[key].get(value)
        return None if row_id is None else self.rows[row_id]

    def find_all(self, key: str, value: Any) -> list[Row]:
        if key in self.unique:
            row = self.find(key, value)
            return [] if row is None else [row]
        ids = self.multi[key].get(value, {})
        return [self.rows[i] for i in ids]

    def indexed(self, key: str) -> bool:
        return key in self.unique or key in self.multi

    # -- index upkeep

    def _index(self, row: Row) -> None:
        for k, idx in self.unique.items():
            if k in row.data:
                idx[row.data[k]] = row.id
        for k, midx in self.multi.items():
            if k in row.data:
                midx.setdefault(row.data[k], {})[row.id] = None

    def _unindex(self, row: Row) -> None:
        for k, idx in self.unique.items():
            v = row.data.get(k)
            if idx.get(v) == row.id:
                del idx[v]
        for k, midx in self.multi.items():
            ids = midx.get(row.data.get(k))
            if ids is not None:
                ids.pop(row.id, None)
                if not ids:
                    del midx[row.data.get(k)]

    # -- mutations (journaled)

    def insert(self, data: dict[str, Any], row_id: str | None = None) -> Row:
        given = data.get("id")
        if not given or given == EMPTY_GUID:
            given = None
        rid = row_id or given or str(uuid.uuid4())
        if given is None:
            data["id"] = rid
        if self.modified_field and data.get(self.modified_field) in (None, EMPTY_DATETIME):
            data[self.modified_field] = now_iso()
        row = Row(rid, data, self.versions.etag(), next(self._seq))
        self.rows[rid] = row
        self._index(row)
        self.tx.record(lambda: self._undo_insert(row))
        return row

    def _undo_insert(self, row: Row) -> None:
        self._unindex(row)
        self.rows.pop(row.id, None)

    def update(self, row: Row, changes: dict[str, Any], *, touch: bool = True) -> None:
        old_data, old_etag = dict(row.data), row.etag
        self._unindex(row)
        row.data.update(changes)
        if touch and self.modified_field:
            row.data[self.modified_field] = now_iso()
        row.etag = self.versions.etag()
        self._index(row)
        self.tx.record(lambda: self._undo_update(row, old_data, old_etag))

    def _undo_update(self, row: Row, data: dict[str, Any], etag: str) -> None:
        self._unindex(row)
        row.data.clear()
        row.data.update(data)
        row.etag = etag
        self._index(row)

    def delete(self, row: Row) -> None:
        self._unindex(row)
        del self.rows[row.id]
        self.tx.record(lambda: self._undo_delete(row))

    def _undo_delete(self, row: Row) -> None:
        self.rows[row.id] = row
        self._index(row)
        # keep insertion order (paging relies on seq order)
        self.rows = dict(sorted(self.rows.items(), key=lambda kv: kv[1].seq))

    def clear(self) -> None:
        self.rows.clear()
        for idx in self.unique.values():
            idx.clear()
        for midx in self.multi.values():
            midx.clear()


_TRAILING_DIGITS = re.compile(r"(\d+)(?!.*\d)")


def inc_str(value: str) -> str:
    """AL ``IncStr``: increment the last run of digits, keeping its width."""
    m = _TRAILING_DIGITS.search(value)
    if not m:
        return value + "1"
    digits = m.group(1)
    nxt = str(int(digits) + 1).zfill(len(digits))
    return value[: m.start(1)] + nxt + value[m.end(1) :]


DEFAULT_SERIES = {
    "customer": "K10000",
    "sales_invoice": "S-INV100001",
    "posted_sales_invoice": "103001",
    "sales_credit_memo": "S-CR100001",
    "posted_sales_credit_memo": "104001",
    "purchase_invoice": "P-INV100001",
    "posted_purchase_invoice": "108001",
    "posted_purchase_credit_memo": "109001",
}

# ODataV4 page kinds and the service names the worker uses by default (bc-contract.md).
PAGE_KINDS = {
    "DimensionValues": "DimensionValues",
    "537": "DimensionValues",
    "CustomerCard": "CustomerCard",
    "21": "CustomerCard",
    "GenBusinessPostingGroups": "GenBusinessPostingGroups",
    "312": "GenBusinessPostingGroups",
    "CustomerPostingGroups": "CustomerPostingGroups",
    "110": "CustomerPostingGroups",
}


@dataclass(frozen=True)
class PostCodeEntry:
    """A row of BC's "Post Code" table (Foundation/Address/PostCode.Table.al)."""

    code: str  # Code[20]
    city: str  # Text[30]
    country: str  # Code[10]
    county: str = ""

    @property
    def search_city(self) -> str:  # "Search City" Code[30]: the city upper-cased
        return self.city.upper()


class Company:
    """One BC company with its tables."""

    def __init__(self, env: Environment, name: str, company_id: str | None = None) -> None:
        world = env.tenant.world
        tx, ver = world.tx, world.versions
        self.env = env
        self.id = company_id or str(uuid.uuid4())
        self.name = name
        self.display_name = name
        self.business_profile_id = ""
        self.created_at = now_iso()
        self.modified_at = self.created_at
        self.country = ""
        self.currency = ""
        self.vat: dict[str, float] = {}
        self.currencies: dict[str, str] = {}  # currency code → its id (SystemId)
        # service name → page kind
        self.services: dict[str, str] = {}
        self.series: dict[str, str] = dict(DEFAULT_SERIES)  # series → next number
        self.posting_requires_posting_groups = True
        # An approval workflow for sales invoices is enabled ("Sales Invoice Approval Workflow"):
        # an Open draft cannot be posted before it is approved (ApprovalsMgmt.Codeunit.al).
        self.sales_invoice_approval = False
        # The language of the app's BC user (User Settings): BC formats DateFormula values in it
        # (languages.py). "en-US" unless seeded.
        self.language = "en-US"
        # Sales & Receivables Setup "Customer Nos." and that No. Series' "Manual Nos."
        # (customer_rules.py, NoSeriesImpl.Codeunit.al TestManual).
        self.customer_nos = "KUND"
        self.customer_nos_manual = True
        # "VAT Registration No. Format" (table 381): country → formats in line order.
        self.vat_formats: dict[str, list[str]] = {}
        # "Post Code" (table 225), in its key order (Code, City).
        self.post_codes: list[PostCodeEntry] = []
        # The same for sales credit memos ("Sales Credit Memo Approval Workflow"): workflows are
        # per document type (WorkflowManagement.CanExecuteWorkflow on the Sales Header).
        self.sales_credit_memo_approval = False
        # "Config. Tmpl. Selection Rules" stand-in: country ("*" = any) → internal customer fields
        self.templates: list[tuple[str, dict[str, str]]] = []
        self.etag = world.versions.etag()

        def t(name: str, **kw: Any) -> Table:
            return Table(name, tx, ver, **kw)

        self.customers = t("Customer", unique=["number"])
        self.payment_terms = t("Payment Terms", unique=["code"])
        self.dimensions = t("Dimension", unique=["code"])
        # "_key" = "<dimensionId>|<code>"
        self.dimension_values = t("Dimension Value", unique=["_key"], multi=["dimensionId"])
        self.gl_accounts = t("G/L Account", unique=["number"])
        self.gen_bus_groups = t("Gen. Business Posting Group", unique=["code"], modified_field=None)
        self.customer_groups = t("Customer Posting Group", unique=["code"], modified_field=None)
        self.vat_bus_groups = t("VAT Business Posting Group", unique=["code"], modified_field=None)
        self.gl_setup = t("General Ledger Setup")
        self.company_information = t("Company Information")
        self.sales_invoices = t(
            "Sales Header",
            unique=["number"],
            multi=["externalDocumentNumber", "customerNumber", "status"],
        )
        # Credit memos: drafts (Sales Header, Document Type Credit Memo) and posted ones (Sales
        # Cr.Memo Header) in one set, like BC's "Sales Cr. Memo Entity Buffer". Their lines share
        # the Sales Line table with the invoices' (BC's Sales Line holds every document type).
        self.sales_credit_memos = t(
            "Sales Cr. Memo Entity Buffer",
            unique=["number"],
            multi=["externalDocumentNumber", "customerNumber", "status"],
        )
        self.sales_lines = t("Sales Line", multi=["documentId"], modified_field=None)
        self.purchase_invoices = t("Purchase Header", unique=["number"], multi=["status"])
        self.purchase_lines = t("Purchase Line", multi=["documentId"], modified_field=None)
        # Posted corrective credit memos of cancelled purchase invoices (control state only).
        self.purchase_credit_memos = t("Purch. Cr. Memo Hdr.", unique=["number"])
        # key "<parentId>:<dimensionId>"; data: parentId, parentType, id (dimension id), valueId
        self.dim_set = t("Dimension Set Entry", multi=["parentId"], modified_field=None)

    @property
    def tx(self) -> Tx:
        return self.env.tenant.world.tx

    def next_number(self, series: str) -> str:
        """Take the next number of a number series (journaled like any other write)."""
        current = self.series[series]
        self.series[series] = inc_str(current)

        def undo() -> None:
            self.series[series] = current

        self.tx.record(undo)
        return current

    def template_for(self, country: str) -> dict[str, str] | None:
        for rule_country, values in self.templates:
            if rule_country in ("*", country.upper()):
                return dict(values)
        return None

    def dimension_by_code(self, code: str) -> Row | None:
        return self.dimensions.find("code", code.upper())

    def dimension_value(self, dim_id: str, code: str) -> Row | None:
        return self.dimension_values.find("_key", f"{dim_id}|{code.upper()}")

    def service_page(self, service: str) -> str | None:
        return self.services.get(service)


class Environment:
    def __init__(self, tenant: Tenant, name: str, env_type: str = "Production") -> None:
        self.tenant = tenant
        self.name = name
        self.type = env_type
        self.companies: dict[str, Company] = {}  # by id
        self.by_name: dict[str, Company] = {}  # case-sensitive (bc-api §1.3)

    def add_company(self, name: str, company_id: str | None = None) -> Company:
        company = Company(self, name, company_id)
        self.companies[company.id] = company
        self.by_name[name] = company
        return company


@dataclass
class App:
    client_id: str
    secret: str
    enabled_in_bc: bool = True
    display_name: str = ""


@dataclass
class Tenant:
    world: World
    id: str
    domains: list[str] = field(default_factory=list)
    apps: dict[str, App] = field(default_factory=dict)
    environments: dict[str, Environment] = field(default_factory=dict)  # by lower-case name

    def environment(self, name: str) -> Environment | None:
        # Environment names in BC URLs are matched without regard to case (our choice).
        return self.environments.get(name.lower())


@dataclass
class Token:
    value: str
    tenant_id: str
    client_id: str
    expires_at: float  # time.monotonic()


class World:
    """Everything the emulator knows."""

    def __init__(self) -> None:
        self.tx = Tx()
        self.versions = Versions()
        self.tenants: dict[str, Tenant] = {}
        self.aliases: dict[str, str] = {}  # lower-case domain → tenant id
        self.tokens: dict[str, Token] = {}

    def tenant(self, ident: str) -> Tenant | None:
        """Look a tenant up by GUID (any case) or by one of its domain names."""
        key = ident.lower()
        t = self.tenants.get(key)
        if t is not None:
            return t
        tid = self.aliases.get(key)
        return None if tid is None else self.tenants.get(tid)

    def add_tenant(self, tenant_id: str) -> Tenant:
        t = Tenant(self, tenant_id.lower())
        self.tenants[t.id] = t
        return t

    def remove_tenant(self, tenant_id: str) -> None:
        t = self.tenants.pop(tenant_id, None)
        if t is None:
            return
        for d in t.domains:
            self.aliases.pop(d.lower(), None)
        for tok in [k for k, v in self.tokens.items() if v.tenant_id == tenant_id]:
            del self.tokens[tok]

    def reset(self) -> None:
        self.tenants.clear()
        self.aliases.clear()
        self.tokens.clear()

    def iter_companies(self) -> Iterator[Company]:
        for t in self.tenants.values():
            for e in t.environments.values():
                yield from e.companies.values()
