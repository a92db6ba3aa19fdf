"""The admin API's OpenAPI document: checked in as the code generates it, valid OpenAPI 3.1,
complete (every /v1 route of the api role is in it, an undescribed one is refused), and its
schemas accept what the handlers' lower layers really produce."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from openapi_spec_validator import validate

from tests.support.factories import dialog
from tests.support.settings import make_settings
from worker.api import contract, openapi
from worker.api.app import ApiContext, create_app
from worker.config.model import parse_config, parse_connection_fields
from worker.store.configs import StoredConfig

DOC_FILE = contract.SCHEMA_DIR / contract.FILE_NAME


# The checked-in generated files are what the LOCKED versions generate (make schemas); on the
# lowest allowed versions (make test-lowest) pydantic renders the same schemas differently
# (e.g. `enum` beside `const`), so the drift check only means something on the lock.
LOCKED_TOOLCHAIN_ONLY = pytest.mark.skipif(
    os.environ.get("BC_SYNC_TEST_LOWEST") == "1",
    reason="generated files are compared on the locked versions only (make test-lowest)",
)


def checked_in() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DOC_FILE.read_text(encoding="utf-8"))
    return doc


@LOCKED_TOOLCHAIN_ONLY
def test_checked_in_document_is_what_the_code_generates() -> None:
    assert not contract.drift(), "run `make schemas` and commit schemas/openapi.json"


def test_drift_is_detected(tmp_path: Path) -> None:
    doc = checked_in()
    del doc["paths"]["/v1/dead-letters"]
    (tmp_path / contract.FILE_NAME).write_text(json.dumps(doc), encoding="utf-8")
    assert contract.drift(tmp_path)
    assert contract.drift(tmp_path / "missing")


def test_document_is_valid_openapi_3_1() -> None:
    doc = checked_in()
    assert doc["openapi"].startswith("3.1.")
    validate(doc)  # openapi-spec-validator: the OpenAPI 3.1 meta-schema and its rules


def api_role_app(tmp_path: Path) -> web.Application:
    """The app ``bc-sync run --roles api`` serves (the same route modules)."""
    settings = make_settings(tmp_path, api_token="t0ken-for-openapi-tests")
    return create_app(ApiContext(settings), contract.ROUTES)


def test_every_v1_route_of_the_api_role_is_in_the_document(tmp_path: Path) -> None:
    doc = checked_in()
    app = api_role_app(tmp_path)
    registered = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {(m, p) for p, item in doc["paths"].items() for m in item}
    v1 = {(m, p) for m, p in registered if p.startswith("/v1")}
    assert len(v1) >= 7
    assert v1 - documented == set(), "routes missing from schemas/openapi.json"
    assert documented - registered == set(), "documented routes the app does not have"


def test_a_v1_route_without_a_description_cannot_be_documented(tmp_path: Path) -> None:
    app = api_role_app(tmp_path)

    async def undocumented(request: web.Request) -> web.Response:
        return web.json_response({})

    app.router.add_get("/v1/organizations/{org}/integrations/business-central/new", undocumented)
    with pytest.raises(openapi.Undocumented, match=r"GET /v1/organizations/.*/new"):
        openapi.document(app)


def test_a_path_parameter_without_a_description_is_refused(tmp_path: Path) -> None:
    app = web.Application()

    @openapi.describe(openapi.Operation(summary="x", tag="t", responses={}))
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({})

    app.router.add_get("/v1/things/{thing}", handler)
    with pytest.raises(openapi.Undocumented, match="thing"):
        openapi.document(app)


def test_console_pages_outside_v1_are_left_out(tmp_path: Path) -> None:
    app = api_role_app(tmp_path)

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html></html>", content_type="text/html")

    app.router.add_get("/console", page)
    assert "/console" not in openapi.document(app)["paths"]


def test_bearer_on_every_operation_but_the_document_and_the_probes() -> None:
    doc = checked_in()
    assert doc["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    public = {"/healthz", "/readyz", "/metrics", "/v1/openapi.json"}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if path in public:
                assert op["security"] == [], (method, path)
                assert "401" not in op["responses"]
            else:
                assert "security" not in op, (method, path)  # the document's default: bearer
                assert "401" in op["responses"], (method, path)


def test_the_statuses_of_design_11_are_documented() -> None:
    paths = checked_in()["paths"]
    config = paths["/v1/organizations/{org}/integrations/business-central"]
    assert {"200", "201", "422", "502"} <= set(config["put"]["responses"])
    assert {"200", "404"} <= set(config["get"]["responses"])
    assert {"200", "404"} <= set(config["delete"]["responses"])
    assert "Retry-After" in config["put"]["responses"]["502"]["headers"]
    replay = paths["/v1/dead-letters/replay"]["post"]
    assert {"200", "409", "422", "502"} <= set(replay["responses"])
    assert paths["/v1/dead-letters/{id}"]["get"]["responses"]["404"]


def validator(ref: str) -> jsonschema.protocols.Validator:
    """A validator for one component of the checked-in document (its $refs resolved)."""
    doc = checked_in()
    schema = {"$ref": ref, "components": doc["components"]}
    cls = jsonschema.validators.validator_for(
        {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    )
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_public_config_schema_matches_what_get_answers() -> None:
    """``GET …/business-central`` answers ``StoredConfig.to_public_dict()`` as it is (the config
    model's own JSON): the documented schema holds for it, and has no secret."""
    now = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    config = parse_config(dialog(notes="n", client_secret="s3cret-value-for-schema"))
    stored = StoredConfig(
        org_id="org-acme", config=config, version=3, created_at=now, updated_at=now
    )
    public = stored.to_public_dict()
    validator("#/components/schemas/PublicConfig").validate(public)
    props = checked_in()["components"]["schemas"]["PublicConfig"]["properties"]
    assert "client_secret" not in props and props["client_secret_set"]["type"] == "boolean"
    with pytest.raises(jsonschema.ValidationError):
        validator("#/components/schemas/PublicConfig").validate({**public, "client_secret": "x"})


def test_config_body_schema_is_the_config_model() -> None:
    """The PUT body is ``IntegrationConfig`` (validation side): every field of the dialog,
    nothing else accepted; a valid dialog passes it."""
    body = checked_in()["components"]["schemas"]["IntegrationConfig"]
    assert body["additionalProperties"] is False
    assert set(body["required"]) == {"tenant_id", "environment", "company_name"}
    validator("#/components/schemas/IntegrationConfig").validate(dialog())


def test_the_documented_examples_are_accepted_by_the_worker() -> None:
    """The request examples a client developer copies pass the worker's own validation."""
    paths = checked_in()["paths"]
    put = paths["/v1/organizations/{org}/integrations/business-central"]["put"]
    example = put["requestBody"]["content"]["application/json"]["example"]
    validator("#/components/schemas/IntegrationConfig").validate(example)
    assert parse_config(example).company_name == "CRONUS Sverige AB"
    options = paths["/v1/organizations/{org}/integrations/business-central/options"]["post"]
    example = options["requestBody"]["content"]["application/json"]["example"]
    validator("#/components/schemas/ConnectionFields").validate(example)
    assert parse_connection_fields(example).environment == "Production"
