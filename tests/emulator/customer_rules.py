"""The Customer table's field triggers, as BC runs them when a page validates a request.

A write through the API page (`APIV2Customers.Page.al`) or the Customer Card page
(`CustomerCard.Page.al`, ODataV4) validates the sent properties one by one **in the page's control
order**, each with the table field's OnValidate trigger (bc-api Corrections 3: inferred from AL that
relies on control order; UNCONFIRMED as platform behaviour, which the emulator follows because it
is the stricter reading). ``xrec`` is the record as it was before the request (a blank record for
an insert: both pages use DelayedInsert).

Rules, each from [BCApps] `src/Layers/W1/BaseApp/Sales/Customer/Customer.Table.al` unless named:

- ``No.``: `TestNoSeries` → `NoSeries.TestManual(SalesSetup."Customer Nos.")` when the number is
  new (`Business Foundation/App/NoSeries/src/Single/NoSeriesImpl.Codeunit.al`).
- ``City``: `PostCode.ValidateCity` exits at once without a GUI (`if not GuiAllowed then exit`,
  `Foundation/Address/PostCode.Table.al`); web service sessions have none, so nothing happens.
- ``Country/Region Code``: `PostCode.CheckClearPostCodeCityCounty` blanks city, post code and
  county when the previous country was not blank and differs (General Ledger Setup "Req.
  Country/Reg. Code in Addr." off, BC's default; not modelled as a switch); then, when the country
  changed, `VATRegistrationValidation` checks the current VAT number against the new country.
- ``Post Code``: `PostCode.ValidatePostCode(…, UseDialog = false)`: when BC's Post Code table
  knows the code, its first row (preferring the customer's country, then the customer's city)
  overwrites post code, city, country and county. A code known only for another country moves
  the customer to that country, as the AL does.
- ``Phone No.``: `Char.IsLetter` on any character → FieldError "must not contain letters".
- ``VAT Registration No.`` (Text[20]; the API page's variable is Text[50]): upper-cased, and when
  changed `VATRegistrationValidation` → `VATRegistrationNoFormat.Test`
  (`Finance/VAT/Registration/VATRegistrationNoFormat.Table.al`).
- ``Tax Area ID`` (API ``taxAreaId``, VAT countries): `UpdateTaxAreaCode` sets the VAT Bus. Posting
  Group whose SystemId it is; ``VAT Bus. Posting Group`` → `UpdateTaxAreaId` (the API shows the
  group's SystemId as ``taxAreaId``; the emulator computes it when rendering).
- ``Gen. Bus. Posting Group``: when changed and the group's "Auto Insert Default" is on
  (InitValue true, `Finance/GeneralLedger/Setup/GenBusinessPostingGroup.Table.al`
  `ValidateVatBusPostingGroup`), validates ``VAT Bus. Posting Group`` := its "Def. VAT Bus. Posting
  Group" (a blank group: `Init()`, so Auto Insert Default true and a blank default).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from .entities import EMPTY_GUID
from .errors import BCError, dialog, invalid_table_relation, string_too_long
from .store import Company

# APIV2Customers.Page.al, layout order of the writable controls.
API_ORDER = (
    "number",
    "displayName",
    "type",
    "addressLine1",
    "addressLine2",
    "city",
    "state",
    "country",
    "postalCode",
    "phoneNumber",
    "email",
    "website",
    "salespersonCode",
    "creditLimit",
    "taxLiable",
    "taxAreaId",
    "taxRegistrationNumber",
    "currencyId",
    "currencyCode",
    "paymentTermsId",
    "shipmentMethodId",
    "paymentMethodId",
    "blocked",
)

# CustomerCard.Page.al, layout order of the controls the emulator's card serves (internal names):
# the card has the country *before* the city, unlike the API page.
CARD_ORDER = (
    "number",
    "displayName",
    "blocked",
    "addressLine1",
    "addressLine2",
    "country",
    "city",
    "postalCode",
    "phoneNumber",
    "email",
    "taxRegistrationNumber",
    "_genBusPostingGroup",
    "_vatBusPostingGroup",
    "_customerPostingGroup",
    "currencyCode",
    "paymentTermsId",
)

VAT_REGISTRATION_MAX = 20  # field(86; "VAT Registration No."; Text[20])

# NoSeriesImpl.Codeunit.al CannotAssignManuallyErr with %1 = "Manual Nos.", %2 = "No. Series".
MANUAL_NOS = (
    "You may not enter numbers manually. If you want to enter numbers manually, please activate "
    "Manual Nos. in No. Series {series}."
)
# VATRegistrationNoFormat.Table.al VATRegistrationNumberErr / Text001 (the trailing "\" of the
# label is AL's line break; kept as the character, UNCONFIRMED how BC renders it over OData).
VAT_FORMAT_HEAD = (
    "The entered VAT Registration number for Customer {number} is not in agreement with the "
    "format specified for Country/Region Code {country}.\\"
)
VAT_FORMAT_LIST = "The following formats are acceptable: {formats}"


def apply(
    company: Company,
    rec: dict[str, Any],
    xrec: Mapping[str, Any],
    values: Mapping[str, Any],
    order: Iterable[str],
) -> None:
    """Validate ``values`` into ``rec`` field by field in ``order`` (BC rolls the whole request
    back when one fails: the caller runs inside the request's transaction)."""
    for name in order:
        if name in values:
            validate(company, rec, xrec, name, values[name])


def validate(
    company: Company, rec: dict[str, Any], xrec: Mapping[str, Any], name: str, value: Any
) -> None:
    """``Rec.Validate(<field>, value)`` for one field (internal name)."""
    rec[name] = value
    if name == "number":
        if (
            value
            and value != xrec.get("number")
            and company.customers.find("number", value) is None
        ):
            test_manual_nos(company)
    elif name == "country":
        old = xrec.get("country", "")
        if old and old != value:  # PostCode.CheckClearPostCodeCityCounty
            rec.update(city="", postalCode="", state="")
        if value != old:
            vat_registration_validation(company, rec)
    elif name == "postalCode":
        validate_post_code(company, rec)
    elif name == "phoneNumber":
        if any(unicodedata.category(ch) in ("Lu", "Ll", "Lt", "Lm", "Lo") for ch in value):
            raise field_error(rec, "Phone No.", "must not contain letters")
    elif name == "taxRegistrationNumber":
        if len(value) > VAT_REGISTRATION_MAX:
            raise string_too_long(value, VAT_REGISTRATION_MAX)
        rec[name] = value.upper()
        if rec[name] != xrec.get("taxRegistrationNumber", ""):
            vat_registration_validation(company, rec)
    elif name == "taxAreaId":
        if value != EMPTY_GUID:
            group = company.vat_bus_groups.get(value)
            if group is None:
                # GetBySystemId fails: the record-not-found error (text approximated).
                raise BCError(
                    400,
                    "Internal_RecordNotFound",
                    "The VAT Business Posting Group does not exist. Identification fields and "
                    f"values: SystemId='{{{value}}}'",
                )
            rec["_vatBusPostingGroup"] = group.data["code"]
    elif name == "_genBusPostingGroup":
        if value and company.gen_bus_groups.find("code", value) is None:
            raise invalid_table_relation(
                "Gen. Bus. Posting Group", "Customer", value, "Gen. Business Posting Group"
            )
        if value != xrec.get("_genBusPostingGroup", ""):
            group = company.gen_bus_groups.find("code", value) if value else None
            auto_insert = group.data.get("autoInsertDefault", True) if group else True
            if auto_insert:
                default = group.data.get("defVatBusPostingGroup", "") if group else ""
                validate(company, rec, xrec, "_vatBusPostingGroup", default)
    elif (
        name == "_vatBusPostingGroup"
        and value
        and company.vat_bus_groups.find("code", value) is None
    ):
        raise invalid_table_relation(
            "VAT Bus. Posting Group", "Customer", value, "VAT Business Posting Group"
        )


def field_error(rec: Mapping[str, Any], caption: str, text: str) -> BCError:
    """AL ``FieldError(Field, Text)``: "<caption> <text> in Customer No.='<no>'.".

    Code: Application_FieldValidationException, the code bc-api §5.1 gives TestField's field
    errors (UNCONFIRMED for FieldError, whose AL error code is TableErrorStr)."""
    return BCError(
        400,
        "Application_FieldValidationException",
        f"{caption} {text} in Customer No.='{rec.get('number', '')}'.",
    )


def test_manual_nos(company: Company) -> None:
    """``NoSeries.TestManual("Customer Nos.")``: a number from outside needs Manual Nos."""
    if company.customer_nos and not company.customer_nos_manual:
        raise dialog(MANUAL_NOS.format(series=company.customer_nos))


def vat_registration_validation(company: Company, rec: Mapping[str, Any]) -> None:
    """``VATRegistrationNoFormat.Test("VAT Registration No.", "Country/Region Code", "No.")``.

    Without formats for the country nothing is checked. The error names the customer only when
    ``Customer.Get(No.)`` finds it, so an insert gets the format list alone."""
    vat = str(rec.get("taxRegistrationNumber", "")).upper()
    if not vat:
        return
    country = rec.get("country") or company.country
    formats = [f for f in company.vat_formats.get(country, []) if f]
    if not formats or any(compare(vat, f) for f in formats):
        return
    stored = company.customers.find("number", rec.get("number", "")) is not None
    head = VAT_FORMAT_HEAD.format(number=rec.get("number", ""), country=country) if stored else ""
    raise dialog(head + VAT_FORMAT_LIST.format(formats=_format_list(formats)))


def compare(vat: str, fmt: str) -> bool:
    """``VATRegistrationNoFormat.Compare``: same length; ``#`` a digit, ``@`` a letter A-Z, ``?``
    anything, every other character itself."""
    if len(vat) != len(fmt):
        return False
    for ce, cf in zip(vat, fmt, strict=True):
        if cf == "#":
            if not "0" <= ce <= "9":
                return False
        elif cf == "@":
            if ce.upper() not in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
                return False
        elif cf not in (ce, "?"):
            return False
    return True


def _format_list(formats: list[str]) -> str:
    """``AppendString``: ", "-joined, cut with "..." before 250 characters."""
    out = ""
    for f in formats:
        if not out:
            out = f
        elif len(out) + len(f) + 5 <= 250:
            out += ", " + f
        else:
            return out + "..."
    return out


def validate_post_code(company: Company, rec: dict[str, Any]) -> None:
    """``PostCode.ValidatePostCode(City, "Post Code", County, "Country/Region Code", false)``."""
    code = str(rec.get("postalCode", ""))
    if not code:
        return
    if code.endswith("*"):  # IsFilter: a trailing * is a filter
        rows = [p for p in company.post_codes if p.code.startswith(code[:-1])]
    else:
        rows = [p for p in company.post_codes if p.code == code]
    if not rows:
        return
    country = rec.get("country", "")
    if country:
        same = [p for p in rows if p.country == country]
        rows = same or rows  # no row for the country: the filter is removed again
    city = str(rec.get("city", ""))
    if city:
        named = [p for p in rows if p.search_city == city.upper()]
        rows = named or rows
    first = rows[0]  # FindFirst in key order (Code, City)
    rec.update(postalCode=first.code, city=first.city, country=first.country, state=first.county)
