"""System query options: ``$filter $select $expand $top $skip $orderby $skiptoken $count``.

``$expand`` is nested (``purchaseInvoiceLines($expand=dimensionSetLines;$select=id)``), so it has
its own small parser that splits on ``,`` / ``;`` only at parenthesis depth 0 and outside quotes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import query_error

KNOWN = {
    "$filter",
    "$select",
    "$expand",
    "$top",
    "$skip",
    "$orderby",
    "$skiptoken",
    "$count",
    "$schemaversion",
    "$format",
}


@dataclass
class ExpandItem:
    name: str
    options: QueryOptions


@dataclass
class QueryOptions:
    filter: str | None = None
    select: list[str] | None = None
    expand: list[ExpandItem] = field(default_factory=list)
    top: int | None = None
    skip: int | None = None
    orderby: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    skiptoken: str | None = None
    count: bool = False


def split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` at parenthesis depth 0 and outside single-quoted strings."""
    parts: list[str] = []
    depth = 0
    in_str = False
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if in_str:
            if ch == "'":
                if i + 1 < len(text) and text[i + 1] == "'":
                    i += 1
                else:
                    in_str = False
        elif ch == "'":
            in_str = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise query_error(f"Syntax error: unbalanced ')' in '{text}'.")
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if depth != 0 or in_str:
        raise query_error(f"Syntax error: unbalanced parentheses or quotes in '{text}'.")
    parts.append(text[start:])
    return parts


def _int_option(name: str, value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise query_error(f"Invalid value '{value}' for {name} query option found.") from None
    if n < 0:
        raise query_error(f"Invalid value '{value}' for {name} query option found.")
    return n


def parse_expand(text: str) -> list[ExpandItem]:
    items: list[ExpandItem] = []
    for raw in split_top(text, ","):
        part = raw.strip()
        if not part:
            raise query_error(f"Syntax error in $expand '{text}'.")
        if "(" in part:
            name, rest = part.split("(", 1)
            if not rest.endswith(")"):
                raise query_error(f"Syntax error in $expand '{text}'.")
            pairs: list[tuple[str, str]] = []
            for opt in split_top(rest[:-1], ";"):
                if not opt.strip():
                    continue
                if "=" not in opt:
                    raise query_error(f"Syntax error in $expand '{text}'.")
                k, v = opt.split("=", 1)
                pairs.append((k.strip(), v))
            options = parse_options(pairs, nested=True)
        else:
            name, options = part, QueryOptions()
        items.append(ExpandItem(name.strip(), options))
    return items


def parse_options(pairs: list[tuple[str, str]], *, nested: bool = False) -> QueryOptions:
    """Build options from decoded query pairs; unknown ``$`` options are rejected (as OData)."""
    q = QueryOptions()
    for key, value in pairs:
        if not key.startswith("$"):
            continue
        if key not in KNOWN:
            raise query_error(f"The query parameter '{key}' is not supported.")
        if key == "$filter":
            q.filter = value
        elif key == "$select":
            q.select = [s.strip() for s in value.split(",") if s.strip()]
        elif key == "$expand":
            q.expand = parse_expand(value)
        elif key == "$top":
            q.top = _int_option("$top", value)
        elif key == "$skip":
            q.skip = _int_option("$skip", value)
        elif key == "$orderby":
            q.orderby = []
            for item in value.split(","):
                bits = item.split()
                if not bits or len(bits) > 2 or (len(bits) == 2 and bits[1] not in ("asc", "desc")):
                    raise query_error(f"Syntax error in $orderby '{value}'.")
                q.orderby.append((bits[0], len(bits) == 2 and bits[1] == "desc"))
        elif key == "$skiptoken" and not nested:
            q.skiptoken = value
        elif key == "$count":
            if value not in ("true", "false"):
                raise query_error(f"Invalid value '{value}' for $count query option found.")
            q.count = value == "true"
    return q
