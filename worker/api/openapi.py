"""The OpenAPI 3.1 document of the admin API, built from the routes an app really has.

Each handler is described where it is written (:func:`describe`): summary, parameters, the
request model and the answer model of each status. :func:`document` walks the app's router and
puts together what the handlers say, with the models' JSON Schemas (pydantic) as components.
A route under ``/v1`` without a description is an error (:class:`Undocumented`), so a new route
cannot be added without its contract; ``make schemas`` and the drift test fail until it is.
Routes outside ``/v1`` are in the document when described (health, readiness, metrics) and left
out otherwise (the console's HTML pages).

``GET /v1/openapi.json`` serves the document of the running app without a token: it describes
routes and shapes, no data and no secret, and client generators fetch it unauthenticated.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from worker.api.models import ErrorAnswer, FieldErrors

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1.0.0"
DOCUMENT_PATH = "/v1/openapi.json"
JSON = "application/json"
SECURITY_SCHEME = "bearer"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# (model, mode) -> its {"$ref": ...}, as pydantic's models_json_schema gives them.
Refs = Mapping[tuple[Any, JsonSchemaMode], Any]
H = TypeVar("H", bound=Handler)


class Undocumented(Exception):
    """A route or path parameter has no description (see :func:`describe`)."""


@dataclass(frozen=True)
class Answer:
    """One status of an operation: its model (None: no JSON body; a tuple: one of them), what
    it means, its headers."""

    model: type[BaseModel] | tuple[type[BaseModel], ...] | None
    description: str
    headers: Mapping[str, str] = field(default_factory=dict)  # name -> description
    media_type: str = JSON
    schema: Mapping[str, Any] | None = None  # for a body that is not a model (metrics text)

    @property
    def models(self) -> tuple[type[BaseModel], ...]:
        if self.model is None:
            return ()
        return self.model if isinstance(self.model, tuple) else (self.model,)


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    where: Literal["query", "path"] = "query"
    example: Any = None
    repeated: bool = False  # ?id=a&id=b

    def to_openapi(self) -> dict[str, Any]:
        schema = dict(self.schema)
        if self.repeated:
            schema = {"type": "array", "items": schema}
        out: dict[str, Any] = {
            "name": self.name,
            "in": self.where,
            "required": self.where == "path",
            "description": self.description,
            "schema": schema,
        }
        if self.repeated:
            out.update(style="form", explode=True)
        if self.example is not None:
            out["example"] = self.example
        return out


@dataclass(frozen=True)
class Operation:
    summary: str
    responses: Mapping[int, Answer]
    tag: str
    description: str = ""
    body: type[BaseModel] | None = None
    body_description: str = ""
    body_required: bool = True
    body_example: Mapping[str, Any] | None = None
    query: Sequence[Param] = ()
    path: Sequence[Param] = ()
    public: bool = False  # no bearer token needed


# Path parameters shared by several routes; a route may describe its own instead.
ORG = Param(
    "org",
    "The Moment organization id (1-100 printable characters, no `/`).",
    {"type": "string", "minLength": 1, "maxLength": 100},
    where="path",
    example="org-acme",
)
PATH_PARAMS: dict[str, Param] = {"org": ORG}

UNAUTHORIZED = Answer(
    ErrorAnswer,
    "No bearer token, or not one of BC_SYNC_API_TOKEN (`error`: unauthorized).",
    headers={"WWW-Authenticate": 'Always `Bearer realm="bc-sync"`.'},
)
INTERNAL = Answer(ErrorAnswer, "An unexpected failure (logged; never a stack trace).")
READ_ONLY = Answer(
    ErrorAnswer,
    "The token may only read (`name=token:read` in BC_SYNC_API_TOKEN) and this route changes "
    "something (`error`: forbidden).",
)
FIELD_ERRORS = Answer(FieldErrors, "Field errors: nothing was saved or done.")

_OPERATIONS: dict[Callable[..., Any], Operation] = {}
# Non-GET handlers that change nothing (a read-only token may call them): see :func:`reads`.
_READING: set[Callable[..., Any]] = set()


def reads(handler: H) -> H:
    """Mark a non-GET route that changes nothing, so a read-only token may call it."""
    _READING.add(handler)
    return handler


def only_reads(handler: Callable[..., Any]) -> bool:
    return handler in _READING


def describe(operation: Operation) -> Callable[[H], H]:
    """Attach the OpenAPI description to a handler (read by :func:`document`)."""

    def register(handler: H) -> H:
        _OPERATIONS[handler] = operation
        return handler

    return register


def operation_of(handler: Callable[..., Any]) -> Operation | None:
    return _OPERATIONS.get(handler)


def _operation_id(method: str, path: str) -> str:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", path.replace("{", "by_")) if w and w != "v1"]
    return "_".join([method.lower(), *words])


def _path_params(path: str, op: Operation, where: str) -> list[dict[str, Any]]:
    own = {p.name: p for p in op.path}
    out = []
    for name in re.findall(r"{([^}:]+)", path):
        param = own.get(name) or PATH_PARAMS.get(name)
        if param is None:
            raise Undocumented(f"{where}: path parameter {{{name}}} has no description")
        out.append(param.to_openapi())
    return out


def _content(answer: Answer, refs: Refs) -> dict[str, Any] | None:
    schemas = [refs[(model, "serialization")] for model in answer.models]
    if len(schemas) == 1:
        return {answer.media_type: {"schema": schemas[0]}}
    if schemas:
        return {answer.media_type: {"schema": {"oneOf": schemas}}}
    if answer.schema is not None:
        return {answer.media_type: {"schema": dict(answer.schema)}}
    return None


def _responses(op: Operation, refs: Refs, *, write: bool = False) -> dict[str, Any]:
    answers = dict(op.responses)
    if not op.public:
        answers.setdefault(401, UNAUTHORIZED)
        if write:
            answers.setdefault(403, READ_ONLY)
    answers.setdefault(500, INTERNAL)
    out: dict[str, Any] = {}
    for status in sorted(answers):
        answer = answers[status]
        entry: dict[str, Any] = {"description": answer.description}
        content = _content(answer, refs)
        if content is not None:
            entry["content"] = content
        if answer.headers:
            entry["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in answer.headers.items()
            }
        out[str(status)] = entry
    return out


def _described_routes(app: web.Application) -> list[tuple[str, str, Operation]]:
    """(method, path, operation) of every route in the document, in registration order."""
    found: list[tuple[str, str, Operation]] = []
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS", "*"):
            continue  # aiohttp adds HEAD to every GET
        path = route.resource.canonical if route.resource is not None else ""
        op = operation_of(route.handler)
        if op is None:
            if path == "/v1" or path.startswith("/v1/"):
                raise Undocumented(
                    f"{route.method} {path}: describe the handler with "
                    "worker.api.openapi.describe(...) so that it is in schemas/openapi.json"
                )
            continue
        found.append((route.method, path, op))
    return found


def document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``'s routes."""
    routes = _described_routes(app)
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    for _, _, op in routes:
        if op.body is not None:
            wanted.append((op.body, "validation"))
        for answer in (*op.responses.values(), UNAUTHORIZED, READ_ONLY, INTERNAL):
            wanted.extend((model, "serialization") for model in answer.models)
    unique = list(dict.fromkeys(wanted))
    refs, defs = models_json_schema(unique, ref_template="#/components/schemas/{model}")
    paths: dict[str, dict[str, Any]] = {}
    reading = {id(_OPERATIONS[h]) for h in _READING if h in _OPERATIONS}
    for method, path, op in routes:
        where = f"{method} {path}"
        write = method not in ("GET", "HEAD") and id(op) not in reading
        entry: dict[str, Any] = {
            "operationId": _operation_id(method, path),
            "summary": op.summary,
            "tags": [op.tag],
            "responses": _responses(op, refs, write=write),
        }
        if op.description:
            entry["description"] = op.description
        parameters = _path_params(path, op, where) + [p.to_openapi() for p in op.query]
        if parameters:
            entry["parameters"] = parameters
        if op.body is not None:
            entry["requestBody"] = {
                "required": op.body_required,
                "description": op.body_description,
                "content": {JSON: {"schema": refs[(op.body, "validation")]}},
            }
            if op.body_example is not None:
                entry["requestBody"]["content"][JSON]["example"] = dict(op.body_example)
        if op.public:
            entry["security"] = []
        paths.setdefault(path, {})[method.lower()] = entry
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "bc-sync admin API",
            "version": API_VERSION,
            "description": (
                "The admin API of the Moment <-> Business Central integration worker: the "
                "integration's configuration (Moment's dialog), its sync status, dead letters, "
                "health, readiness and metrics. Every `/v1` route needs the bearer token "
                "(BC_SYNC_API_TOKEN) except this document itself."
            ),
        },
        "tags": [
            {"name": "configuration", "description": "The integration dialog of one organization."},
            {"name": "dead letters", "description": "Failed events: list, show, replay."},
            {"name": "operations", "description": "Health, readiness, metrics, this document."},
        ],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(defs.get("$defs", {}).items())),
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of the tokens of BC_SYNC_API_TOKEN (a token, or "
                    "name=token pairs; the name appears in audit lines).",
                }
            },
        },
        "security": [{SECURITY_SCHEME: []}],
    }


# Filled on the first request: the routes do not change once the app runs.
DOCUMENT = web.AppKey("openapi_document", dict[str, Any])


def add_route(app: web.Application) -> None:
    """Serve ``GET /v1/openapi.json`` (the api role: every app with the ``/v1`` routes)."""
    app[DOCUMENT] = {}
    app.router.add_get(DOCUMENT_PATH, openapi_json)


@describe(
    Operation(
        summary="This OpenAPI document",
        tag="operations",
        public=True,
        description="No token needed: it describes routes and shapes, never data or secrets.",
        responses={200: Answer(None, "The document.", schema={"type": "object"})},
    )
)
async def openapi_json(request: web.Request) -> web.Response:
    cached = request.app[DOCUMENT]
    if not cached:
        cached.update(document(request.app))
    return web.json_response(cached)
