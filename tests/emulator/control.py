"""Control API under ``/_emulator/`` (outside BC's URL space, no auth): seed, inspect, fault, limit.

Every endpoint speaks JSON; errors are ``{"error": "<text>"}`` with 400 (bad input) or 404
(unknown tenant/environment/company/item). Documented in README.md.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import documents as docs
from . import entra
from .bc_api import (
    CustomersColl,
    DimensionsColl,
    DimensionValuesColl,
    LinesColl,
    PaymentTermsColl,
    PurchaseInvoicesColl,
    SalesCreditMemosColl,
    SalesInvoicesColl,
    TableColl,
)
from .entities import ACCOUNT, COMPANY_INFORMATION, GL_SETUP, parse_datetime
from .errors import BCError
from .payments import add_payment_routes
from .seeding import SeedError, add_purchase_invoice, apply_seed, set_service
from .store import Company, Row

if TYPE_CHECKING:
    from .app import Emulator


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except ValueError:
        raise ControlError(400, "body is not JSON") from None
    if not isinstance(data, dict):
        raise ControlError(400, "body must be a JSON object")
    return data


def find_company(emu: Emulator, body: dict[str, Any]) -> Company:
    tenant = emu.world.tenant(str(body.get("tenant", "")))
    if tenant is None:
        raise ControlError(404, f"unknown tenant {body.get('tenant')!r}")
    env = tenant.environment(str(body.get("environment", "")))
    if env is None:
        raise ControlError(404, f"unknown environment {body.get('environment')!r}")
    company = env.by_name.get(str(body.get("company", "")))
    if company is None:
        raise ControlError(404, f"unknown company {body.get('company')!r}")
    return company


def _rendered(coll: Any, row: Row) -> dict[str, Any]:
    return {"@odata.etag": row.etag, **coll.render(row)}


def dump_company(c: Company) -> dict[str, Any]:
    customers = CustomersColl(c)
    invoices = SalesInvoicesColl(c)
    credit_memos = SalesCreditMemosColl(c)
    purchases = PurchaseInvoicesColl(c)

    def document(coll: Any, row: Row, sales: bool) -> dict[str, Any]:
        out = _rendered(coll, row)
        credit = docs.is_credit_memo(row)
        lines_key = (
            "salesCreditMemoLines"
            if credit
            else "salesInvoiceLines"
            if sales
            else "purchaseInvoiceLines"
        )
        lines_coll = LinesColl(c, row, sales=sales, credit=credit)
        out[lines_key] = [
            {
                **_rendered(lines_coll, line),
                "dimensionSetLines": [
                    docs.render_dimension(c, e) for e in c.dim_set.find_all("parentId", line.id)
                ],
            }
            for line in docs.lines_of(c, row.id, sales=sales)
        ]
        out["dimensionSetLines"] = [
            docs.render_dimension(c, e) for e in c.dim_set.find_all("parentId", row.id)
        ]
        if sales and row.data.get("_draftNumber"):
            out["draftNumber"] = row.data["_draftNumber"]
        if sales and not row.data.get("_posted"):
            out["documentStatus"] = row.data.get("_docStatus", docs.DOC_OPEN)
        if row.data.get("_creditedAmount"):
            # What posted credit memos applied to this invoice (GenJnlPostLine application):
            # its customer ledger entry's remaining amount is the total less this (and less
            # payments, where those are modelled).
            out["creditedAmount"] = row.data["_creditedAmount"]
        return out

    return {
        "id": c.id,
        "name": c.name,
        "displayName": c.display_name,
        "country": c.country,
        "currency": c.currency,
        "services": dict(c.services),
        "vat": dict(c.vat),
        "number_series_next": dict(c.series),
        "posting_requires_posting_groups": c.posting_requires_posting_groups,
        "sales_invoice_approval": c.sales_invoice_approval,
        "sales_credit_memo_approval": c.sales_credit_memo_approval,
        "generalLedgerSetup": [
            _rendered(TableColl(c, c.gl_setup, GL_SETUP, ""), r) for r in c.gl_setup
        ],
        "companyInformation": [
            _rendered(TableColl(c, c.company_information, COMPANY_INFORMATION, ""), r)
            for r in c.company_information
        ],
        "dimensions": [
            {
                **_rendered(DimensionsColl(c), d),
                "values": [
                    {**_rendered(DimensionValuesColl(c), v), "blocked": v.data["_blocked"]}
                    for v in DimensionValuesColl(c, d.id).rows()
                ],
            }
            for d in c.dimensions
        ],
        "genBusPostingGroups": [
            {"code": r.data["code"], "description": r.data["description"]} for r in c.gen_bus_groups
        ],
        "customerPostingGroups": [
            {"code": r.data["code"], "description": r.data["description"]}
            for r in c.customer_groups
        ],
        "vatBusPostingGroups": [
            {"id": r.id, "code": r.data["code"], "description": r.data["description"]}
            for r in c.vat_bus_groups
        ],
        "language": c.language,
        "customerNos": {"code": c.customer_nos, "manual": c.customer_nos_manual},
        "accounts": [
            {
                **_rendered(TableColl(c, c.gl_accounts, ACCOUNT, ""), r),
                "vatCode": r.data.get("_vatCode", ""),
            }
            for r in c.gl_accounts
        ],
        "paymentTerms": [_rendered(PaymentTermsColl(c), r) for r in c.payment_terms],
        "customers": [
            {
                **_rendered(customers, r),
                "genBusPostingGroup": r.data.get("_genBusPostingGroup", ""),
                "customerPostingGroup": r.data.get("_customerPostingGroup", ""),
                "vatBusPostingGroup": r.data.get("_vatBusPostingGroup", ""),
            }
            for r in c.customers
        ],
        "salesInvoices": [document(invoices, r, True) for r in c.sales_invoices],
        "salesCreditMemos": [document(credit_memos, r, True) for r in c.sales_credit_memos],
        "purchaseInvoices": [document(purchases, r, False) for r in c.purchase_invoices],
        "purchaseCreditMemos": [{"id": r.id, **r.data} for r in c.purchase_credit_memos],
    }


def dump_state(
    emu: Emulator, tenant: str | None, environment: str | None, company: str | None
) -> dict[str, Any]:
    out = []
    for t in emu.world.tenants.values():
        if tenant and emu.world.tenant(tenant) is not t:
            continue
        envs = []
        for e in t.environments.values():
            if environment and e.name.lower() != environment.lower():
                continue
            envs.append(
                {
                    "name": e.name,
                    "type": e.type,
                    "companies": [
                        dump_company(c)
                        for c in e.companies.values()
                        if not company or c.name == company
                    ],
                }
            )
        out.append(
            {
                "id": t.id,
                "domains": list(t.domains),
                # secrets are never returned
                "apps": [
                    {
                        "client_id": a.client_id,
                        "enabled_in_bc": a.enabled_in_bc,
                        "display_name": a.display_name,
                    }
                    for a in t.apps.values()
                ],
                "environments": envs,
            }
        )
    return {"tenants": out}


DELETE_KINDS = (
    "dimension",
    "dimension_value",
    "gen_bus_posting_group",
    "customer_posting_group",
    "gl_account",
    "payment_terms",
    "customer",
    "vat",
)


def delete_item(company: Company, kind: str, code: str, dimension: str | None) -> None:
    code_u = code.upper()
    if kind == "dimension":
        dim = company.dimension_by_code(code_u)
        if dim is None:
            raise ControlError(404, f"no dimension {code!r}")
        for v in company.dimension_values.find_all("dimensionId", dim.id):
            company.dimension_values.delete(v)
        company.dimensions.delete(dim)
        setup = next(iter(company.gl_setup))
        cleared = {
            k: ""
            for k, v in setup.data.items()
            if k.startswith("shortcutDimension") and v == code_u
        }
        if cleared:
            company.gl_setup.update(setup, cleared)
        return
    if kind == "dimension_value":
        dim = company.dimension_by_code(str(dimension or ""))
        val = company.dimension_value(dim.id, code_u) if dim else None
        if val is None:
            raise ControlError(404, f"no dimension value {dimension!r}/{code!r}")
        company.dimension_values.delete(val)
        return
    if kind == "vat":
        if company.vat.pop(code_u, None) is None:
            raise ControlError(404, f"no VAT code {code!r}")
        return
    table, key = {
        "gen_bus_posting_group": (company.gen_bus_groups, "code"),
        "customer_posting_group": (company.customer_groups, "code"),
        "gl_account": (company.gl_accounts, "number"),
        "payment_terms": (company.payment_terms, "code"),
        "customer": (company.customers, "number"),
    }[kind]
    row = table.find(key, code_u)
    if row is None:
        raise ControlError(404, f"no {kind} {code!r}")
    table.delete(row)


def find_sales_invoice(company: Company, body: dict[str, Any], *, credit: bool = False) -> Row:
    """By ``id`` or by ``external_document_number`` (as stored: upper case)."""
    table = company.sales_credit_memos if credit else company.sales_invoices
    if body.get("id"):
        row = table.get(str(body["id"]).lower())
    else:
        wanted = str(body.get("external_document_number", ""))
        row = next((r for r in table if r.data["externalDocumentNumber"] == wanted), None)
    if row is None:
        raise ControlError(404, f"no such sales {'credit memo' if credit else 'invoice'}")
    return row


def add_control_routes(app: web.Application, emu: Emulator) -> None:
    routes = web.RouteTableDef()

    def handler(fn: Any) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return await fn(request)  # type: ignore[no-any-return]
            except ControlError as e:
                return _ok({"error": e.message}, e.status)
            except (SeedError, ValueError) as e:
                return _ok({"error": str(e)}, 400)
            except BCError as e:  # BC refused the action itself (e.g. cancelling a paid invoice)
                return _ok({"error": e.message, "code": e.code}, e.status)

        return wrapped

    @routes.get("/_emulator/health")
    @handler
    async def health(request: web.Request) -> web.StreamResponse:
        return _ok({"ok": True, "ca_file": emu.ca_file})

    @routes.post("/_emulator/seed")
    @handler
    async def seed(request: web.Request) -> web.StreamResponse:
        return _ok(apply_seed(emu.world, await _body(request)))

    @routes.get("/_emulator/state")
    @handler
    async def state(request: web.Request) -> web.StreamResponse:
        q = request.query
        return _ok(dump_state(emu, q.get("tenant"), q.get("environment"), q.get("company")))

    @routes.get("/_emulator/requests")
    @handler
    async def requests(request: web.Request) -> web.StreamResponse:
        q = request.query
        tenant = emu.resolve_tenant_id(q.get("tenant"))
        entries = emu.log.query(
            tenant=tenant,
            path=q.get("path"),
            method=q.get("method"),
            since=int(q.get("since", "0")),
            limit=int(q["limit"]) if "limit" in q else None,
        )
        return _ok({"requests": entries})

    @routes.delete("/_emulator/requests")
    @handler
    async def clear_requests(request: web.Request) -> web.StreamResponse:
        emu.log.clear()
        return _ok({"ok": True})

    @routes.get("/_emulator/stats")
    @handler
    async def stats(request: web.Request) -> web.StreamResponse:
        return _ok({"subjects": emu.limiter.all_stats()})

    @routes.post("/_emulator/reset")
    @handler
    async def reset(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        tenant = body.get("tenant")
        if tenant:
            tid = emu.resolve_tenant_id(str(tenant))
            assert tid is not None
            emu.world.remove_tenant(tid)
            emu.limiter.reset(tid)
            emu.log.clear(tid)
        else:
            emu.world.reset()
            emu.limiter.reset()
            emu.log.clear()
            emu.faults.clear()
            emu.faults.reseed(0)
            defaults = type(emu.limits)()
            emu.limits.update(defaults.as_dict())
            emu.log.resize(emu.limits.request_log_size)
        return _ok({"ok": True})

    @routes.get("/_emulator/faults")
    @handler
    async def list_faults(request: web.Request) -> web.StreamResponse:
        return _ok({"faults": [r.as_dict() for r in emu.faults.rules]})

    @routes.post("/_emulator/faults")
    @handler
    async def add_fault(request: web.Request) -> web.StreamResponse:
        rule = emu.faults.add(await _body(request))
        return _ok(rule.as_dict(), 201)

    @routes.delete("/_emulator/faults")
    @handler
    async def clear_faults(request: web.Request) -> web.StreamResponse:
        emu.faults.clear()
        return _ok({"ok": True})

    @routes.delete("/_emulator/faults/{id}")
    @handler
    async def delete_fault(request: web.Request) -> web.StreamResponse:
        if not emu.faults.remove(int(request.match_info["id"])):
            raise ControlError(404, "no such fault")
        return _ok({"ok": True})

    @routes.get("/_emulator/limits")
    @handler
    async def get_limits(request: web.Request) -> web.StreamResponse:
        return _ok(emu.limits.as_dict())

    @routes.patch("/_emulator/limits")
    @handler
    async def set_limits(request: web.Request) -> web.StreamResponse:
        emu.limits.update(await _body(request))
        emu.log.resize(emu.limits.request_log_size)
        return _ok(emu.limits.as_dict())

    @routes.post("/_emulator/delete")
    @handler
    async def delete(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        kind = body.get("kind")
        if kind not in DELETE_KINDS:
            raise ControlError(400, f"kind must be one of {DELETE_KINDS}")
        delete_item(
            find_company(emu, body), str(kind), str(body.get("code", "")), body.get("dimension")
        )
        return _ok({"ok": True})

    @routes.post("/_emulator/services")
    @handler
    async def services(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        company = find_company(emu, body)
        published = bool(body.get("published", True))
        set_service(
            company, str(body.get("service", "")), body.get("page", True) if published else False
        )
        return _ok({"services": dict(company.services)})

    @routes.post("/_emulator/purchase_invoices")
    @handler
    async def purchase_invoice(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        company = find_company(emu, body)
        row = add_purchase_invoice(company, body.get("invoice"), "invoice")
        lines = docs.lines_of(company, row.id, sales=False)
        return _ok(
            {"id": row.id, "number": row.data["number"], "line_ids": [ln.id for ln in lines]}, 201
        )

    @routes.post("/_emulator/sales_invoices/status")
    @handler
    async def sales_invoice_status(request: web.Request) -> web.StreamResponse:
        """Release, reopen or send for approval an unposted invoice, as a person does in BC."""
        body = await _body(request)
        company = find_company(emu, body)
        row = find_sales_invoice(company, body)
        docs.set_document_status(company, row, str(body.get("status", "")))
        return _ok(_rendered(SalesInvoicesColl(company), row))

    @routes.post("/_emulator/sales_credit_memos/status")
    @handler
    async def sales_credit_memo_status(request: web.Request) -> web.StreamResponse:
        """The same for an unposted credit memo."""
        body = await _body(request)
        company = find_company(emu, body)
        row = find_sales_invoice(company, body, credit=True)
        docs.set_document_status(company, row, str(body.get("status", "")))
        return _ok(_rendered(SalesCreditMemosColl(company), row))

    @routes.post("/_emulator/approvals")
    @handler
    async def approvals(request: web.Request) -> web.StreamResponse:
        """Enable or disable the sales invoice / credit memo approval workflows of a company."""
        body = await _body(request)
        company = find_company(emu, body)
        if "sales_invoices" in body:
            company.sales_invoice_approval = bool(body["sales_invoices"])
        if "sales_credit_memos" in body:
            company.sales_credit_memo_approval = bool(body["sales_credit_memos"])
        return _ok(
            {
                "sales_invoices": company.sales_invoice_approval,
                "sales_credit_memos": company.sales_credit_memo_approval,
            }
        )

    @routes.post("/_emulator/purchase_invoices/cancel")
    @handler
    async def cancel_purchase_invoice(request: web.Request) -> web.StreamResponse:
        """BC's "Cancel" on a posted purchase invoice (documents.cancel_purchase_invoice):
        ``{tenant, environment, company, number | id, modified_at?}``."""
        body = await _body(request)
        company = find_company(emu, body)
        table = company.purchase_invoices
        row = table.get(str(body["id"]).lower()) if body.get("id") else None
        if row is None and body.get("number"):
            row = table.find("number", str(body["number"]).upper())
        if row is None:
            raise ControlError(404, "no purchase invoice with that number or id")
        modified_at = None
        if body.get("modified_at") is not None:
            modified_at = parse_datetime(str(body["modified_at"]))
            if modified_at is None:
                raise ControlError(400, "modified_at: not an ISO datetime with zone")
        with company.tx.transaction():
            memo = docs.cancel_purchase_invoice(company, row, modified_at=modified_at)
        return _ok(
            {
                "id": row.id,
                "number": row.data["number"],
                "status": row.data["status"],
                "lastModifiedDateTime": row.data["lastModifiedDateTime"],
                "credit_memo": memo.data["number"],
            }
        )

    @routes.post("/_emulator/apps")
    @handler
    async def apps(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        tenant = emu.world.tenant(str(body.get("tenant", "")))
        if tenant is None:
            raise ControlError(404, f"unknown tenant {body.get('tenant')!r}")
        app = tenant.apps.get(str(body.get("client_id", "")).lower())
        if app is None:
            raise ControlError(404, f"unknown app {body.get('client_id')!r}")
        if "enabled_in_bc" in body:
            app.enabled_in_bc = bool(body["enabled_in_bc"])
        if "secret" in body:
            app.secret = str(body["secret"])
        return _ok({"client_id": app.client_id, "enabled_in_bc": app.enabled_in_bc})

    @routes.post("/_emulator/expire_tokens")
    @handler
    async def expire(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        tid = emu.resolve_tenant_id(str(body.get("tenant", "")))
        if tid is None or tid not in emu.world.tenants:
            raise ControlError(404, f"unknown tenant {body.get('tenant')!r}")
        return _ok({"expired": entra.expire_tokens(emu.world, tid)})

    app.router.add_routes(routes)
    add_payment_routes(app, emu)
