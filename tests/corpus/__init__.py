"""The bad-input corpus (issue 9): one JSON file per case, written by ``generate.py``."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
CONTENT_TYPE = "application/cloudevents+json"


@dataclass(frozen=True)
class Case:
    """One corpus message and what must become of it."""

    name: str
    description: str
    routing_key: str
    content_type: str
    headers: dict[str, Any]
    to_queue: bool
    body: bytes
    expect: dict[str, Any] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        return str(self.expect["outcome"])


def _body(spec: dict[str, Any]) -> bytes:
    if "body_text" in spec:
        return str(spec["body_text"]).encode()
    if "body_base64" in spec:
        return base64.b64decode(spec["body_base64"])
    if "body_fill" in spec:
        fill = spec["body_fill"]
        prefix = str(fill["prefix"]).encode()
        char = str(fill["char"]).encode()
        return prefix + char * ((int(fill["size"]) - len(prefix)) // len(char) + 1)
    body = spec["body"]
    for rep in spec.get("repeat", []):
        *parents, last = rep["path"]
        node = body
        for key in parents:
            node = node[key]
        node[last] = str(rep["text"]) * int(rep["count"])
    return json.dumps(body, ensure_ascii=False).encode()


def load(path: Path) -> Case:
    spec = json.loads(path.read_text(encoding="utf-8"))
    body = spec.get("body")
    routing_key = spec.get("routing_key") or (body.get("type") if isinstance(body, dict) else "")
    return Case(
        name=path.stem.split("-", 1)[1],
        description=str(spec.get("description", "")),
        routing_key=str(routing_key),
        content_type=str(spec.get("content_type", CONTENT_TYPE)),
        headers=dict(spec.get("headers", {})),
        to_queue=bool(spec.get("to_queue", False)),
        body=_body(spec),
        expect=dict(spec["expect"]),
    )


def cases() -> list[Case]:
    """Every case in file order."""
    return [load(p) for p in sorted(HERE.glob("*.json"))]
