"""ODataV4 page web services (bc-api §1.3):
``/v2.0/{tenant}/{env}/ODataV4/Company('{name}')/{Service}``.

The four pages of bc-contract.md: Dimension Values (537), Customer Card (21), Gen. Business
Posting Groups (312), Customer Posting Groups (110). Which services are published (and under
which names) is seeded per company; an unpublished one is an unknown segment to BC.

``Company('…')`` is decoded exactly as BC would: the path segment was split from the *raw* path
(so ``%2F`` stays inside it) and percent-decoded, then the OData string literal is unquoted
(``''`` → ``'``). Names are case-sensitive.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from . import customer_rules as rules
from .bc_api import (
    ApiCtx,
    ApiRequest,
    Coll,
    check_if_match,
    entity_reply,
    list_reply,
    split_segment,
)
from .entities import (
    DIMENSION_VALUE,
    GUID_RE,
    V4_CUSTOMER_CARD,
    V4_CUSTOMER_POSTING_GROUPS,
    V4_DIMENSION_VALUES,
    V4_GEN_BUS_POSTING_GROUPS,
    parse_body,
)
from .errors import (
    BCError,
    Reply,
    already_exists,
    invalid_table_relation,
    method_not_allowed,
    not_implemented,
    query_error,
    resource_not_found,
)
from .odata_query import parse_options, split_top
from .store import Company, Row, Table


def parse_string_literal(text: str) -> tuple[str, str]:
    """Parse a leading OData string literal; return (value, rest)."""
    if not text.startswith("'"):
        raise query_error("Bad Request - Error in query syntax.")
    out: list[str] = []
    i = 1
    while i < len(text):
        ch = text[i]
        if ch == "'":
            if i + 1 < len(text) and text[i + 1] == "'":
                out.append("'")
                i += 2
                continue
            return "".join(out), text[i + 1 :]
        out.append(ch)
        i += 1
    raise query_error("Bad Request - Error in query syntax.")


def parse_company_segment(seg: str) -> tuple[str, str]:
    """``Company('A''s')`` → ("name", "A's"); ``Company(Id=<guid>)`` → ("id", guid)."""
    if not (seg.startswith("Company(") and seg.endswith(")")):
        raise query_error("Bad Request - Error in query syntax.")
    inner = seg[len("Company(") : -1]
    if inner.startswith("'"):
        name, rest = parse_string_literal(inner)
        if rest:
            raise query_error("Bad Request - Error in query syntax.")
        return "name", name
    if inner.lower().startswith("id="):
        inner = inner[3:]
    inner = inner.strip("'")
    if not GUID_RE.match(inner):
        raise query_error("Bad Request - Error in query syntax.")
    return "id", inner.lower()


def parse_key(text: str, key_fields: tuple[str, ...]) -> dict[str, str]:
    """``('10000')``, ``(No='10000')``, ``(Dimension_Code='P',Code='4005')`` → field → value."""
    out: dict[str, str] = {}
    parts = split_top(text, ",")
    for i, part in enumerate(parts):
        part = part.strip()
        if "=" in part and not part.startswith("'"):
            name, _, lit = part.partition("=")
            name = name.strip()
        else:
            if i >= len(key_fields):
                raise query_error("Bad Request - Error in query syntax.")
            name, lit = key_fields[i], part
        lit = lit.strip()
        value, rest = parse_string_literal(lit) if lit.startswith("'") else (lit, "")
        if rest.strip() or name not in key_fields:
            raise query_error("Bad Request - Error in query syntax.")
        out[name] = value
    if set(out) != set(key_fields):
        raise query_error("Bad Request - Error in query syntax.")
    return out


def _not_implemented_write(service: str) -> BCError:
    return not_implemented(f"writes to the ODataV4 service {service}")


class DimensionValuesV4(Coll):
    spec = V4_DIMENSION_VALUES
    label = "Dimension Value"
    keys = ("Dimension_Code", "Code")

    def __init__(self, company: Company) -> None:
        self.company = company
        self.table = company.dimension_values

    def rows(self) -> list[Row]:
        return list(self.table.rows.values())

    def rows_eq(self, name: str, value: Any) -> list[Row] | None:
        if name == "Dimension_Code":
            dim = self.company.dimension_by_code(value)
            return (
                []
                if dim is None
                else sorted(self.table.find_all("dimensionId", dim.id), key=lambda r: r.seq)
            )
        return None

    def render(self, row: Row) -> dict[str, Any]:
        d = row.data
        return {
            "Dimension_Code": d["_dimCode"],
            "Code": d["code"],
            "Name": d["displayName"],
            "Dimension_Value_Type": d["_type"],
            "Totaling": d["_totaling"],
            "Blocked": d["_blocked"],
            "Consolidation_Code": d["consolidationCode"],
        }

    def lookup(self, key: str) -> Row | None:
        k = parse_key(key, self.keys)
        dim = self.company.dimension_by_code(k["Dimension_Code"])
        return None if dim is None else self.company.dimension_value(dim.id, k["Code"])

    def key_error(self, key: str) -> BCError:
        k = parse_key(key, self.keys)
        return BCError(
            404,
            "Internal_RecordNotFound",
            "The Dimension Value does not exist. Identification fields and values: "
            f"Dimension Code='{k['Dimension_Code']}',Code='{k['Code']}'",
        )

    def create(self, body: Any) -> Row:
        values, _ = parse_body(self.spec, body)
        dim_code = values.get("Dimension_Code", "")
        code = values.get("Code", "")
        dim = self.company.dimension_by_code(dim_code) if dim_code else None
        if dim is None:
            raise invalid_table_relation("Dimension Code", "Dimension Value", dim_code, "Dimension")
        if not code:
            raise BCError(
                400,
                "Application_FieldValidationException",
                f"Code must have a value in Dimension Value: Dimension Code={dim_code}, Code=. "
                "It cannot be zero or empty.",
            )
        if self.company.dimension_value(dim.id, code) is not None:
            raise already_exists("Dimension Value", f"Dimension Code='{dim_code}',Code='{code}'")
        return insert_dimension_value(
            self.company,
            dim,
            code,
            values.get("Name", ""),
            blocked=values.get("Blocked", False),
            value_type=values.get("Dimension_Value_Type", "Standard"),
            totaling=values.get("Totaling", ""),
            consolidation_code=values.get("Consolidation_Code", ""),
        )

    def modify(self, row: Row, body: Any) -> None:
        values, _ = parse_body(self.spec, body)
        if (
            values.get("Code", row.data["code"]) != row.data["code"]
            or values.get("Dimension_Code", row.data["_dimCode"]) != row.data["_dimCode"]
        ):
            raise not_implemented("renaming the key of a dimension value")
        mapping = {
            "Name": "displayName",
            "Blocked": "_blocked",
            "Dimension_Value_Type": "_type",
            "Totaling": "_totaling",
            "Consolidation_Code": "consolidationCode",
        }
        self.table.update(row, {mapping[k]: v for k, v in values.items() if k in mapping})

    def remove(self, row: Row) -> None:
        self.table.delete(row)


def insert_dimension_value(
    company: Company,
    dim: Row,
    code: str,
    name: str,
    *,
    blocked: bool = False,
    value_type: str = "Standard",
    totaling: str = "",
    consolidation_code: str = "",
    value_id: str | None = None,
) -> Row:
    data = DIMENSION_VALUE.defaults()
    data.update(
        code=code.upper(),
        dimensionId=dim.id,
        displayName=name,
        consolidationCode=consolidation_code,
        _key=f"{dim.id}|{code.upper()}",
        _dimCode=dim.data["code"],
        _blocked=blocked,
        _type=value_type,
        _totaling=totaling,
    )
    if value_id:
        data["id"] = value_id
    return company.dimension_values.insert(data, value_id)


CARD_MAP = {
    "No": "number",
    "Name": "displayName",
    "Address": "addressLine1",
    "Address_2": "addressLine2",
    "Post_Code": "postalCode",
    "City": "city",
    "Country_Region_Code": "country",
    "Phone_No": "phoneNumber",
    "E_Mail": "email",
    "VAT_Registration_No": "taxRegistrationNumber",
    "Blocked": "blocked",
    "Currency_Code": "currencyCode",
    "Gen_Bus_Posting_Group": "_genBusPostingGroup",
    "VAT_Bus_Posting_Group": "_vatBusPostingGroup",
    "Customer_Posting_Group": "_customerPostingGroup",
    "Balance_LCY": "balanceDue",
}


class CustomerCardV4(Coll):
    spec = V4_CUSTOMER_CARD
    label = "Customer"
    keys = ("No",)

    def __init__(self, company: Company) -> None:
        self.company = company
        self.table = company.customers

    def rows(self) -> list[Row]:
        return list(self.table.rows.values())

    def rows_eq(self, name: str, value: Any) -> list[Row] | None:
        if name == "No":
            row = self.table.find("number", value)
            return [] if row is None else [row]
        return None

    def render(self, row: Row) -> dict[str, Any]:
        d = row.data
        out = {k: d.get(v, "") for k, v in CARD_MAP.items()}
        pt = self.company.payment_terms.get(d["paymentTermsId"])
        out["Payment_Terms_Code"] = pt.data["code"] if pt else ""
        return {f.name: out[f.name] for f in self.spec.fields}

    def lookup(self, key: str) -> Row | None:
        return self.table.find("number", parse_key(key, self.keys)["No"].upper())

    def key_error(self, key: str) -> BCError:
        return BCError(
            404,
            "Internal_RecordNotFound",
            "The Customer does not exist. Identification fields and values: "
            f"No.='{parse_key(key, self.keys)['No']}'",
        )

    def modify(self, row: Row, body: Any) -> None:
        """The card validates its controls in its own order (customer_rules.CARD_ORDER: the
        country before the city, unlike the API page), with the Customer table's triggers."""
        values, _ = parse_body(self.spec, body)
        c = self.company
        if "No" in values and values["No"] != row.data["number"]:
            raise not_implemented("renaming a customer through the Customer Card page")
        for name, caption, table, related in (
            (
                "Customer_Posting_Group",
                "Customer Posting Group",
                c.customer_groups,
                "Customer Posting Group",
            ),
            ("Payment_Terms_Code", "Payment Terms Code", c.payment_terms, "Payment Terms"),
        ):
            code = values.get(name)
            if code and table.find("code", code) is None:
                raise invalid_table_relation(caption, "Customer", code, related)
        changes = {CARD_MAP[k]: v for k, v in values.items() if k in CARD_MAP}
        if "Payment_Terms_Code" in values:
            pt = c.payment_terms.find("code", values["Payment_Terms_Code"])
            changes["paymentTermsId"] = pt.id if pt else "00000000-0000-0000-0000-000000000000"
        if "currencyCode" in changes and changes["currencyCode"] == c.currency:
            changes["currencyCode"] = ""
        rec = dict(row.data)
        rules.apply(c, rec, row.data, changes, rules.CARD_ORDER)
        self.table.update(row, {k: v for k, v in rec.items() if row.data.get(k) != v})

    def create(self, body: Any) -> Row:
        raise _not_implemented_write("CustomerCard (POST)")

    def remove(self, row: Row) -> None:
        raise _not_implemented_write("CustomerCard (DELETE)")


class CodeTableV4(Coll):
    """Gen. Business Posting Groups / Customer Posting Groups (list pages keyed by Code)."""

    keys = ("Code",)

    def __init__(
        self, company: Company, table: Table, spec: Any, label: str, mapping: dict[str, str]
    ) -> None:
        self.company = company
        self.table = table
        self.spec = spec
        self.label = label
        self.mapping = mapping

    def rows(self) -> list[Row]:
        return list(self.table.rows.values())

    def rows_eq(self, name: str, value: Any) -> list[Row] | None:
        if name == "Code":
            row = self.table.find("code", value)
            return [] if row is None else [row]
        return None

    def render(self, row: Row) -> dict[str, Any]:
        return {
            k: row.data.get(v, False if k == "Auto_Insert_Default" else "")
            for k, v in self.mapping.items()
        }

    def lookup(self, key: str) -> Row | None:
        return self.table.find("code", parse_key(key, self.keys)["Code"].upper())

    def key_error(self, key: str) -> BCError:
        return BCError(
            404,
            "Internal_RecordNotFound",
            f"The {self.label} does not exist. Identification fields and values: "
            f"Code='{parse_key(key, self.keys)['Code']}'",
        )

    def create(self, body: Any) -> Row:
        raise _not_implemented_write(self.spec.entity_set)

    def modify(self, row: Row, body: Any) -> None:
        raise _not_implemented_write(self.spec.entity_set)

    def remove(self, row: Row) -> None:
        raise _not_implemented_write(self.spec.entity_set)


def page_collection(company: Company, kind: str) -> Coll:
    if kind == "DimensionValues":
        return DimensionValuesV4(company)
    if kind == "CustomerCard":
        return CustomerCardV4(company)
    if kind == "GenBusinessPostingGroups":
        return CodeTableV4(
            company,
            company.gen_bus_groups,
            V4_GEN_BUS_POSTING_GROUPS,
            "Gen. Business Posting Group",
            {
                "Code": "code",
                "Description": "description",
                "Def_VAT_Bus_Posting_Group": "defVatBusPostingGroup",
                "Auto_Insert_Default": "autoInsertDefault",
            },
        )
    return CodeTableV4(
        company,
        company.customer_groups,
        V4_CUSTOMER_POSTING_GROUPS,
        "Customer Posting Group",
        {"Code": "code", "Description": "description", "Receivables_Account": "receivablesAccount"},
    )


def _company_for(ctx: ApiCtx, req: ApiRequest, segs: list[str]) -> tuple[Company, list[str], str]:
    """The company of ``Company('…')``, ``Company(Id=…)`` or ``?company=``.

    Returns (company, remaining segments, canonical selector for @odata.context).
    """
    from .bc_api import company_not_found

    first = segs[0]
    if first.startswith("Company("):
        kind, value = parse_company_segment(first)
        rest = segs[1:]
    else:
        literal = next((v for k, v in req.pairs if k == "company"), None)
        if literal is None:
            raise company_not_found("")
        kind, rest = "name", segs
        value = parse_string_literal(literal)[0] if literal.startswith("'") else literal
    by = ctx.env.companies if kind == "id" else ctx.env.by_name
    company = by.get(value)
    if company is None:
        raise company_not_found(value)
    selector = "Company('" + quote(company.name.replace("'", "''"), safe="") + "')"
    return company, rest, selector


def _companies_reply(ctx: ApiCtx) -> Reply:
    value = [
        {
            "@odata.etag": c.etag,
            "Name": c.name,
            "Evaluation_Company": False,
            "Display_Name": c.display_name,
            "Id": c.id,
            "Business_Profile_Id": c.business_profile_id,
        }
        for c in ctx.env.companies.values()
    ]
    return Reply(200, {"@odata.context": f"{ctx.root}/$metadata#Company", "value": value})


def handle_odatav4(ctx: ApiCtx, req: ApiRequest) -> Reply:
    try:
        segs = (
            [s for s in req.segments if s != ""]
            if req.segments[-1:] == [""]
            else list(req.segments)
        )
        if not segs:
            names = sorted({s for c in ctx.env.companies.values() for s in c.services})
            return Reply(
                200,
                {
                    "@odata.context": f"{ctx.root}/$metadata",
                    "value": [
                        {"name": n, "kind": "EntitySet", "url": n} for n in ["Company", *names]
                    ],
                },
            )
        if segs == ["Company"]:
            return _companies_reply(ctx)
        company, rest, selector = _company_for(ctx, req, segs)
        if len(rest) != 1:
            raise resource_not_found(rest[1] if len(rest) > 1 else "")
        service, key = split_segment(rest[0])
        kind = company.service_page(service)
        if kind is None:
            # UNCONFIRMED: an unpublished service is an unknown segment to BC → 404.
            raise resource_not_found(service)
        coll = page_collection(company, kind)
        opts = parse_options(req.pairs)
        context = f"{ctx.root}/$metadata#{selector}/{service}"
        row = None
        if key is not None:
            row = coll.lookup(key)
            if row is None:
                raise coll.key_error(key)
        if req.method == "GET":
            if row is not None:
                return entity_reply(coll, row, opts, context)
            return list_reply(coll, opts, req, context, ctx.max_page_size)
        with ctx.world.tx.transaction():
            if req.method == "POST" and row is None:
                new = coll.create(req.json())
                reply = entity_reply(coll, new, opts, context, status=201)
                data = coll.render(new)
                key = ",".join(
                    f"{k}='{quote(str(data[k]).replace(chr(39), chr(39) * 2), safe='')}'"
                    for k in getattr(coll, "keys", ())
                )
                reply.headers["Location"] = f"{ctx.root}/{selector}/{service}({key})"
                return reply
            if req.method == "PATCH" and row is not None:
                check_if_match(req.headers, row, required=True)
                coll.modify(row, req.json())
                return entity_reply(coll, row, opts, context)
            if req.method == "DELETE" and row is not None:
                check_if_match(req.headers, row, required=False)
                coll.remove(row)
                return Reply(204)
            raise method_not_allowed(req.method, service)
    except BCError as e:
        return e.reply()
