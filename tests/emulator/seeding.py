"""Apply a seed document (``POST /_emulator/seed``) to the world; format in README.md.

Seeding is additive and idempotent by key: tenants by id, apps by client id, environments by
name, companies by name, dimensions by code, values by (dimension, code), posting groups and
payment terms by code, G/L accounts and customers by number (their fields are updated),
purchase invoices by number (inserted once; an existing number is left alone).
Unknown keys are errors, so a typo in a test seed fails loudly.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from . import documents as docs
from .entities import (
    ACCOUNT,
    COMPANY_INFORMATION,
    CUSTOMER,
    CUSTOMER_BLOCKED,
    DIMENSION,
    EMPTY_GUID,
    GL_SETUP,
    GUID_RE,
    PAYMENT_TERM,
    escape_enum,
    norm_number,
    parse_datetime,
    valid_date,
)
from .errors import BCError
from .odatav4 import insert_dimension_value
from .store import PAGE_KINDS, App, Company, Environment, PostCodeEntry, Row, Tenant, World


class SeedError(ValueError):
    pass


def _keys(obj: Any, where: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise SeedError(f"{where}: expected an object")
    missing = required - set(obj)
    if missing:
        raise SeedError(f"{where}: missing {sorted(missing)}")
    unknown = set(obj) - required - optional
    if unknown:
        raise SeedError(
            f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(required | optional)}"
        )
    return obj


def _list(obj: Any, where: str) -> list[Any]:
    if obj is None:
        return []
    if not isinstance(obj, list):
        raise SeedError(f"{where}: expected a list")
    return obj


def _guid(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not GUID_RE.match(value):
        raise SeedError(f"{where}: not a GUID: {value!r}")
    return value.lower()


def _date(value: Any, where: str, default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str) or not valid_date(value):
        raise SeedError(f"{where}: not a date YYYY-MM-DD: {value!r}")
    return value


def apply_seed(world: World, seed: Any) -> dict[str, Any]:
    _keys(seed, "seed", set(), {"tenants"})
    summary: list[dict[str, Any]] = []
    for i, t in enumerate(_list(seed.get("tenants"), "tenants")):
        summary.append(_tenant(world, t, f"tenants[{i}]"))
    return {"tenants": summary}


def _tenant(world: World, spec: Any, where: str) -> dict[str, Any]:
    _keys(spec, where, {"id"}, {"domains", "apps", "environments"})
    tid = _guid(spec["id"], f"{where}.id")
    assert tid is not None
    tenant = world.tenants.get(tid) or world.add_tenant(tid)
    for d in _list(spec.get("domains"), f"{where}.domains"):
        if not isinstance(d, str) or "." not in d:
            raise SeedError(f"{where}.domains: not a domain name: {d!r}")
        other = world.aliases.get(d.lower())
        if other is not None and other != tid:
            raise SeedError(f"{where}.domains: {d!r} already belongs to tenant {other}")
        world.aliases[d.lower()] = tid
        if d not in tenant.domains:
            tenant.domains.append(d)
    for j, a in enumerate(_list(spec.get("apps"), f"{where}.apps")):
        _app(tenant, a, f"{where}.apps[{j}]")
    envs = []
    for j, e in enumerate(_list(spec.get("environments"), f"{where}.environments")):
        envs.append(_environment(tenant, e, f"{where}.environments[{j}]"))
    return {"id": tid, "domains": list(tenant.domains), "environments": envs}


def _app(tenant: Tenant, spec: Any, where: str) -> None:
    _keys(spec, where, {"client_id"}, {"secret", "enabled_in_bc", "display_name"})
    cid = _guid(spec["client_id"], f"{where}.client_id")
    assert cid is not None
    app = tenant.apps.get(cid)
    if app is None:
        if not isinstance(spec.get("secret"), str) or not spec["secret"]:
            raise SeedError(f"{where}: a new app needs a secret")
        app = tenant.apps[cid] = App(cid, spec["secret"])
    elif "secret" in spec:
        app.secret = str(spec["secret"])
    if "enabled_in_bc" in spec:
        app.enabled_in_bc = bool(spec["enabled_in_bc"])
    if "display_name" in spec:
        app.display_name = str(spec["display_name"])


def _environment(tenant: Tenant, spec: Any, where: str) -> dict[str, Any]:
    _keys(spec, where, {"name"}, {"type", "companies"})
    name = spec["name"]
    if not isinstance(name, str) or not name:
        raise SeedError(f"{where}.name: expected a non-empty string")
    env = tenant.environment(name)
    if env is None:
        env = tenant.environments[name.lower()] = Environment(
            tenant, name, spec.get("type", "Production")
        )
    companies = []
    for j, c in enumerate(_list(spec.get("companies"), f"{where}.companies")):
        company = _company(env, c, f"{where}.companies[{j}]")
        companies.append({"name": company.name, "id": company.id})
    return {"name": env.name, "companies": companies}


COMPANY_KEYS = {
    "id",
    "display_name",
    "country",
    "currency",
    "currency_symbol",
    "currencies",
    "company_information",
    "dimensions",
    "shortcut_dimensions",
    "gen_bus_posting_groups",
    "customer_posting_groups",
    "gl_accounts",
    "payment_terms",
    "vat",
    "services",
    "number_series",
    "customer_templates",
    "posting_requires_posting_groups",
    "sales_invoice_approval",
    "sales_credit_memo_approval",
    "customers",
    "purchase_invoices",
    "language",
    "customer_nos",
    "vat_bus_posting_groups",
    "vat_registration_formats",
    "post_codes",
}


def _company(env: Environment, spec: Any, where: str) -> Company:
    _keys(spec, where, {"name"}, COMPANY_KEYS)
    name = spec["name"]
    if not isinstance(name, str) or not name or len(name) > 30:
        raise SeedError(f"{where}.name: BC company names are 1..30 characters")
    company = env.by_name.get(name)
    if company is None:
        cid = _guid(spec.get("id"), f"{where}.id")
        if cid is not None and cid in env.companies:
            raise SeedError(f"{where}.id: {cid} is already used by {env.companies[cid].name!r}")
        company = env.add_company(name, cid)
        _init_setup(company)
    if "display_name" in spec:
        company.display_name = str(spec["display_name"])
    if "country" in spec:
        company.country = str(spec["country"]).upper()
    if "currency" in spec:
        company.currency = str(spec["currency"]).upper()
    ci = next(iter(company.company_information))
    gl = next(iter(company.gl_setup))
    company.company_information.update(
        ci,
        {
            "displayName": company.display_name,
            "country": company.country,
            "currencyCode": company.currency,
        },
    )
    gl_changes: dict[str, Any] = {"localCurrencyCode": company.currency}
    if "currency_symbol" in spec:
        gl_changes["localCurrencySymbol"] = str(spec["currency_symbol"])
    company.gl_setup.update(gl, gl_changes)
    if "company_information" in spec:
        info = spec["company_information"]
        if not isinstance(info, dict):
            raise SeedError(f"{where}.company_information: expected an object")
        for k in info:
            if k not in COMPANY_INFORMATION.by_name or k == "id":
                raise SeedError(f"{where}.company_information: unknown field {k!r}")
        company.company_information.update(ci, dict(info))
    for j, cur in enumerate(_list(spec.get("currencies"), f"{where}.currencies")):
        if isinstance(cur, str):
            cur = {"code": cur}
        _keys(cur, f"{where}.currencies[{j}]", {"code"}, {"id"})
        code = str(cur["code"]).upper()
        if not code or len(code) > 10 or code == company.currency:
            raise SeedError(f"{where}.currencies[{j}]: 1..10 characters, not the local currency")
        cur_id = _guid(cur.get("id"), f"{where}.currencies[{j}].id") or str(uuid.uuid4())
        company.currencies.setdefault(code, cur_id)
    for j, d in enumerate(_list(spec.get("dimensions"), f"{where}.dimensions")):
        _dimension(company, d, f"{where}.dimensions[{j}]")
    if "shortcut_dimensions" in spec:
        codes = _list(spec["shortcut_dimensions"], f"{where}.shortcut_dimensions")
        if len(codes) > 8:
            raise SeedError(f"{where}.shortcut_dimensions: at most 8")
        changes = {}
        for n in range(1, 9):
            code = str(codes[n - 1]).upper() if n <= len(codes) and codes[n - 1] else ""
            if code and company.dimension_by_code(code) is None:
                raise SeedError(f"{where}.shortcut_dimensions: dimension {code!r} is not seeded")
            changes[f"shortcutDimension{n}Code"] = code
        company.gl_setup.update(gl, changes)
    _customer_setup(company, spec, where)
    for j, g in enumerate(
        _list(spec.get("gen_bus_posting_groups"), f"{where}.gen_bus_posting_groups")
    ):
        _keys(
            g,
            f"{where}.gen_bus_posting_groups[{j}]",
            {"code"},
            {"description", "def_vat_bus_posting_group", "auto_insert_default"},
        )
        _upsert_code(
            company.gen_bus_groups,
            g["code"],
            {
                "description": g.get("description", ""),
                "defVatBusPostingGroup": str(g.get("def_vat_bus_posting_group", "")).upper(),
                # InitValue = true (GenBusinessPostingGroup.Table.al "Auto Insert Default")
                "autoInsertDefault": bool(g.get("auto_insert_default", True)),
            },
        )
    for j, g in enumerate(
        _list(spec.get("customer_posting_groups"), f"{where}.customer_posting_groups")
    ):
        _keys(
            g,
            f"{where}.customer_posting_groups[{j}]",
            {"code"},
            {"description", "receivables_account"},
        )
        _upsert_code(
            company.customer_groups,
            g["code"],
            {
                "description": g.get("description", ""),
                "receivablesAccount": str(g.get("receivables_account", "")),
            },
        )
    for j, a in enumerate(_list(spec.get("gl_accounts"), f"{where}.gl_accounts")):
        _account(company, a, f"{where}.gl_accounts[{j}]")
    for j, p in enumerate(_list(spec.get("payment_terms"), f"{where}.payment_terms")):
        _payment_terms(company, p, f"{where}.payment_terms[{j}]")
    if "vat" in spec:
        vat = spec["vat"]
        if not isinstance(vat, dict) or not all(isinstance(v, int | float) for v in vat.values()):
            raise SeedError(f"{where}.vat: expected an object of code → percent")
        company.vat.update({str(k).upper(): float(v) for k, v in vat.items()})
    if "services" in spec:
        services = spec["services"]
        if not isinstance(services, dict):
            raise SeedError(
                f"{where}.services: expected an object of service name → true/false/page"
            )
        for svc, val in services.items():
            set_service(company, svc, val, f"{where}.services")
    if "number_series" in spec:
        series = spec["number_series"]
        if not isinstance(series, dict) or not set(series) <= set(company.series):
            raise SeedError(f"{where}.number_series: keys must be among {sorted(company.series)}")
        company.series.update({k: str(v) for k, v in series.items()})
    if "customer_templates" in spec:
        company.templates = []
        for j, t in enumerate(_list(spec["customer_templates"], f"{where}.customer_templates")):
            _keys(
                t,
                f"{where}.customer_templates[{j}]",
                {"country"},
                {"gen_bus_posting_group", "customer_posting_group", "vat_bus_posting_group"},
            )
            values = {
                "_genBusPostingGroup": str(t.get("gen_bus_posting_group", "")).upper(),
                "_customerPostingGroup": str(t.get("customer_posting_group", "")).upper(),
                "_vatBusPostingGroup": str(t.get("vat_bus_posting_group", "")).upper(),
            }
            company.templates.append(
                (str(t["country"]).upper(), {k: v for k, v in values.items() if v})
            )
    if "posting_requires_posting_groups" in spec:
        company.posting_requires_posting_groups = bool(spec["posting_requires_posting_groups"])
    if "sales_invoice_approval" in spec:
        company.sales_invoice_approval = bool(spec["sales_invoice_approval"])
    if "sales_credit_memo_approval" in spec:
        company.sales_credit_memo_approval = bool(spec["sales_credit_memo_approval"])
    for j, c in enumerate(_list(spec.get("customers"), f"{where}.customers")):
        _customer(company, c, f"{where}.customers[{j}]")
    for j, p in enumerate(_list(spec.get("purchase_invoices"), f"{where}.purchase_invoices")):
        add_purchase_invoice(company, p, f"{where}.purchase_invoices[{j}]")
    return company


def _vat_bus_group(company: Company, code: Any, description: str | None = None) -> None:
    values = {} if description is None else {"description": description}
    row = company.vat_bus_groups.find("code", str(code).upper())
    if row is None:
        values.setdefault("description", "")
    _upsert_code(company.vat_bus_groups, code, values)


def _customer_setup(company: Company, spec: Any, where: str) -> None:
    """The settings behind the Customer table's rules (customer_rules.py): the BC user's
    language, Customer Nos. and its Manual Nos., VAT Bus. Posting Groups, VAT Registration No.
    Formats per country, the Post Code table. Gen. bus. groups and customers that name a VAT
    bus. group create it, so seeds need not list it twice."""
    if "language" in spec:
        company.language = str(spec["language"])
    if "customer_nos" in spec:
        nos = _keys(spec["customer_nos"], f"{where}.customer_nos", set(), {"code", "manual"})
        company.customer_nos = str(nos.get("code", company.customer_nos)).upper()
        company.customer_nos_manual = bool(nos.get("manual", company.customer_nos_manual))
    for j, g in enumerate(
        _list(spec.get("vat_bus_posting_groups"), f"{where}.vat_bus_posting_groups")
    ):
        _keys(g, f"{where}.vat_bus_posting_groups[{j}]", {"code"}, {"description"})
        _vat_bus_group(company, g["code"], str(g.get("description", "")))
    for g in _list(spec.get("gen_bus_posting_groups"), f"{where}.gen_bus_posting_groups"):
        if isinstance(g, dict) and g.get("def_vat_bus_posting_group"):
            _vat_bus_group(company, g["def_vat_bus_posting_group"])
    for c in [
        *_list(spec.get("customers"), f"{where}.customers"),
        *_list(spec.get("customer_templates"), f"{where}.customer_templates"),
    ]:
        if isinstance(c, dict) and c.get("vat_bus_posting_group"):
            _vat_bus_group(company, c["vat_bus_posting_group"])
    if "vat_registration_formats" in spec:
        formats = spec["vat_registration_formats"]
        if not isinstance(formats, dict) or not all(
            isinstance(v, list) and all(isinstance(f, str) and 0 < len(f) <= 20 for f in v)
            for v in formats.values()
        ):
            raise SeedError(
                f"{where}.vat_registration_formats: expected country → list of formats "
                "(1..20 characters each)"
            )
        for country, fmts in formats.items():
            company.vat_formats[str(country).upper()] = list(fmts)
    for j, p in enumerate(_list(spec.get("post_codes"), f"{where}.post_codes")):
        pw = f"{where}.post_codes[{j}]"
        _keys(p, pw, {"code", "city"}, {"country", "county"})
        entry = PostCodeEntry(
            str(p["code"]).upper(),
            str(p["city"]),
            str(p.get("country", "")).upper(),
            str(p.get("county", "")),
        )
        if not entry.code or len(entry.code) > 20 or not entry.city or len(entry.city) > 30:
            raise SeedError(f"{pw}: code 1..20 and city 1..30 characters")
        rows = [e for e in company.post_codes if (e.code, e.city) != (entry.code, entry.city)]
        company.post_codes = sorted([*rows, entry], key=lambda e: (e.code, e.city))


def set_service(company: Company, service: str, value: Any, where: str = "services") -> None:
    if value is False or value is None:
        company.services.pop(service, None)
        return
    page = service if value is True else str(value)
    kind = PAGE_KINDS.get(page)
    if kind is None:
        raise SeedError(
            f"{where}: {service!r} → unknown page {page!r}; pages: {sorted(PAGE_KINDS)}"
        )
    company.services[service] = kind


def _init_setup(company: Company) -> None:
    year = dt.date.today().year
    gl = GL_SETUP.defaults()
    gl.update(localCurrencyCode=company.currency, localCurrencySymbol="")
    company.gl_setup.insert(gl)
    ci = COMPANY_INFORMATION.defaults()
    ci.update(
        displayName=company.name, currentFiscalYearStartDate=f"{year}-01-01", experience="Essential"
    )
    company.company_information.insert(ci)


def _upsert_code(table: Any, code: Any, values: dict[str, Any]) -> Row:
    if not isinstance(code, str) or not code or len(code) > 20:
        raise SeedError(f"code must be 1..20 characters: {code!r}")
    code = code.upper()
    row: Row | None = table.find("code", code)
    if row is None:
        return table.insert({"code": code, **values})  # type: ignore[no-any-return]
    table.update(row, values)
    return row


def _dimension(company: Company, spec: Any, where: str) -> None:
    _keys(spec, where, {"code"}, {"name", "id", "consolidation_code", "values"})
    code = str(spec["code"]).upper()
    if not code or len(code) > 20:
        raise SeedError(f"{where}.code: 1..20 characters")
    dim = company.dimension_by_code(code)
    values = {
        "displayName": str(spec.get("name", code))[:30],
        "consolidationCode": str(spec.get("consolidation_code", "")),
    }
    if dim is None:
        data = DIMENSION.defaults()
        data.update(code=code, **values)
        dim_id = _guid(spec.get("id"), f"{where}.id")
        if dim_id:
            data["id"] = dim_id
        dim = company.dimensions.insert(data, dim_id)
    else:
        company.dimensions.update(dim, values)
    for j, v in enumerate(_list(spec.get("values"), f"{where}.values")):
        vw = f"{where}.values[{j}]"
        _keys(v, vw, {"code"}, {"name", "blocked", "id", "type", "consolidation_code"})
        vcode = str(v["code"]).upper()
        if not vcode or len(vcode) > 20:
            raise SeedError(f"{vw}.code: 1..20 characters")
        name = str(v.get("name", ""))
        if len(name) > 50:
            raise SeedError(f"{vw}.name: at most 50 characters")
        existing = company.dimension_value(dim.id, vcode)
        if existing is None:
            insert_dimension_value(
                company,
                dim,
                vcode,
                name,
                blocked=bool(v.get("blocked", False)),
                value_type=escape_enum(str(v.get("type", "Standard"))),
                consolidation_code=str(v.get("consolidation_code", "")),
                value_id=_guid(v.get("id"), f"{vw}.id"),
            )
        else:
            changes: dict[str, Any] = {}
            if "name" in v:
                changes["displayName"] = name
            if "blocked" in v:
                changes["_blocked"] = bool(v["blocked"])
            company.dimension_values.update(existing, changes)


def _account(company: Company, spec: Any, where: str) -> None:
    _keys(
        spec,
        where,
        {"number"},
        {
            "name",
            "id",
            "category",
            "sub_category",
            "account_type",
            "blocked",
            "direct_posting",
            "vat_code",
        },
    )
    number = str(spec["number"]).upper()
    values: dict[str, Any] = {}
    if "name" in spec:
        values["displayName"] = str(spec["name"])
    if "category" in spec:
        values["category"] = escape_enum(str(spec["category"]))
    if "sub_category" in spec:
        values["subCategory"] = str(spec["sub_category"])
    if "account_type" in spec:
        values["accountType"] = escape_enum(str(spec["account_type"]))
    if "blocked" in spec:
        values["blocked"] = bool(spec["blocked"])
    if "direct_posting" in spec:
        values["directPosting"] = bool(spec["direct_posting"])
    if "vat_code" in spec:
        values["_vatCode"] = str(spec["vat_code"]).upper()
    for k, members in (
        ("category", ACCOUNT.by_name["category"].enum),
        ("accountType", ACCOUNT.by_name["accountType"].enum),
    ):
        if k in values and values[k] not in members:
            raise SeedError(f"{where}: {k} must be one of {members}")
    row = company.gl_accounts.find("number", number)
    if row is None:
        data = ACCOUNT.defaults()
        data.update(number=number, directPosting=True, category="Income", _vatCode="")
        data["consolidationTranslationMethod"] = ACCOUNT.by_name[
            "consolidationTranslationMethod"
        ].enum[0]
        data.update(values)
        acc_id = _guid(spec.get("id"), f"{where}.id")
        company.gl_accounts.insert(data, acc_id)
    else:
        company.gl_accounts.update(row, values)


def _payment_terms(company: Company, spec: Any, where: str) -> None:
    _keys(
        spec,
        where,
        {"code"},
        {
            "name",
            "id",
            "due_date_calculation",
            "discount_date_calculation",
            "discount_percent",
            "calc_discount_on_credit_memos",
        },
    )
    code = str(spec["code"]).upper()
    if not code or len(code) > 10:
        raise SeedError(f"{where}.code: 1..10 characters")
    values: dict[str, Any] = {}
    for key, api in (
        ("name", "displayName"),
        ("due_date_calculation", "dueDateCalculation"),
        ("discount_date_calculation", "discountDateCalculation"),
    ):
        if key in spec:
            values[api] = str(spec[key])
    for key in ("dueDateCalculation", "discountDateCalculation"):
        if key in values and not docs.valid_date_formula(values[key]):
            raise SeedError(f"{where}: {values[key]!r} is not a date formula")
    if "discount_percent" in spec:
        values["discountPercent"] = norm_number(spec["discount_percent"])
    if "calc_discount_on_credit_memos" in spec:
        values["calculateDiscountOnCreditMemos"] = bool(spec["calc_discount_on_credit_memos"])
    row = company.payment_terms.find("code", code)
    if row is None:
        data = PAYMENT_TERM.defaults()
        data.update(code=code, **values)
        company.payment_terms.insert(data, _guid(spec.get("id"), f"{where}.id"))
    else:
        company.payment_terms.update(row, values)


CUSTOMER_FIELDS = {
    "name": "displayName",
    "type": "type",
    "address_line1": "addressLine1",
    "address_line2": "addressLine2",
    "city": "city",
    "state": "state",
    "country": "country",
    "postal_code": "postalCode",
    "phone": "phoneNumber",
    "email": "email",
    "website": "website",
    "tax_registration_number": "taxRegistrationNumber",
    "currency_code": "currencyCode",
    "credit_limit": "creditLimit",
}


def _customer(company: Company, spec: Any, where: str) -> None:
    _keys(
        spec,
        where,
        {"number"},
        {
            *CUSTOMER_FIELDS,
            "id",
            "payment_terms",
            "blocked",
            "gen_bus_posting_group",
            "customer_posting_group",
            "vat_bus_posting_group",
        },
    )
    number = str(spec["number"]).upper()
    values: dict[str, Any] = {}
    for key, api in CUSTOMER_FIELDS.items():
        if key in spec:
            f = CUSTOMER.by_name[api]
            raw = spec[key]
            if f.type == "number":
                values[api] = norm_number(raw)
            else:
                values[api] = str(raw).upper() if f.code else str(raw)
                if f.max_len and len(values[api]) > f.max_len:
                    raise SeedError(f"{where}.{key}: at most {f.max_len} characters")
    if "currencyCode" in values:
        code = docs.lcy_to_blank(company, values["currencyCode"])
        if code and code not in company.currencies:
            raise SeedError(
                f"{where}.currency_code: {code!r} is not among the company's currencies"
            )
        values["currencyCode"] = code
        values["currencyId"] = company.currencies.get(code, EMPTY_GUID)
    if "blocked" in spec:
        blocked = escape_enum(str(spec["blocked"] or " "))
        if blocked not in CUSTOMER_BLOCKED:
            raise SeedError(f"{where}.blocked: one of '', 'Ship', 'Invoice', 'All'")
        values["blocked"] = blocked
    if "payment_terms" in spec:
        code = str(spec["payment_terms"] or "").upper()
        pt = company.payment_terms.find("code", code) if code else None
        if code and pt is None:
            raise SeedError(f"{where}.payment_terms: {code!r} is not seeded")
        values["paymentTermsId"] = pt.id if pt else EMPTY_GUID
    for key, internal, table in (
        ("gen_bus_posting_group", "_genBusPostingGroup", company.gen_bus_groups),
        ("customer_posting_group", "_customerPostingGroup", company.customer_groups),
        ("vat_bus_posting_group", "_vatBusPostingGroup", company.vat_bus_groups),
    ):
        if key in spec:
            code = str(spec[key] or "").upper()
            if code and table is not None and table.find("code", code) is None:
                raise SeedError(f"{where}.{key}: {code!r} is not seeded")
            values[internal] = code
    row = company.customers.find("number", number)
    if row is None:
        data = CUSTOMER.defaults()
        data.update(
            number=number, _genBusPostingGroup="", _customerPostingGroup="", _vatBusPostingGroup=""
        )
        data.update(values)
        company.customers.insert(data, _guid(spec.get("id"), f"{where}.id"))
    else:
        company.customers.update(row, values)


PI_KEYS = {
    "id",
    "status",
    "vendor_number",
    "vendor_name",
    "vendor_invoice_number",
    "posting_date",
    "invoice_date",
    "due_date",
    "currency_code",
    "last_modified",
    "dimensions",
    "lines",
}
PI_LINE_KEYS = {
    "id",
    "sequence",
    "line_type",
    "account",
    "description",
    "quantity",
    "unit_cost",
    "tax_code",
    "dimensions",
}


def add_purchase_invoice(company: Company, spec: Any, where: str = "purchase_invoice") -> Row:
    """Insert one purchase invoice with lines and line dimensions (skipped if the number exists)."""
    _keys(spec, where, {"number", "lines"}, PI_KEYS)
    number = str(spec["number"]).upper()
    existing = company.purchase_invoices.find("number", number)
    if existing is not None:
        return existing
    status = str(spec.get("status", "Open"))
    # PurchInvAggregator.Codeunit.al: an unposted invoice is always Draft; a posted one Open,
    # Paid, Canceled or Corrective.
    if status not in ("Draft", "Open", "Paid", "Canceled", "Corrective"):
        raise SeedError(f"{where}.status: one of Draft, Open, Paid, Canceled, Corrective")
    posting = _date(spec.get("posting_date"), f"{where}.posting_date", docs.today())
    data: dict[str, Any] = {
        "number": number,
        "status": status,
        "vendorNumber": str(spec.get("vendor_number", "")).upper(),
        "vendorName": str(spec.get("vendor_name", "")),
        "payToName": str(spec.get("vendor_name", "")),
        "payToVendorNumber": str(spec.get("vendor_number", "")).upper(),
        "vendorInvoiceNumber": str(spec.get("vendor_invoice_number", "")),
        "postingDate": posting,
        "invoiceDate": _date(spec.get("invoice_date"), f"{where}.invoice_date", posting),
        "dueDate": _date(spec.get("due_date"), f"{where}.due_date", posting),
        "currencyCode": docs.lcy_to_blank(company, str(spec.get("currency_code", "")).upper()),
    }
    if "last_modified" in spec:
        lm = parse_datetime(str(spec["last_modified"]))
        if lm is None:
            raise SeedError(f"{where}.last_modified: not an ISO datetime with zone")
        data["lastModifiedDateTime"] = lm
    if "id" in spec:
        data["id"] = _guid(spec["id"], f"{where}.id")
    lines: list[dict[str, Any]] = []
    line_dims: list[dict[str, str]] = []
    for j, ln in enumerate(_list(spec["lines"], f"{where}.lines")):
        lw = f"{where}.lines[{j}]"
        _keys(ln, lw, set(), PI_LINE_KEYS)
        line: dict[str, Any] = {
            "sequence": int(ln.get("sequence", (j + 1) * 10000)),
            "lineType": escape_enum(str(ln.get("line_type", "Account"))),
            "lineObjectNumber": str(ln.get("account", "")).upper(),
            "quantity": norm_number(ln.get("quantity", 1)),
            "unitCost": norm_number(ln.get("unit_cost", 0)),
        }
        if "description" in ln:
            line["description"] = str(ln["description"])
        if "tax_code" in ln:
            line["taxCode"] = str(ln["tax_code"]).upper()
        if "id" in ln:
            line["id"] = _guid(ln["id"], f"{lw}.id")
        dims = ln.get("dimensions") or {}
        if not isinstance(dims, dict):
            raise SeedError(f"{lw}.dimensions: expected an object of dimension code → value code")
        lines.append(line)
        line_dims.append({str(k): str(v) for k, v in dims.items()})
    header_dims = spec.get("dimensions") or {}
    if not isinstance(header_dims, dict):
        raise SeedError(f"{where}.dimensions: expected an object of dimension code → value code")
    try:
        with company.tx.transaction():
            return docs.create_purchase_invoice(
                company, data, lines, line_dims, {str(k): str(v) for k, v in header_dims.items()}
            )
    except BCError as e:
        raise SeedError(f"{where}: {e.message}") from None


__all__ = ["SeedError", "add_purchase_invoice", "apply_seed", "set_service"]
