"""Emulator conformance: field lists, read-only flags and string lengths against bc-api.md itself.

The reference (../shared/reference/bc-api.md from the repository root) is *parsed at test time*:
its §4 tables (and the "Fields:" lists where a section has no table) give, per entity set, the
API field names, which are read-only (RO) and string(n) lengths. The emulator's live answers must
carry exactly those fields — an invented or a missing field fails — and its specs must agree on
RO and lengths. Skips with a clear reason when the reference is not there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.emulator.entities import (
    API_SPECS,
    V4_CUSTOMER_CARD,
    V4_CUSTOMER_POSTING_GROUPS,
    V4_DIMENSION_VALUES,
    V4_GEN_BUS_POSTING_GROUPS,
)
from tests.emulator.fixtures import BCClient, EmulatorHandle
from tests.emulator.server import REPO_ROOT

REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference"
BC_API = REFERENCE_DIR / "bc-api.md"
BC_CONTRACT = REFERENCE_DIR / "bc-contract.md"

# §4 sections the emulator serves (entity set named first in the heading).
SERVED = {
    "companies",
    "customers",
    "accounts",
    "dimensions",
    "dimensionValues",
    "dimensionSetLines",
    "salesInvoices",
    "salesInvoiceLines",
    "purchaseInvoices",
    "purchaseInvoiceLines",
    "generalLedgerSetup",
    "companyInformation",
}

# paymentTerms is not tabled in bc-api.md: [BCApps] APIV2PaymentTerms.Page.al (page 30023).
PAYMENT_TERMS_FIELDS = {
    "id",
    "code",
    "displayName",
    "dueDateCalculation",
    "discountDateCalculation",
    "discountPercent",
    "calculateDiscountOnCreditMemos",
    "lastModifiedDateTime",
}


@dataclass
class DocEntity:
    name: str
    fields: list[str] = field(default_factory=list)
    ro: set[str] = field(default_factory=set)
    not_ro: set[str] = field(default_factory=set)  # only where a table has an RO column
    lengths: dict[str, int] = field(default_factory=dict)


def _expand(name: str) -> list[str]:
    """``addressLine1/2`` → addressLine1, addressLine2."""
    m = re.fullmatch(r"(\w*?)(\d)/(\d)", name)
    if m:
        return [f"{m.group(1)}{m.group(2)}", f"{m.group(1)}{m.group(3)}"]
    return [name]


def _split_top(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _table(ent: DocEntity, lines: list[str]) -> None:
    header = [c.strip() for c in lines[0].strip().strip("|").split("|")]
    ro_col = header.index("RO") if "RO" in header else None
    for row in lines[2:]:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        names: list[str] = []
        for chunk in re.split(r"\s*/\s+|,\s*", cells[0]):
            names += _expand(chunk.strip())
        types = [t.strip() for t in cells[1].split(" / ")] if len(cells) > 1 else []
        lens = re.search(r"strings \(([\d/]+)\)", cells[1]) if len(cells) > 1 else None
        for i, n in enumerate(names):
            ent.fields.append(n)
            if lens:
                ent.lengths[n] = int(lens.group(1).split("/")[i])
            else:
                t = types[i] if i < len(types) else (types[0] if types else "")
                m = re.fullmatch(r"string\((\d+)\)", t)
                if m:
                    ent.lengths[n] = int(m.group(1))
            if ro_col is not None and ro_col < len(cells):
                (ent.ro if cells[ro_col].startswith("RO") else ent.not_ro).add(n)


def _prose(ent: DocEntity, text: str) -> None:
    text = text.replace("*", "").replace("`", "").strip().rstrip(".")
    for item in _split_top(text):
        m = re.match(r"([A-Za-z][A-Za-z0-9]*(?:/\d)?)(.*)", item)
        if not m:
            continue
        rest = m.group(2)
        rng = re.match(r"\s*…\s*([A-Za-z]+?)(\d)(\w*)", rest)
        names = _expand(m.group(1))
        if rng:  # shortcutDimension1Code … shortcutDimension8Code
            head = re.fullmatch(r"([A-Za-z]+?)(\d)(\w*)", m.group(1))
            assert head is not None
            names = [
                f"{head.group(1)}{i}{head.group(3)}"
                for i in range(int(head.group(2)), int(rng.group(2)) + 1)
            ]
        for n in names:
            ent.fields.append(n)
            if re.search(r"\bRO\b", rest):
                ent.ro.add(n)
            length = re.search(r"string\((\d+)\)", rest)
            if length:
                ent.lengths[n] = int(length.group(1))


def parse_reference(text: str) -> dict[str, DocEntity]:
    out: dict[str, DocEntity] = {}
    sections = re.split(r"^### 4\.\d+ ", text, flags=re.M)[1:]
    for sec in sections:
        name = re.match(r"[A-Za-z]+", sec)
        if name is None or name.group() not in SERVED:
            continue
        ent = DocEntity(name.group())
        body = sec.split("\n", 1)[1] if "\n" in sec else ""
        lines = body.split("\n")
        starts = [
            i
            for i, ln in enumerate(lines)
            if ln.startswith("|") and re.match(r"\|\s*(API field|field)\s*\|", ln)
        ]
        if starts:
            i = starts[0]
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            _table(ent, lines[i:j])
        else:
            para: list[str] = []
            m_idx = next((k for k, ln in enumerate(lines) if ln.startswith("Fields:")), None)
            k = m_idx if m_idx is not None else next(k for k, ln in enumerate(lines) if ln.strip())
            para.append(lines[k])
            k += 1
            # a list continues on lines that start with a field name (lower case or **bold**)
            while k < len(lines) and re.match(r"[a-z*]", lines[k]):
                para.append(lines[k])
                k += 1
            _prose(ent, " ".join(para).removeprefix("Fields:"))
        out[ent.name] = ent
    return out


@pytest.fixture(scope="module")
def reference() -> dict[str, DocEntity]:
    if not BC_API.exists():
        pytest.skip(
            f"reference {BC_API} is not present (it lives beside the repository, not in it)"
        )
    parsed = parse_reference(BC_API.read_text(encoding="utf-8"))
    assert set(parsed) == SERVED, (
        f"bc-api.md sections changed: {sorted(set(SERVED) - set(parsed))} missing"
    )
    return parsed


def test_reference_parser_reads_what_the_tables_say(reference: dict[str, DocEntity]) -> None:
    """Guard on the parser itself: a few facts read straight from bc-api.md §4.2/§4.11/§4.16."""
    cust = reference["customers"]
    assert cust.fields[:3] == ["id", "number", "displayName"]
    assert cust.lengths["displayName"] == 100 and "balanceDue" in cust.ro
    inv = reference["salesInvoices"]
    assert {"sellToAddressLine2", "billToPostCode", "disputeStatus"} <= set(inv.fields)
    assert inv.lengths["sellToAddressLine2"] == 50 and "billToCity" in inv.ro
    assert reference["generalLedgerSetup"].fields[-1] == "shortcutDimension8Code"


async def _live_rows(bc: BCClient, emulator: EmulatorHandle) -> dict[str, dict[str, Any]]:
    inv = (
        await bc.post(
            "salesInvoices",
            {
                "customerNumber": "10000",
                "salesInvoiceLines": [
                    {
                        "lineType": "Account",
                        "lineObjectNumber": "3010",
                        "quantity": 1,
                        "unitPrice": 1,
                        "taxCode": "25",
                        "dimensionSetLines": [{"code": "PROJEKT", "valueCode": "4005"}],
                    }
                ],
            },
        )
    ).body
    line = (
        await bc.get(f"salesInvoices({inv['id']})/salesInvoiceLines?$expand=dimensionSetLines")
    ).body["value"][0]
    purchase = (await bc.get("purchaseInvoices?$top=1&$expand=purchaseInvoiceLines")).body["value"][
        0
    ]
    rows = {
        "companies": (await bc.get(f"{emulator.api_root}/companies")).body["value"][0],
        "customers": (await bc.get("customers")).body["value"][0],
        "accounts": (await bc.get("accounts")).body["value"][0],
        "dimensions": (await bc.get("dimensions")).body["value"][0],
        "dimensionValues": (await bc.get("dimensionValues")).body["value"][0],
        "dimensionSetLines": line.pop("dimensionSetLines")[0],
        "salesInvoices": inv,
        "salesInvoiceLines": line,
        "purchaseInvoiceLines": purchase.pop("purchaseInvoiceLines")[0],
        "purchaseInvoices": purchase,
        "generalLedgerSetup": (await bc.get("generalLedgerSetup")).body["value"][0],
        "companyInformation": (await bc.get("companyInformation")).body["value"][0],
        "paymentTerms": (await bc.get("paymentTerms")).body["value"][0],
    }
    return {
        k: {f: v for f, v in row.items() if not f.startswith("@odata.")} for k, row in rows.items()
    }


async def test_every_entity_has_exactly_the_reference_fields(
    reference: dict[str, DocEntity], bc_client: BCClient, emulator: EmulatorHandle
) -> None:
    """bc-api.md §4.1-§4.17 tables: each served entity answers with exactly the documented fields
    (paymentTerms: [BCApps] APIV2PaymentTerms, since bc-api.md has no table for it)."""
    live = await _live_rows(bc_client, emulator)
    problems = []
    for name, doc in reference.items():
        have, want = set(live[name]), set(doc.fields)
        if have != want:
            problems.append(
                f"{name}: invented {sorted(have - want)}, missing {sorted(want - have)}"
            )
    assert set(live["paymentTerms"]) == PAYMENT_TERMS_FIELDS
    assert not problems, "\n".join(problems)


def test_read_only_flags_and_lengths_match_the_reference(reference: dict[str, DocEntity]) -> None:
    """bc-api.md §3/§4: RO fields reject writes (so the emulator's specs must flag them) and
    string(n) lengths are enforced on write (so they must match)."""
    problems = []
    for name, doc in reference.items():
        spec = API_SPECS[name]
        for f in doc.ro:
            if not spec.by_name[f].ro:
                problems.append(f"{name}.{f}: reference says RO, emulator writable")
        for f in doc.not_ro:
            if spec.by_name[f].ro and f != "lastModifiedDateTime":
                problems.append(f"{name}.{f}: reference says writable, emulator RO")
        for f, n in doc.lengths.items():
            if spec.by_name[f].max_len != n:
                problems.append(
                    f"{name}.{f}: reference string({n}), emulator {spec.by_name[f].max_len}"
                )
    assert not problems, "\n".join(problems)


def test_odatav4_services_have_the_contract_fields() -> None:
    """bc-contract.md table: the fields we use on each ODataV4 service exist with those names."""
    if not BC_CONTRACT.exists():
        pytest.skip(f"reference {BC_CONTRACT} is not present")
    text = BC_CONTRACT.read_text(encoding="utf-8")
    specs = {
        s.entity_set: s
        for s in (
            V4_DIMENSION_VALUES,
            V4_CUSTOMER_CARD,
            V4_GEN_BUS_POSTING_GROUPS,
            V4_CUSTOMER_POSTING_GROUPS,
        )
    }
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| ([^|]+) \| ([^|]+) \|$", text, flags=re.M)
    assert {r[0] for r in rows} == set(specs)
    for service, keys, used in rows:
        names = set(re.findall(r"`(\w+)`", keys + used))
        assert names <= set(specs[service].by_name), (service, names - set(specs[service].by_name))


def test_reference_file_location_is_next_to_the_repository() -> None:
    """The reference path the field tests use (../shared/reference from the repository root)."""
    assert Path(REPO_ROOT).parent / "shared" / "reference" == REFERENCE_DIR
