"""Small rules of the console and the API tokens, without a server."""

from __future__ import annotations

from worker.api.app import ApiToken, authenticate, parse_tokens
from worker.console.sessions import client_address
from worker.console.web import _next
from worker.ops.dlq import DeadLetter, Filters
from worker.ops.dlq.runs import literal


def test_tokens_with_names_and_read_only_marks() -> None:
    tokens = parse_tokens("ops=tok-ops-1234, support=tok-sup-5678:read,tok-bare-9999")
    assert tokens == {
        "tok-ops-1234": ApiToken("ops", False),
        "tok-sup-5678": ApiToken("support", True),
        "tok-bare-9999": ApiToken("admin", False),
    }
    # The :read mark is not part of the token: presenting the mark is not the token.
    assert authenticate(tokens, "tok-sup-5678") == ApiToken("support", True)
    assert authenticate(tokens, "tok-sup-5678:read") is None
    assert authenticate(tokens, "") is None
    assert parse_tokens("solo-token-1:read") == {"solo-token-1": ApiToken("admin", True)}


def test_forwarded_for_is_trusted_only_from_a_proxy_address() -> None:
    # From a private or loopback peer (a proxy), the entry that proxy appended counts.
    assert client_address("10.0.0.5", "198.51.100.7, 203.0.113.9") == "203.0.113.9"
    assert client_address("127.0.0.1", "203.0.113.9") == "203.0.113.9"
    # From a public peer, the header is the client's own words: ignored.
    assert client_address("8.8.4.4", "10.9.9.9") == "8.8.4.4"
    assert client_address("10.0.0.5", "not-an-address") == "10.0.0.5"


def test_after_sign_in_only_console_paths() -> None:
    assert _next("/console/dead-letters?by=org") == "/console/dead-letters?by=org"
    for hostile in ("https://evil.example/", "//evil.example/console", "/console\\@evil", None):
        assert _next(hostile) == "/console/organizations"


def test_a_group_key_with_glob_characters_matches_only_itself() -> None:
    letter = DeadLetter.from_message(
        b"{}", {"x-bc-org": "org[1]*", "x-bc-error-code": "X"}, content_type="application/json"
    )
    other = DeadLetter.from_message(
        b"{}", {"x-bc-org": "org1-anything", "x-bc-error-code": "X"}, content_type="a"
    )
    filters = Filters(org=literal("org[1]*"))
    assert filters.matches(letter)
    assert not filters.matches(other)
