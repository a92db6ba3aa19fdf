"""Error answers shaped like Business Central's and Entra ID's (bc-api.md §5.1, §2)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

JsonObj = dict[str, Any]


@dataclass
class Reply:
    """A transport-neutral answer: the HTTP layer and ``$batch`` both turn it into a response."""

    status: int
    body: JsonObj | None = None
    headers: dict[str, str] = field(default_factory=dict)


def correlation_id() -> str:
    return str(uuid.uuid4())


class BCError(Exception):
    """An error BC would answer with ``{"error": {"code", "message"}}``.

    BC appends ``"  CorrelationId:  <guid>."`` to every message (two spaces on both sides of the
    label, bc-api §5.1); ``correlation=False`` leaves it off for gateway-level answers such as
    ``NoEnvironment`` whose only recorded sample has none.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        correlation: bool = True,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.correlation = correlation

    def reply(self) -> Reply:
        cid = correlation_id()
        message = f"{self.message}  CorrelationId:  {cid}." if self.correlation else self.message
        headers = {"request-id": cid, **self.headers}
        return Reply(self.status, {"error": {"code": self.code, "message": message}}, headers)


# ---- frequently used BC errors -------------------------------------------------------------


def dialog(message: str) -> BCError:
    """AL ``Error()`` from page/table code → 400 ``Application_DialogException`` (bc-api §3)."""
    return BCError(400, "Application_DialogException", message)


def read_only(field_name: str) -> BCError:
    return BCError(400, "BadRequest_InvalidOperation", f"Control '{field_name}' is read-only")


def unknown_property(prop: str, type_name: str) -> BCError:
    # The OData library's text for a body property that the entity type does not define.
    return BCError(
        400,
        "BadRequest",
        f"The property '{prop}' does not exist on type '{type_name}'. Make sure to only use "
        "property names that are defined by the type.",
    )


def query_error(message: str) -> BCError:
    """Errors in ``$filter``/``$select``/``$expand``/``$orderby``.

    UNCONFIRMED: bc-api §5.1 lists ``BadRequest_NotFound`` for "Bad Request - Error in query
    syntax"; we use that code (400) with the OData library's detailed message.
    """
    return BCError(400, "BadRequest_NotFound", message)


def string_too_long(value: str, max_len: int) -> BCError:
    return BCError(
        400,
        "Application_StringExceededLength",
        f"The length of the string is {len(value)}, but it must be less than or equal to "
        f"{max_len} characters. Value: {value}",
    )


def record_not_found(table: str, ident: str) -> BCError:
    """A failed ``Record.Get`` inside AL code (e.g. a line's G/L account).

    Choice (bc-api §5.1 lists ``Internal_RecordNotFound`` without a status): 400, because the
    request itself was well-formed and the failure comes from validating its data.
    """
    return BCError(
        400,
        "Internal_RecordNotFound",
        f"The {table} does not exist. Identification fields and values: {ident}",
    )


def data_not_found_filter(table: str, filters: str) -> BCError:
    """A failed ``FindFirst`` on a filtered record inside AL code (e.g. the customer ledger entry
    a credit memo is applied to). The code is bc-api §5.1's ``Internal_DataNotFoundFilter``;
    status 400 as for :func:`record_not_found`; the text is the platform's "There is no … within
    the filter." (approximated: the filter list is written in the AL's SetRange order).
    """
    return BCError(
        400,
        "Internal_DataNotFoundFilter",
        f"There is no {table} within the filter.  Filters: {filters}",
    )


def key_not_found(table: str, key: str) -> BCError:
    """GET/PATCH/DELETE of an entity whose key does not exist.

    UNCONFIRMED (bc-api §10: "GET of unknown id (404 code name)"): 404 ``Internal_RecordNotFound``
    with BC's record-not-found text.
    """
    return BCError(
        404,
        "Internal_RecordNotFound",
        f"The {table} does not exist. Identification fields and values: Id='{key}'",
    )


def already_exists(table: str, ident: str) -> BCError:
    """Duplicate primary key → ``Internal_EntityWithSameKeyExists``.

    Status 409: bc-api §5.1 names 409 for this code on secondary evidence (a design note citing
    BC28 server code); we follow it.
    """
    return BCError(
        409,
        "Internal_EntityWithSameKeyExists",
        f"The {table} already exists. Identification fields and values: {ident}",
    )


def invalid_table_relation(field_caption: str, table: str, value: str, related: str) -> BCError:
    """A code that is not in the related table (e.g. a posting group that does not exist).

    Choice per bc-api §5.1: BC raises ``NavInvalidTableRelationException`` for this, whose code
    is ``Internal_InvalidTableRelation``; status 400 (the §5.1 mapping for client data errors).
    """
    return BCError(
        400,
        "Internal_InvalidTableRelation",
        f"The field {field_caption} of table {table} contains a value ({value}) that cannot be "
        f"found in the related table ({related}).",
    )


def resource_not_found(segment: str) -> BCError:
    """Unknown entity set / path segment (and an ODataV4 service that is not published).

    UNCONFIRMED status: bc-api §5.1 maps unknown resources to 404; the code and text are the ones
    Microsoft lists for ``BadRequest_ResourceNotFound``.
    """
    return BCError(
        404, "BadRequest_ResourceNotFound", f"Resource not found for the segment '{segment}'."
    )


def method_not_allowed(method: str, entity_set: str) -> BCError:
    return BCError(
        405,
        "BadRequest_MethodNotAllowed",
        f"'{method}' requests for '{entity_set}' of EdmType 'Entity' are not allowed within "
        "Dynamics 365 Business Central OData web services.",
    )


def not_implemented(what: str) -> BCError:
    """Something real BC supports but this emulator does not (said plainly, never silently)."""
    return BCError(
        501, "BadRequest_MethodNotImplemented", f"Not implemented by the BC emulator: {what}"
    )


def bad_request(message: str) -> BCError:
    return BCError(400, "BadRequest", message)


def invalid_credentials() -> BCError:
    """401 for a missing/malformed/expired/foreign token or an app not enabled in BC (bc-api §2).

    UNCONFIRMED (bc-api §10): the 401 headers. We send a ``WWW-Authenticate: Bearer`` challenge
    naming the authority, the way Azure-fronted services usually do.
    """
    return BCError(
        401,
        "Authentication_InvalidCredentials",
        "The server has rejected the client credentials.",
        headers={"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
    )


# ---- Entra ID ------------------------------------------------------------------------------


class EntraError(Exception):
    """An AADSTS error from the token or discovery endpoint."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(f"{status} {error} AADSTS{code}")
        self.status = status
        self.error = error
        self.code = code
        self.description = description

    def body(self, timestamp: str) -> JsonObj:
        trace_id = correlation_id()
        corr = correlation_id()
        return {
            "error": self.error,
            "error_description": (
                f"AADSTS{self.code}: {self.description} Trace ID: {trace_id} "
                f"Correlation ID: {corr} Timestamp: {timestamp}"
            ),
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": corr,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
        }
