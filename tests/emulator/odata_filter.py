"""``$filter`` for the subset BC supports (bc-api §5.4): a tokenizer and a recursive-descent parser.

Grammar::

    expr    := and ("or" and)*
    and     := unary ("and" unary)*
    unary   := "not" unary | primary
    primary := "(" expr ")" | func "(" field "," string ")" | operand cmp operand
    cmp     := eq | ne | gt | ge | lt | le
    operand := field | literal
    literal := 'str''ing' | 2024-01-31 | 2024-01-31T10:00:00.123Z | <guid> | 12 | 1.5
             | true | false | null

``or`` is only allowed when every operand of it names the same field (BC: "The 'OR' operator is
not supported on distinct fields"). Literals are typed: a GUID is unquoted, a date is unquoted
and is not comparable to a datetime, a quoted GUID is a string (all as OData does).
Compiled filters expose their top-level ``field eq value`` terms so tables can use an index.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .entities import EDM, EntitySpec, Field, parse_datetime, valid_date
from .errors import BCError, query_error

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\w-]))
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+\- ]\d{2}:\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\w:]))
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDfFlL]?(?![\w.]))
  | (?P<string>'(?:[^']|'')*')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
    """,
    re.X,
)

COMPARISONS = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
}
_SWAP = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}
FUNCTIONS = ("contains", "startswith", "endswith")
_KEYWORDS = {"and", "or", "not", *COMPARISONS}


@dataclass(frozen=True)
class Tok:
    kind: str
    text: str
    pos: int


@dataclass(frozen=True)
class Lit:
    kind: str  # string | number | date | datetime | guid | bool | null
    value: Any
    text: str


@dataclass(frozen=True)
class Fld:
    name: str
    pos: int


@dataclass(frozen=True)
class Cmp:
    field: Fld
    op: str
    lit: Lit


@dataclass(frozen=True)
class Func:
    name: str
    field: Fld
    lit: Lit


@dataclass(frozen=True)
class BoolOp:
    op: str  # and | or
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Cmp | Func | BoolOp | Not

LIT_EDM = {
    "string": "Edm.String",
    "number": "Edm.Decimal",
    "date": "Edm.Date",
    "datetime": "Edm.DateTimeOffset",
    "guid": "Edm.Guid",
    "bool": "Edm.Boolean",
    "null": "null",
}


def tokenize(text: str) -> list[Tok]:
    toks: list[Tok] = []
    i = 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is None:
            raise query_error(
                f"Syntax error: character '{text[i]}' is not valid at position {i} in '{text}'."
            )
        kind = m.lastgroup or ""
        if kind != "ws":
            toks.append(Tok(kind, m.group(), i))
        i = m.end()
    toks.append(Tok("eof", "", len(text)))
    return toks


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    def peek(self) -> Tok:
        return self.toks[self.i]

    def next(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def error(self, tok: Tok) -> BCError:
        return query_error(f"Syntax error at position {tok.pos} in '{self.text}'.")

    def is_word(self, word: str) -> bool:
        tok = self.peek()
        return tok.kind == "ident" and tok.text == word

    def parse(self) -> Node:
        node = self.or_()
        if self.peek().kind != "eof":
            raise self.error(self.peek())
        return node

    def or_(self) -> Node:
        items = [self.and_()]
        while self.is_word("or"):
            self.next()
            items.append(self.and_())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def and_(self) -> Node:
        items = [self.unary()]
        while self.is_word("and"):
            self.next()
            items.append(self.unary())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def unary(self) -> Node:
        if self.is_word("not"):
            self.next()
            return Not(self.unary())
        return self.primary()

    def primary(self) -> Node:
        tok = self.peek()
        if tok.kind == "lparen":
            self.next()
            node = self.or_()
            if self.next().kind != "rparen":
                raise self.error(self.toks[self.i - 1])
            return node
        if tok.kind == "ident" and tok.text in FUNCTIONS and self.toks[self.i + 1].kind == "lparen":
            self.next()
            self.next()
            arg = self.operand()
            if self.next().kind != "comma":
                raise self.error(self.toks[self.i - 1])
            lit = self.operand()
            if self.next().kind != "rparen":
                raise self.error(self.toks[self.i - 1])
            if not isinstance(arg, Fld) or not isinstance(lit, Lit):
                raise query_error(
                    f"The function '{tok.text}' needs a property and a literal in '{self.text}'."
                )
            return Func(tok.text, arg, lit)
        left = self.operand()
        op_tok = self.next()
        if op_tok.kind != "ident" or op_tok.text not in COMPARISONS:
            raise self.error(op_tok)
        right = self.operand()
        op = op_tok.text
        if isinstance(left, Fld) and isinstance(right, Lit):
            return Cmp(left, op, right)
        if isinstance(left, Lit) and isinstance(right, Fld):
            return Cmp(right, _SWAP[op], left)
        raise query_error(
            f"Only comparisons of a property with a literal are supported in '{self.text}'."
        )

    def operand(self) -> Fld | Lit:
        tok = self.next()
        k = tok.kind
        if k == "string":
            return Lit("string", tok.text[1:-1].replace("''", "'"), tok.text)
        if k == "number":
            t = tok.text.rstrip("mMdDfFlL")
            return Lit("number", float(t) if any(c in t for c in ".eE") else int(t), tok.text)
        if k == "date":
            if not valid_date(tok.text):
                raise query_error(f"The date '{tok.text}' is not valid in '{self.text}'.")
            return Lit("date", tok.text, tok.text)
        if k == "datetime":
            norm = parse_datetime(tok.text.replace(" ", "+"))
            if norm is None:
                raise query_error(f"The datetime '{tok.text}' is not valid in '{self.text}'.")
            return Lit("datetime", norm, tok.text)
        if k == "guid":
            return Lit("guid", tok.text.lower(), tok.text)
        if k == "ident":
            if tok.text in ("true", "false"):
                return Lit("bool", tok.text == "true", tok.text)
            if tok.text == "null":
                return Lit("null", None, tok.text)
            if tok.text in _KEYWORDS:
                raise self.error(tok)
            return Fld(tok.text, tok.pos)
        raise self.error(tok)


def parse(text: str) -> Node:
    return _Parser(text).parse()


# ---- compile ------------------------------------------------------------------------------------

Predicate = Callable[[dict[str, Any]], bool]

_COMPATIBLE = {
    "string": ("string",),
    "enum": ("string",),
    "guid": ("guid",),
    "number": ("number",),
    "int": ("number",),
    "int64": ("number",),
    "bool": ("bool",),
    "date": ("date",),
    "datetime": ("datetime",),
}

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and b is not None and a > b,
    "ge": lambda a, b: a is not None and b is not None and a >= b,
    "lt": lambda a, b: a is not None and b is not None and a < b,
    "le": lambda a, b: a is not None and b is not None and a <= b,
}


@dataclass
class Filter:
    predicate: Predicate
    eqs: list[tuple[str, Any]]  # top-level ``field eq value`` terms (index candidates)
    fields: set[str]


def _field(spec: EntitySpec, fld: Fld) -> Field:
    f = spec.by_name.get(fld.name)
    if f is None:
        raise query_error(
            f"Could not find a property named '{fld.name}' on type '{spec.qualified}'."
        )
    return f


def _value(f: Field, op: str, lit: Lit) -> Any:
    if lit.kind == "null":
        if op not in ("eq", "ne"):
            raise query_error(f"The null literal cannot be used with operator '{op}'.")
        return None
    if lit.kind not in _COMPATIBLE[f.type]:
        raise query_error(
            "A binary operator with incompatible types was detected. Found operand types "
            f"'{EDM[f.type]}' and '{LIT_EDM[lit.kind]}' for operator kind '{COMPARISONS[op]}'."
        )
    if f.type == "enum":
        # UNCONFIRMED (bc-api §3): filtering enums with a plain string literal; we accept the
        # escaped member name (as returned in JSON) and reject anything else.
        if lit.value not in f.enum:
            raise query_error(f"The string '{lit.value}' is not a valid enumeration type constant.")
        return lit.value
    # Code fields are stored upper-cased (entities.coerce). Whether BC upper-cases a lower-case
    # literal before comparing is UNCONFIRMED (bc-api Corrections 8); the emulator takes the
    # stricter reading: the literal is compared as written, so ``number eq 'ab-12'`` does not
    # find ``AB-12``. A client must upper-case what it looks for in a Code field.
    return lit.value


def _fields_of(node: Node) -> set[str]:
    if isinstance(node, Cmp | Func):
        return {node.field.name}
    if isinstance(node, Not):
        return _fields_of(node.item)
    out: set[str] = set()
    for item in node.items:
        out |= _fields_of(item)
    return out


def _compile(node: Node, spec: EntitySpec) -> Predicate:
    if isinstance(node, Cmp):
        f = _field(spec, node.field)
        name, value, fn = f.name, _value(f, node.op, node.lit), _OPS[node.op]
        return lambda row: fn(row.get(name), value)
    if isinstance(node, Func):
        f = _field(spec, node.field)
        if f.type != "string" or node.lit.kind != "string":
            raise query_error(
                f"The function '{node.name}' needs a string property and a string literal."
            )
        name = f.name
        needle = str(node.lit.value)  # as written, like comparisons (see _value)
        if node.name == "contains":
            return lambda row: needle in str(row.get(name, ""))
        if node.name == "startswith":
            return lambda row: str(row.get(name, "")).startswith(needle)
        return lambda row: str(row.get(name, "")).endswith(needle)
    if isinstance(node, Not):
        inner = _compile(node.item, spec)
        return lambda row: not inner(row)
    parts = [_compile(item, spec) for item in node.items]
    if node.op == "or":
        if len(_fields_of(node)) > 1:
            raise BCError(
                400, "BadRequest", "The 'OR' operator is not supported on distinct fields"
            )
        return lambda row: any(p(row) for p in parts)
    return lambda row: all(p(row) for p in parts)


def _eqs(node: Node, spec: EntitySpec) -> list[tuple[str, Any]]:
    if isinstance(node, Cmp) and node.op == "eq" and node.lit.kind != "null":
        f = spec.by_name[node.field.name]
        return [(f.name, _value(f, "eq", node.lit))]
    if isinstance(node, BoolOp) and node.op == "and":
        out: list[tuple[str, Any]] = []
        for item in node.items:
            out += _eqs(item, spec)
        return out
    return []


# The OData stack's MaxNodeCount (default 100). Secondary source: a BC custom API page answered
# "The node count limit of '100' has been exceeded…" to 31 ``startswith`` terms joined by ``or``
# (community.dynamics.com thread f4bc1a3e-3956-ef11-a316-6045bdec6b18); 1 or 2 worked. How
# ODataLib counts is approximated here: a comparison or function call is 3 nodes (operator,
# property, literal), each and/or joining two terms 1, a not 1.
MAX_NODE_COUNT = 100


def node_count(node: Node) -> int:
    if isinstance(node, Cmp | Func):
        return 3
    if isinstance(node, Not):
        return 1 + node_count(node.item)
    return len(node.items) - 1 + sum(node_count(item) for item in node.items)


def compile_filter(text: str, spec: EntitySpec) -> Filter:
    """Parse and type-check ``text`` against ``spec``; BC-style 400 errors on any problem."""
    if not text.strip():
        raise query_error("The $filter expression is empty.")
    node = parse(text)
    if node_count(node) > MAX_NODE_COUNT:
        raise query_error(
            f"The node count limit of '{MAX_NODE_COUNT}' has been exceeded. To increase the "
            "limit, set the 'MaxNodeCount' property on EnableQueryAttribute or "
            "ODataValidationSettings."
        )
    predicate = _compile(node, spec)
    return Filter(predicate, _eqs(node, spec), _fields_of(node))
