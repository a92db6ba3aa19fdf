"""Structured logging: JSON in production, readable text on a terminal, secrets redacted.

Context (organization, event id, type, attempt) is bound with ``structlog.contextvars`` by the
consumer, so every line logged while handling a message carries it without threading it through.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import orjson
import structlog
from opentelemetry import trace

# Keys whose values are secrets wherever they appear in an event dict.
_SECRET_KEYS = re.compile(
    r"(secret|password|passwd|token|authorization|api[_-]?key|credential|cookie|fernet)", re.I
)
# Secret-looking fragments inside free text: bearer tokens, JWTs, URL userinfo, form fields.
_SECRET_TEXT = [
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1[REDACTED]"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), "[REDACTED-JWT]"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@"), r"\1[REDACTED]@"),
    (
        re.compile(
            r"(?i)((?:client_secret|access_token|password|secret)[\"']?\s*[=:]\s*[\"']?)[^\s&\"',}]+"
        ),
        r"\1[REDACTED]",
    ),
]
REDACTED = "[REDACTED]"
# Every _SECRET_TEXT pattern needs one of these fragments (lower-cased), so text without any of
# them skips the four substitutions: most log values are ids and words (make bench: ~50 µs per
# line). Plain ``in`` tests, because a case-insensitive alternation is ~7x slower.
_SECRET_HINTS = ("bearer", "eyj", "://", "access_token", "password", "secret")

# Literal secrets registered at run time (client secrets of loaded configs, the API token), so
# that even an unexpected place that prints one gets it masked. A tuple, replaced on register:
# a thread that redacts never iterates a set another thread is adding to.
_known_secrets: set[str] = set()
_secret_list: tuple[str, ...] = ()

# Field name -> "is a secret key"; names are few (code and context keys), the bound keeps a
# stray unbounded set of names from growing it.
_secret_key_memo: dict[str, bool] = {}
_SECRET_KEY_MEMO_MAX = 4096

# Short text -> its redacted form. Most logged values repeat (organization, event id and type
# on every line of an event, routing keys, outcomes), and each one is otherwise searched for
# every known secret, one per configured organization. A new dict when a secret is
# registered (a result computed before may hold it); emptied when full.
_text_memo: dict[str, str] = {}
_TEXT_MEMO_MAX = 4096
_TEXT_MEMO_LEN = 256


def register_secret(value: str | None) -> None:
    """Mask this exact value in every future log line (ignores short values)."""
    global _secret_list, _text_memo
    if value and len(value) >= 6 and value not in _known_secrets:
        _known_secrets.add(value)
        _secret_list = (*_secret_list, value)
        _text_memo = {}


def redact_text(text: str) -> str:
    """Mask secret-looking fragments and known secrets in free text."""
    if len(text) > _TEXT_MEMO_LEN:
        return _redact_text(text)
    memo = _text_memo
    out = memo.get(text)
    if out is None:
        out = _redact_text(text)
        if len(memo) >= _TEXT_MEMO_MAX:
            memo.clear()
        memo[text] = out
    return out


def _redact_text(text: str) -> str:
    for secret in _secret_list:
        if secret in text:
            text = text.replace(secret, REDACTED)
    lowered = text.lower()
    for hint in _SECRET_HINTS:
        if hint in lowered:
            break
    else:
        return text
    for pattern, repl in _SECRET_TEXT:
        text = pattern.sub(repl, text)
    return text


def _is_secret_key(key: str) -> bool:
    hit = _secret_key_memo.get(key)
    if hit is None:
        hit = _SECRET_KEYS.search(key) is not None
        if len(_secret_key_memo) < _SECRET_KEY_MEMO_MAX:
            _secret_key_memo[key] = hit
    return hit


def _redact_value(key: str, value: Any) -> Any:
    if value is None or value.__class__ is int or value.__class__ is bool:
        return value  # never masked, whatever the key (counts, flags)
    if _is_secret_key(key) and not isinstance(value, bool | int):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    return value


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: remove secrets and tokens from every field."""
    for key, value in list(event_dict.items()):
        if value.__class__ is str:  # most fields: skip _redact_value's type tests
            event_dict[key] = REDACTED if _is_secret_key(key) else redact_text(value)
        else:
            event_dict[key] = _redact_value(key, value)
    return event_dict


def add_trace_ids(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: ``trace_id`` / ``span_id`` of the current span, when there is one
    (also an incoming event's own trace while tracing is off here), so a log line leads to
    its trace."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict["trace_id"] = format(ctx.trace_id, "032x")
        event_dict["span_id"] = format(ctx.span_id, "016x")
    return event_dict


def _json_line(obj: Any, **kw: Any) -> str:
    """structlog's JSON serializer: orjson (~5x faster than ``json``), ``json`` for what orjson
    refuses (an integer beyond 64 bits); ``kw["default"]`` is structlog's repr fallback."""
    try:
        return orjson.dumps(obj, default=kw.get("default"), option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(obj, **kw)


class _StderrLogger:
    """structlog's output: one line to whatever ``sys.stderr`` is at call time (test capture
    swaps it), without the stdlib logging machinery (records, handlers, formatter) that
    structlog's own lines needed before (``make bench``: one line per event)."""

    def msg(self, message: str) -> None:
        stream = sys.stderr
        stream.write(message + "\n")
        stream.flush()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _stderr_logger(*_args: Any) -> _StderrLogger:
    return _STDERR


_STDERR = _StderrLogger()


def configure(fmt: str | None = None, level: str = "INFO") -> None:
    """Set up structlog and route stdlib logging (aio-pika, aiohttp) through the same output.

    structlog's lines take its own path (filter by level, processors, render, write); lines of
    stdlib loggers get the same processors through a :class:`ProcessorFormatter`."""
    use_json = (fmt or ("console" if sys.stderr.isatty() else "json")) == "json"
    head: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    tail: list[Any] = [
        structlog.processors.format_exc_info
        if use_json
        else structlog.processors.StackInfoRenderer(),
        redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_json_line)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*head, *tail, renderer],
        logger_factory=_stderr_logger,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            # A stdlib record's extra= fields, as structlog's own lines carry their fields.
            foreign_pre_chain=[*head, structlog.stdlib.ExtraAdder(), *tail],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter at INFO is noise for ops; their warnings still come through.
    for noisy in ("aio_pika", "aiormq", "aiohttp.access", "msal", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time (test capture swaps it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


@contextmanager
def bound(**context: Any) -> Iterator[None]:
    """Bind context for every log line inside the block (restored afterwards)."""
    tokens = structlog.contextvars.bind_contextvars(**context)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
