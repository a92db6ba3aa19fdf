"""Fault injection rules (``POST /_emulator/faults``).

A rule matches by tenant (GUID or domain alias), HTTP method and a regex searched in the
*decoded* request path; it fires with ``probability`` (a seedable RNG; probability 1 never
draws, so it is deterministic) at most ``count`` times. Kinds:

- ``latency``: wait ``latency_ms`` then serve normally;
- ``status``: answer ``status`` (429/500/502/503/504/408) with a BC-like body and an
  optional ``Retry-After``;
- ``hang``: never answer; the request ends when the client goes away or the server stops;
- ``drop``: close the TCP connection without an answer;
- ``expire_tokens``: every token issued so far for the tenant expires (the request then gets 401).

``after: true`` (``status`` and ``drop`` only, BC endpoints): the request is served first, its
effects stay, and then the answer is replaced by the fault: BC did the work but the client never
heard (a gateway timeout after the commit, a connection lost on the way back).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

KINDS = ("latency", "status", "hang", "drop", "expire_tokens")

# UNCONFIRMED (bc-api §6 gives statuses only): the codes BC uses in these bodies.
STATUS_BODIES: dict[int, tuple[str, str]] = {
    408: ("RequestTimeout", "The operation has timed out."),
    429: ("TooManyRequests", "Too many requests. Reduce the request rate and try again later."),
    500: ("Internal_ServerError", "An unexpected error occurred on the server."),
    502: ("BadGateway", "Bad Gateway."),
    503: ("ServiceUnavailable", "Service Temporarily Unavailable."),
    504: ("GatewayTimeout", "Gateway Timeout."),
}


@dataclass
class FaultRule:
    id: int
    kind: str
    tenant: str | None = None
    method: str | None = None
    path: str | None = None
    probability: float = 1.0
    count: int | None = None
    latency_ms: float = 0.0
    status: int = 503
    retry_after: float | None = None
    after: bool = False
    applied: int = 0
    _regex: re.Pattern[str] | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "tenant": self.tenant,
            "method": self.method,
            "path": self.path,
            "probability": self.probability,
            "count": self.count,
            "latency_ms": self.latency_ms,
            "status": self.status,
            "retry_after": self.retry_after,
            "after": self.after,
            "applied": self.applied,
        }

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.applied >= self.count


class Faults:
    def __init__(self, seed: int | None = 0) -> None:
        self.rules: list[FaultRule] = []
        self.rng = random.Random(seed)
        self._next_id = 1

    def reseed(self, seed: int | None) -> None:
        self.rng = random.Random(seed)

    def add(self, spec: dict[str, Any]) -> FaultRule:
        allowed = {
            "kind",
            "tenant",
            "method",
            "path",
            "probability",
            "count",
            "latency_ms",
            "status",
            "retry_after",
            "after",
            "seed",
        }
        unknown = set(spec) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields {sorted(unknown)}; allowed: {sorted(allowed)}")
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        prob = float(spec.get("probability", 1.0))
        if not 0.0 <= prob <= 1.0:
            raise ValueError("probability must be within 0..1")
        status = int(spec.get("status", 503))
        if kind == "status" and status not in STATUS_BODIES:
            raise ValueError(f"status must be one of {sorted(STATUS_BODIES)}")
        after = spec.get("after", False)
        if not isinstance(after, bool):
            raise ValueError("after must be true or false")
        if after and kind not in ("status", "drop"):
            raise ValueError("after applies to status and drop faults only")
        count = spec.get("count")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ValueError("count must be a positive integer")
        path = spec.get("path")
        if "seed" in spec:
            self.reseed(spec["seed"])
        rule = FaultRule(
            id=self._next_id,
            kind=kind,
            tenant=spec.get("tenant"),
            method=(spec.get("method") or None) and str(spec["method"]).upper(),
            path=path,
            probability=prob,
            count=count,
            latency_ms=float(spec.get("latency_ms", 0.0)),
            status=status,
            retry_after=spec.get("retry_after"),
            after=after,
            _regex=re.compile(path) if path else None,
        )
        self._next_id += 1
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    def remove(self, rule_id: int) -> bool:
        before = len(self.rules)
        self.rules = [r for r in self.rules if r.id != rule_id]
        return len(self.rules) != before

    def match(self, tenants: set[str], method: str, path: str) -> list[FaultRule]:
        """Rules that fire for this request (counts are consumed here)."""
        fired: list[FaultRule] = []
        for rule in self.rules:
            if rule.exhausted:
                continue
            if rule.tenant is not None and rule.tenant.lower() not in tenants:
                continue
            if rule.method is not None and rule.method != method:
                continue
            if rule._regex is not None and not rule._regex.search(path):
                continue
            if rule.probability < 1.0 and self.rng.random() >= rule.probability:
                continue
            rule.applied += 1
            fired.append(rule)
        return fired
