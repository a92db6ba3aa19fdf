"""Generate ``schemas/``: one JSON Schema per event type and an AsyncAPI 3.1 document.

Run ``make schemas`` (``python -m worker.events.schemas``); a test fails when the checked-in
files drift from the models. The envelope part comes from ``worker.events.envelope`` (the
CloudEvents rules the worker enforces), the ``data`` part from each type's model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from worker.events.envelope import CONTENT_TYPE, envelope_json_schema
from worker.events.models import ALL_TYPES, INCOMING, TRACE_CONTEXT_SCHEMA

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
# Written by worker.api.contract (the admin API's OpenAPI document), not from the events.
NOT_OURS = frozenset({"openapi.json"})
ASYNCAPI_VERSION = "3.1.0"


def event_schema(type_: str) -> dict[str, Any]:
    """The JSON Schema of one whole CloudEvent of this type (envelope + data)."""
    data_schema = ALL_TYPES[type_].model_json_schema(
        mode="serialization" if type_ not in INCOMING else "validation"
    )
    defs = data_schema.pop("$defs", {})
    envelope = envelope_json_schema()
    props = dict(envelope["properties"])
    props.update(TRACE_CONTEXT_SCHEMA)
    props["type"] = {"const": type_, "type": "string", "description": "Routing key = type."}
    props["data"] = data_schema
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://moment.se/schemas/bc-sync/{type_}.json",
        "title": type_,
        "description": (
            f"CloudEvents 1.0 structured-mode event (content type {CONTENT_TYPE}). Extension "
            "attributes (names of 1-20 lower-case letters or digits; string, boolean or "
            "integer values) are accepted and ignored."
        ),
        "type": "object",
        **envelope,
        "properties": props,
    }
    if defs:
        schema["$defs"] = defs
    return schema


def asyncapi() -> dict[str, Any]:
    """An AsyncAPI 3.1 document of the exchange, its routing keys and who sends what."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for type_ in ALL_TYPES:
        key = type_.replace(".", "_")
        messages[key] = {
            "name": type_,
            "contentType": CONTENT_TYPE,
            "payload": {"$ref": f"./{type_}.json"},
        }
        channels[key] = {
            "address": type_,
            "messages": {key: {"$ref": f"#/components/messages/{key}"}},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {"name": "moment.events", "type": "topic", "durable": True},
                }
            },
        }
        incoming = type_ in INCOMING
        operations[("consume_" if incoming else "publish_") + key] = {
            "action": "receive" if incoming else "send",
            "channel": {"$ref": f"#/channels/{key}"},
            "summary": (
                f"Moment publishes {type_}; bc-sync consumes it from its exports queue."
                if incoming
                else f"bc-sync publishes {type_} for Moment."
            ),
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "bc-sync events",
            "version": "1.0.0",
            "description": "Events between Moment and the Business Central sync worker, on the "
            "topic exchange `moment.events` (routing key = CloudEvents type). Newest change "
            "wins: an object's changes are ordered by `time`, then the optional CloudEvents "
            "extension `sequence` (digits, compared as an integer), then `id` (as a string); "
            "a change older than the one already applied to BC is acked as superseded and "
            "never applied. `bc.sync.status` announces an object's change of state to failed "
            "or waiting, or back to synced, once per change.",
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def render() -> dict[str, str]:
    """File name → exact file text of everything in ``schemas/``."""
    files = {f"{t}.json": event_schema(t) for t in ALL_TYPES}
    files["asyncapi.json"] = asyncapi()
    return {
        name: json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        for name, doc in files.items()
    }


def write(directory: Path = SCHEMA_DIR) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    rendered = render()
    for stale in directory.glob("*.json"):
        if stale.name not in rendered and stale.name not in NOT_OURS:
            stale.unlink()
    for name, text in rendered.items():
        (directory / name).write_text(text, encoding="utf-8")
    return sorted(rendered)


def drift(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of files whose content differs from what the models generate (empty when in
    sync). Compared as JSON values, not text, so `100` and `100.0` (pydantic versions write
    numbers differently) are the same schema."""
    rendered = render()
    present = {p.name for p in directory.glob("*.json")} - NOT_OURS if directory.is_dir() else set()
    out = [n for n in sorted(present - set(rendered))]
    for name, text in rendered.items():
        path = directory / name
        if not path.is_file() or json.loads(path.read_text(encoding="utf-8")) != json.loads(text):
            out.append(name)
    return sorted(out)


if __name__ == "__main__":
    for written in write():
        print(f"schemas/{written}")
    sys.exit(0)
