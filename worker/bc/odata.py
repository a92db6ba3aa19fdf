"""OData helpers: literals, filters, URL segments, company names, enums, paging and ``$batch``.

Everything that turns a value into URL text lives here, so that no value from a configuration
or an event can change the host or the path of a request: tenant and environment are validated
and quoted as single path segments, the company name is an OData string literal encoded as one
segment, keys are literals, and filter values are literals.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from worker.bc.errors import BcError, BcUnavailable, from_response

# The language every request asks for (each $batch part too): BC translates its error messages
# into the request's language (bc-api.md Corrections 10) and the worker reads them in English.
ACCEPT_LANGUAGE = "en-US"

_T = TypeVar("_T")

MAX_BATCH = 100  # BC online: at most 100 operations per $batch (operational limits)
# Terms of one ``or`` filter: BC's OData stack refuses filters of more than 100 nodes ("The node
# count limit of '100' has been exceeded", MaxNodeCount; each ``f eq v`` is 3 nodes, each
# ``or`` 1), so 20 terms (79 nodes) leave room for the rest of a filter.
MAX_OR_TERMS = 20

_GUID = re.compile(r"^[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+$")
_ENVIRONMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,49}$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*$")
_ENUM_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_ESCAPE_RUN = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_OPERATORS = frozenset({"eq", "ne", "gt", "ge", "lt", "le"})


# --- validation -------------------------------------------------------------------------------


def is_guid(value: str) -> bool:
    """True for ``xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`` (hex, no braces)."""
    return bool(_GUID.match(value))


def guid(value: str | uuid.UUID) -> str:
    """A GUID as BC writes it (lowercase, no braces); ValueError for anything else."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str) or not _GUID.match(value):
        raise ValueError(f"not a GUID: {value!r}")
    return value.lower()


def is_valid_tenant(value: str) -> bool:
    """An Entra tenant is a GUID or a verified domain (``contoso.onmicrosoft.com``)."""
    return bool(_GUID.match(value) or _DOMAIN.match(value))


def is_valid_environment(value: str) -> bool:
    """BC environment names: letters, digits, ``-`` and ``_`` (``Production``, ``Sandbox-2``)."""
    return bool(_ENVIRONMENT.match(value))


def is_identifier(value: str) -> bool:
    """An OData identifier (entity set, property, service name); ``a/b`` for nested paths."""
    return bool(_IDENTIFIER.match(value))


# --- literals and filters ---------------------------------------------------------------------


class Guid(str):
    """A string that must be written as a GUID literal (unquoted) in a filter."""

    __slots__ = ()

    def __new__(cls, value: str | uuid.UUID) -> Guid:
        return super().__new__(cls, guid(value))


def quote_string(value: str) -> str:
    """OData string literal: single quotes around, each ``'`` doubled."""
    return "'" + value.replace("'", "''") + "'"


def format_datetime(value: datetime) -> str:
    """UTC ISO-8601 with ``Z`` (BC's form); naive values are taken as UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    text = value.replace(tzinfo=None, microsecond=0).isoformat(timespec="seconds")
    if value.microsecond:
        frac = f"{value.microsecond:06d}"
        text += "." + (frac[:3] if frac.endswith("000") else frac)
    return text + "Z"


def literal(value: object) -> str:
    """The OData literal of a Python value: strings quoted, dates/datetimes/GUIDs/numbers bare."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Guid | uuid.UUID):
        return guid(value)
    if isinstance(value, str):
        return quote_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"no OData literal for {value!r}")
        if isinstance(value, Decimal) and not value.is_finite():
            raise ValueError(f"no OData literal for {value!r}")
        return repr(value) if isinstance(value, float) else format(value, "f")
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"no OData literal for {type(value).__name__}")


def cond(field_name: str, op: str, value: object) -> str:
    """One comparison, e.g. ``cond("number", "eq", "10006")`` → ``number eq '10006'``."""
    if not is_identifier(field_name):
        raise ValueError(f"not an OData property: {field_name!r}")
    if op not in _OPERATORS:
        raise ValueError(f"unsupported operator: {op!r}")
    return f"{field_name} {op} {literal(value)}"


def all_of(*conditions: str | None) -> str:
    """Conditions joined with ``and`` (``None`` entries are skipped)."""
    parts = [c for c in conditions if c]
    if not parts:
        raise ValueError("an empty filter")
    return " and ".join(parts)


def one_of(field_name: str, values: Sequence[object]) -> str:
    """``(f eq a or f eq b)``: ``or`` on one field only, the only kind BC accepts (bc-api
    §5.4: "The 'OR' operator is not supported on distinct fields")."""
    terms = [cond(field_name, "eq", v) for v in values]
    if not terms:
        raise ValueError("one_of needs at least one value")
    return terms[0] if len(terms) == 1 else "(" + " or ".join(terms) + ")"


def eq_filter(**values: object) -> str:
    """``a eq 'x' and b eq 1`` from keyword arguments (in the given order)."""
    return all_of(*(cond(k, "eq", v) for k, v in values.items()))


# --- enums ------------------------------------------------------------------------------------


def decode_enum(value: str) -> str:
    """BC's escaped enum member → its name: ``G_x002F_L_x0020_Account`` → ``G/L Account``."""
    text = _ENUM_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        # Characters beyond the BMP come as two escaped UTF-16 surrogates.
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def encode_enum(value: str) -> str:
    """The inverse of :func:`decode_enum` (what BC sends for a member name)."""
    out = []
    for ch in value:
        code = ord(ch)
        if ch.isascii() and (ch.isalnum() or ch == "_"):
            out.append(ch)
        elif code > 0xFFFF:
            code -= 0x10000
            out.append(f"_x{0xD800 + (code >> 10):04X}__x{0xDC00 + (code & 0x3FF):04X}_")
        else:
            out.append(f"_x{code:04X}_")
    return "".join(out)


# --- URL segments and company names -----------------------------------------------------------


def segment(value: str) -> str:
    """Percent-encode a value as exactly one path segment (``/``, ``?``, ``#``, ``%`` escaped)."""
    if value in ("", ".", ".."):
        raise ValueError(f"not a path segment: {value!r}")
    return quote(value, safe="")


def decode_company_name(text: str) -> str:
    """Percent-decode a company name once, as users paste it (``CRONUS%20Sverige%20AB``).

    Only valid ``%XX`` runs that form UTF-8 are decoded; a literal ``%`` that is not an escape
    (``100%``, ``%zz``) stays, and ``+`` stays a plus.
    """

    def _one(match: re.Match[str]) -> str:
        run = match.group(0)
        raw = bytes(int(run[i + 1 : i + 3], 16) for i in range(0, len(run), 3))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return run

    return _ESCAPE_RUN.sub(_one, text)


def encode_key_literal(value: str) -> str:
    """A string key literal as it goes into a URL path: quotes doubled, then percent-encoded
    (``'`` kept as is, everything outside unreserved characters escaped)."""
    return quote(quote_string(value), safe="'")


def company_segment(name: str) -> str:
    """``Company('…')`` for the decoded company name (``'`` doubled, one encoded segment)."""
    if not name:
        raise ValueError("empty company name")
    return f"Company({encode_key_literal(name)})"


def key_segment(entity_set: str, *keys: tuple[str, object] | object) -> str:
    """``Set(<literal>)`` or ``Set(A='x',B='y')`` with literals encoded for a URL path."""
    if not is_identifier(entity_set):
        raise ValueError(f"not an OData entity set: {entity_set!r}")
    parts = []
    for key in keys:
        if isinstance(key, tuple):
            name, value = key
            if not is_identifier(name):
                raise ValueError(f"not an OData key name: {name!r}")
            parts.append(f"{name}={_path_literal(value)}")
        else:
            parts.append(_path_literal(key))
    return f"{entity_set}({','.join(parts)})"


def _path_literal(value: object) -> str:
    if isinstance(value, str) and not isinstance(value, Guid):
        return encode_key_literal(value)
    return quote(literal(value), safe="")


def query_string(params: Mapping[str, str]) -> str:
    """``?$filter=…&$expand=…`` with values percent-encoded (OData punctuation kept readable)."""
    if not params:
        return ""
    items = []
    for key, value in params.items():
        items.append(f"{quote(key, safe='$')}={quote(value, safe=chr(39) + '(),:$/')}")
    return "?" + "&".join(items)


def same_origin(url: str, base: str) -> bool:
    """True when ``url`` points at the scheme, host and port of ``base`` (nextLink check)."""
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


# --- paging -----------------------------------------------------------------------------------

GetJson = Callable[[str, Mapping[str, str]], Awaitable[Mapping[str, Any]]]


async def pages(
    get_json: GetJson, url: str, *, page_size: int | None = None
) -> AsyncIterator[list[dict[str, Any]]]:
    """Yield each page's ``value`` rows, following ``@odata.nextLink`` verbatim.

    ``page_size`` asks BC for smaller pages (``Prefer: odata.maxpagesize``). A nextLink that
    leaves BC's origin is refused: the bearer token must never go elsewhere.
    """
    headers = {"Prefer": f"odata.maxpagesize={page_size}"} if page_size else {}
    next_url: str | None = url
    while next_url:
        data = await get_json(next_url, headers)
        rows = data.get("value")
        if not isinstance(rows, list):
            raise BcUnavailable("Business Central answered a collection without 'value'.")
        yield [r for r in rows if isinstance(r, dict)]
        link = data.get("@odata.nextLink")
        if link is not None and (not isinstance(link, str) or not same_origin(link, url)):
            raise BcUnavailable("Business Central sent a nextLink to another host; refused.")
        next_url = link


# --- $batch -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchOperation:
    """One request inside a JSON ``$batch``; ``url`` is relative to the API root."""

    method: str
    url: str
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The answer to one operation, in the order the operations were given."""

    operation: BatchOperation
    status: int
    body: Mapping[str, Any] | None
    error: BcError | None

    @property
    def ok(self) -> bool:
        return self.error is None


def chunks(items: Sequence[_T], size: int = MAX_BATCH) -> Iterable[Sequence[_T]]:
    """Split operations into batches BC accepts (at most 100 each), or any items into runs."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def batch_body(operations: Sequence[BatchOperation]) -> dict[str, Any]:
    """The JSON body of one ``$batch`` request (ids are the operations' positions).

    Every part asks for English itself: whether BC applies the outer request's
    ``Accept-Language`` to the parts is UNCONFIRMED (bc-api.md §5.5 says nothing), so the
    stricter reading is taken (a part without its own header may answer in another language).
    """
    requests = []
    for index, op in enumerate(operations):
        headers = {"Accept-Language": ACCEPT_LANGUAGE, **op.headers}
        entry: dict[str, Any] = {"id": str(index + 1), "method": op.method, "url": op.url}
        if op.body is not None:
            headers.setdefault("Content-Type", "application/json")
            entry["body"] = dict(op.body)
        if headers:
            entry["headers"] = headers
        requests.append(entry)
    return {"requests": requests}


def batch_results(
    operations: Sequence[BatchOperation], answer: Mapping[str, Any]
) -> list[BatchResult]:
    """Match a ``$batch`` answer to its operations; a missing answer counts as an error."""
    by_id: dict[str, Mapping[str, Any]] = {}
    responses = answer.get("responses")
    if isinstance(responses, list):
        for resp in responses:
            if isinstance(resp, Mapping) and "id" in resp:
                by_id[str(resp["id"])] = resp
    results = []
    for index, op in enumerate(operations):
        resp = by_id.get(str(index + 1))
        if resp is None:
            err: BcError | None = BcUnavailable("Business Central's $batch answer missed a part.")
            results.append(BatchResult(op, 0, None, err))
            continue
        status = int(resp.get("status", 0))
        body = resp.get("body") if isinstance(resp.get("body"), Mapping) else None
        err = None
        if not 200 <= status < 300:
            err = from_response(status, body or {}, what=f"{op.method} {op.url}")
        results.append(BatchResult(op, status, body, err))
    return results
