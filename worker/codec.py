"""JSON on the hot path (event bodies, BC request and response bodies, log lines): orjson,
with the standard library's reading wherever the two could differ.

orjson parses and serializes 3-10x faster than ``json`` (``make bench`` scenario 1). Two
differences matter for correctness, so :func:`loads` hands such bodies to ``json``: orjson turns
an integer beyond 64 bits into a float without saying so (a rounded number in BC is worse than
an error), and it refuses what ``json`` reads (UTF-16, a byte-order mark, NaN): the same body is
accepted or refused as before.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# A run of 20 digits may be an integer orjson would round (u64 ends at 20 digits). Digits
# inside strings (ids, account numbers) also match: those bodies take json's slower path.
_LONG_DIGITS = re.compile(rb"\d{20}")


def loads(raw: bytes | str) -> Any:
    """Parse JSON exactly as ``json.loads`` does (raises ``ValueError`` on bad input)."""
    if isinstance(raw, bytes) and _LONG_DIGITS.search(raw) is None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # json decides (it reads a few things orjson refuses) and words the error
    return json.loads(raw)


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, as ``json.dumps(obj, ensure_ascii=False, separators=(",", ":"))``
    would write it; raises ``TypeError`` for types JSON has no form for (orjson writes
    datetimes in ISO 8601) and ``ValueError`` for NaN or infinity (never sent as ``null``)."""
    try:
        out = orjson.dumps(obj)
    except TypeError:
        out = b""  # e.g. an integer beyond 64 bits: json writes it (or raises the TypeError)
    if not out or b"null" in out:
        # orjson writes NaN and infinity as null: json tells a real None from those.
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    return out
