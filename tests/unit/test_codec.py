"""worker/codec.py: orjson's speed, json's reading and writing wherever the two differ."""

from __future__ import annotations

import json

import pytest

from worker import codec


def test_an_integer_beyond_64_bits_is_read_exactly_not_rounded() -> None:
    # orjson alone reads this as 1.2345678901234568e+29: a rounded number sent on to BC.
    body = b'{"quantity": 123456789012345678901234567891}'
    assert codec.loads(body) == {"quantity": 123456789012345678901234567891}


@pytest.mark.parametrize(
    "body",
    [
        '{"name": "Åsa"}'.encode("utf-16"),  # json detects UTF-16; orjson refuses it
        b'\xef\xbb\xbf{"name": "x"}',  # a byte-order mark
        b'{"amount": NaN}',
    ],
)
def test_what_json_reads_is_still_read_the_same(body: bytes) -> None:
    assert repr(codec.loads(body)) == repr(json.loads(body))


def test_bad_json_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        codec.loads(b"{not json")


def test_nan_is_refused_rather_than_sent_as_null() -> None:
    with pytest.raises(ValueError):
        codec.dumps({"unitPrice": float("nan")})
    assert codec.dumps({"email": None, "n": 1}) == b'{"email":null,"n":1}'


def test_written_as_compact_utf8_like_json() -> None:
    obj = {"displayName": "Kund Åäö", "amount": 1e16, "lines": [1, 2.5], "big": 10**30}
    expected = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    assert codec.dumps(obj) == expected
    with pytest.raises(TypeError):
        codec.dumps({"s": {1, 2}})
