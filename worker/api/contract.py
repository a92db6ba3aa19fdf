"""The admin API's route modules and its OpenAPI document as checked in (``schemas/openapi.json``).

``make schemas`` runs ``python -m worker.api.contract`` (after the event schemas); a test fails
when the checked-in file differs from what the handlers' descriptions generate, and
:func:`worker.api.openapi.document` fails when a ``/v1`` route has no description.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from worker.api import config_routes, objects_routes, openapi, ops_routes, reconcile_routes
from worker.api.app import add_core_routes

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
FILE_NAME = "openapi.json"

# Every route module of the api role, in the order they are registered.
ROUTES: tuple[Callable[[web.Application], None], ...] = (
    ops_routes.add_routes,
    config_routes.add_routes,
    objects_routes.add_routes,
    reconcile_routes.add_routes,
)


def route_table() -> web.Application:
    """An app with every route of the api role and nothing behind them (no settings, no
    store): what the document is generated from."""
    app = web.Application()
    add_core_routes(app, api=True)
    for add_routes in ROUTES:
        add_routes(app)
    return app


def generate() -> dict[str, Any]:
    return openapi.document(route_table())


def render() -> str:
    """The exact text of ``schemas/openapi.json``."""
    return json.dumps(generate(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def write(directory: Path = SCHEMA_DIR) -> Path:
    path = directory / FILE_NAME
    path.write_text(render(), encoding="utf-8")
    return path


def drift(directory: Path = SCHEMA_DIR) -> bool:
    """True when the checked-in document differs from what the code generates (compared as
    JSON values, like the event schemas)."""
    path = directory / FILE_NAME
    if not path.is_file():
        return True
    return bool(json.loads(path.read_text(encoding="utf-8")) != json.loads(render()))


if __name__ == "__main__":
    print(f"schemas/{write().name}")
    sys.exit(0)
