"""OData helpers: literals and filters survive a parser, company names survive URL encoding,
enums decode, paging and $batch behave as BC expects."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.bc.errors import BcUnavailable, BcValidationError
from worker.bc.odata import (
    MAX_BATCH,
    BatchOperation,
    Guid,
    all_of,
    batch_body,
    batch_results,
    chunks,
    company_segment,
    cond,
    decode_company_name,
    decode_enum,
    encode_enum,
    eq_filter,
    guid,
    is_valid_environment,
    is_valid_tenant,
    key_segment,
    literal,
    pages,
    query_string,
    segment,
)

# --- a tiny OData literal / filter parser (what a server does with our text) ------------------

_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INT = re.compile(r"^-?\d+$")


def parse_string(text: str) -> tuple[str, str]:
    """Parse a quoted literal at the start of text; return (value, rest)."""
    assert text[0] == "'"
    out, i = [], 1
    while True:
        if i >= len(text):
            raise ValueError("unterminated string")
        if text[i] == "'":
            if i + 1 < len(text) and text[i + 1] == "'":
                out.append("'")
                i += 2
                continue
            return "".join(out), text[i + 1 :]
        out.append(text[i])
        i += 1


def parse_literal(text: str) -> object:
    if text.startswith("'"):
        value, rest = parse_string(text)
        if rest:
            raise ValueError(f"text after string literal: {rest!r}")
        return value
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if _GUID.match(text):
        return uuid.UUID(text)
    if _DATETIME.match(text):
        return datetime.fromisoformat(text[:-1] + "+00:00")
    if _DATE.match(text):
        return date.fromisoformat(text)
    if _INT.match(text):
        return int(text)
    return Decimal(text)


def parse_filter(text: str) -> list[tuple[str, str, object]]:
    """``a eq 'x' and b gt 3`` → [(a, eq, 'x'), (b, gt, 3)]."""
    out: list[tuple[str, str, object]] = []
    rest = text
    while True:
        name, op, rest = rest.split(" ", 2)
        value: object
        if rest.startswith("'"):
            value, rest = parse_string(rest)
        else:
            value_text, _, tail = rest.partition(" ")
            value, rest = parse_literal(value_text), (" " + tail if tail else "")
        out.append((name, op, value))
        if not rest:
            return out
        assert rest.startswith(" and "), rest
        rest = rest[len(" and ") :]


def parse_company_segment(path_segment: str) -> str:
    """What the server sees: percent-decode the segment, then read Company('<literal>')."""
    assert "/" not in path_segment and "?" not in path_segment and "#" not in path_segment
    decoded = unquote(path_segment, errors="strict")
    assert decoded.startswith("Company(") and decoded.endswith(")")
    value, rest = parse_string(decoded[len("Company(") : -1])
    assert rest == ""
    return value


# --- literals ---------------------------------------------------------------------------------


@given(st.text())
def test_string_literal_round_trips(value: str) -> None:
    assert parse_literal(literal(value)) == value


@given(
    st.one_of(
        st.integers(),
        st.booleans(),
        st.dates(),
        st.uuids(),
        st.decimals(allow_nan=False, allow_infinity=False, places=4),
        st.datetimes(timezones=st.just(UTC)),
    )
)
def test_other_literals_round_trip(value: object) -> None:
    assert parse_literal(literal(value)) == value


@given(st.datetimes())
def test_naive_datetimes_are_taken_as_utc(value: datetime) -> None:
    assert parse_literal(literal(value)) == value.replace(tzinfo=UTC)


def test_literal_forms_match_bc() -> None:
    assert literal("O'Brien") == "'O''Brien'"
    assert literal(date(2024, 1, 1)) == "2024-01-01"
    assert (
        literal(datetime(2019, 8, 18, 20, 5, 51, 603000, tzinfo=UTC)) == "2019-08-18T20:05:51.603Z"
    )
    gid = "7C2D0A94-3B5E-4F1A-9E8B-2C4D6F8A1B3E"
    assert literal(Guid(gid)) == gid.lower()
    assert literal(None) == "null"
    with pytest.raises(ValueError):
        literal(float("nan"))


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[a-z][A-Za-z0-9]{0,15}", fullmatch=True),
            st.sampled_from(["eq", "ne", "gt", "ge", "lt", "le"]),
            st.one_of(st.text(), st.integers(), st.dates(), st.uuids()),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_filters_parse_back_to_their_conditions(conds: list[tuple[str, str, object]]) -> None:
    text = all_of(*(cond(f, op, v) for f, op, v in conds))
    assert parse_filter(text) == conds


def test_filter_rejects_injection_in_names_and_operators() -> None:
    with pytest.raises(ValueError):
        cond("number eq '1' or number", "eq", "x")
    with pytest.raises(ValueError):
        cond("number", "eq '1' or", "x")
    assert eq_filter(number="1' or '1' eq '1") == "number eq '1'' or ''1'' eq ''1'"


def test_guid_validation() -> None:
    assert guid("7C2D0A94-3B5E-4F1A-9E8B-2C4D6F8A1B3E") == "7c2d0a94-3b5e-4f1a-9e8b-2c4d6f8a1b3e"
    for bad in ("{7c2d0a94-3b5e-4f1a-9e8b-2c4d6f8a1b3e}", "7c2d0a94", "x" * 36, "1) or (1"):
        with pytest.raises(ValueError):
            guid(bad)
        with pytest.raises(ValueError):
            Guid(bad)


# --- URL segments -----------------------------------------------------------------------------


def test_tenant_and_environment_validation() -> None:
    assert is_valid_tenant("7c2d0a94-3b5e-4f1a-9e8b-2c4d6f8a1b3e")
    assert is_valid_tenant("contoso.onmicrosoft.com")
    for bad in ("", "common", "../evil", "a/b", "evil.com/x", "x y.com", "a.b?c"):
        assert not is_valid_tenant(bad), bad
    assert is_valid_environment("Production")
    assert is_valid_environment("Sandbox-2_test")
    for bad in ("", "..", "a/b", "Prod%2F", "Prod uction", "x" * 60):
        assert not is_valid_environment(bad), bad


@given(st.text(min_size=1).filter(lambda s: s not in (".", "..")))
def test_segment_is_one_path_segment(value: str) -> None:
    seg = segment(value)
    assert seg.isascii()
    assert not set(seg) & set("/?#")
    assert unquote(seg, errors="strict") == value


@given(st.text(min_size=1))
def test_company_name_round_trips_through_the_url(name: str) -> None:
    seg = company_segment(name)
    assert seg.isascii() and " " not in seg
    assert parse_company_segment(seg) == name


@given(st.text(min_size=1))
def test_url_encoded_user_input_decodes_to_the_name(name: str) -> None:
    from urllib.parse import quote

    assert decode_company_name(quote(name, safe="")) == name
    assert decode_company_name(quote(name, safe=" ")) == name


@given(st.text(alphabet=st.characters(blacklist_characters="%")))
def test_names_without_percent_are_kept(name: str) -> None:
    assert decode_company_name(name) == name


def test_company_name_examples() -> None:
    assert decode_company_name("CRONUS%20Sverige%20AB") == "CRONUS Sverige AB"
    assert decode_company_name("A%2FB") == "A/B"
    assert decode_company_name("100% Consulting") == "100% Consulting"
    assert decode_company_name("%zz AB") == "%zz AB"
    assert decode_company_name("Caf%E9") == "Caf%E9"  # not UTF-8: left as typed
    assert decode_company_name("M%C3%B6lndal") == "Mölndal"
    assert decode_company_name("A+B") == "A+B"
    assert decode_company_name("%2520") == "%20"  # decoded once only
    assert company_segment("CRONUS Sverige AB") == "Company('CRONUS%20Sverige%20AB')"
    assert company_segment("O'Neil & Co/AB") == "Company('O''Neil%20%26%20Co%2FAB')"
    assert company_segment("Mölndal") == "Company('M%C3%B6lndal')"


def test_key_segments_quote_their_literals() -> None:
    assert key_segment("CustomerCard", "10 006/A") == "CustomerCard('10%20006%2FA')"
    assert (
        key_segment("DimensionValues", ("Dimension_Code", "PROJEKT"), ("Code", "O'1"))
        == "DimensionValues(Dimension_Code='PROJEKT',Code='O''1')"
    )
    with pytest.raises(ValueError):
        key_segment("Customer/../x", "1")


def test_query_string_encodes_reserved_characters() -> None:
    qs = query_string({"$filter": eq_filter(number="A&B#C+D%E?F")})
    assert qs.startswith("?$filter=number%20eq%20'")
    parsed = urlsplit("https://h/x" + qs)
    assert parsed.fragment == ""
    assert "&" not in parsed.query
    assert unquote(parsed.query.split("=", 1)[1]) == "number eq 'A&B#C+D%E?F'"


# --- enums ------------------------------------------------------------------------------------


def test_enum_examples() -> None:
    assert decode_enum("_x0020_") == " "
    assert decode_enum("G_x002F_L_x0020_Account") == "G/L Account"
    assert decode_enum("Credit_x0020_Memo") == "Credit Memo"
    assert decode_enum("Begin_x002D_Total") == "Begin-Total"
    assert decode_enum("Draft") == "Draft"
    assert encode_enum("G/L Account") == "G_x002F_L_x0020_Account"


@given(st.text(alphabet=st.characters(codec="utf-16", exclude_categories=["Cs"])))
def test_enum_round_trip(name: str) -> None:
    if "_x" in name:  # BC escapes an underscore only in names it cannot tell apart
        return
    assert decode_enum(encode_enum(name)) == name


# --- paging -----------------------------------------------------------------------------------


class FakePagedServer:
    """Serves 7 rows in pages of at most the requested size (default 3), like BC's nextLink."""

    def __init__(self, rows: int = 7, base: str = "https://bc.example/api") -> None:
        self.rows = [{"n": i} for i in range(rows)]
        self.base = base
        self.seen: list[tuple[str, dict[str, str]]] = []

    async def get_json(self, url: str, headers: Mapping[str, str]) -> Mapping[str, Any]:
        self.seen.append((url, dict(headers)))
        size = 3
        if "Prefer" in headers:
            size = int(headers["Prefer"].split("=")[1])
        skip = int(url.split("$skiptoken=")[1]) if "$skiptoken=" in url else 0
        page = self.rows[skip : skip + size]
        data: dict[str, Any] = {"value": page}
        if skip + size < len(self.rows):
            data["@odata.nextLink"] = f"{self.base}/items?$skiptoken={skip + size}"
        return data


async def test_pages_follow_next_link_and_honour_page_size() -> None:
    server = FakePagedServer()
    got = [page async for page in pages(server.get_json, f"{server.base}/items")]
    assert [len(p) for p in got] == [3, 3, 1]
    assert [r["n"] for p in got for r in p] == list(range(7))

    server = FakePagedServer()
    got = [page async for page in pages(server.get_json, f"{server.base}/items", page_size=5)]
    assert [len(p) for p in got] == [5, 2]
    assert all(h == {"Prefer": "odata.maxpagesize=5"} for _, h in server.seen)


async def test_pages_refuse_a_next_link_to_another_host() -> None:
    server = FakePagedServer(base="https://evil.example/api")
    with pytest.raises(BcUnavailable):
        async for _ in pages(server.get_json, "https://bc.example/api/items"):
            pass
    assert len(server.seen) == 1  # the token never went to evil.example


# --- $batch -----------------------------------------------------------------------------------


def test_batches_are_chunked_at_100() -> None:
    ops = [BatchOperation("POST", f"x({i})") for i in range(250)]
    sizes = [len(c) for c in chunks(ops)]
    assert sizes == [MAX_BATCH, MAX_BATCH, 50]
    body = batch_body(list(chunks(ops))[2])
    assert [r["id"] for r in body["requests"]] == [str(i) for i in range(1, 51)]
    # Each part asks for English itself (bc-api.md Corrections 10; inheritance UNCONFIRMED).
    assert body["requests"][0] == {
        "id": "1",
        "method": "POST",
        "url": "x(200)",
        "headers": {"Accept-Language": "en-US"},
    }


def test_batch_results_match_answers_by_id() -> None:
    ops = [
        BatchOperation("POST", "a", {"code": "P"}),
        BatchOperation("PATCH", "b", {"valueCode": "1"}, {"If-Match": "*"}),
        BatchOperation("POST", "c"),
    ]
    body = batch_body(ops)
    assert body["requests"][1]["headers"] == {
        "Accept-Language": "en-US",
        "If-Match": "*",
        "Content-Type": "application/json",
    }
    answer = {
        "responses": [
            {
                "id": "2",
                "status": 400,
                "body": {"error": {"code": "Application_DialogException", "message": "bad"}},
            },
            {"id": "1", "status": 201, "body": {"id": "x"}},
        ]
    }
    results = batch_results(ops, answer)
    assert results[0].ok and results[0].body == {"id": "x"}
    assert isinstance(results[1].error, BcValidationError)
    assert results[1].error.code == "Application_DialogException"
    assert isinstance(results[2].error, BcUnavailable)  # no answer for part 3
