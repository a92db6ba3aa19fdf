"""Typed errors of the Business Central client.

Every error carries BC's HTTP status, BC's error ``code`` and ``message`` and the CorrelationId
that BC puts inside its messages (quote it to Microsoft support). Messages never contain
secrets or tokens.

Each class says whether retrying later can help (``transient``) and which code of the worker's
error catalogue (``worker.errors.CATALOGUE``) describes it (``catalogue_code``), so callers map
an error to an outcome without looking at statuses. ``field`` names the integration setting a
user must correct, when there is one (``tenant_id``, ``client_id``, ``client_secret``,
``environment``, ``company_name``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar

_CORRELATION = re.compile(
    r"CorrelationId:\s*([0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12})"
)
_XML_CODE = re.compile(r"<code>([^<]*)</code>")
_XML_MESSAGE = re.compile(r"<message>([^<]*)</message>")


def correlation_id(message: str | None) -> str | None:
    """The CorrelationId BC appends to error messages (``… CorrelationId:  <guid>.``)."""
    if not message:
        return None
    match = _CORRELATION.search(message)
    return match.group(1).lower() if match else None


class BcError(Exception):
    """Any failure talking to Business Central or Entra ID on its behalf."""

    transient: ClassVar[bool] = False
    catalogue_code: ClassVar[str] = "BC-VALIDATION"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        correlation_id: str | None = None,
        field: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        # Whether the client may repeat the request at once (in process); a transient error
        # that is not retryable (e.g. a timed-out POST that may have been applied) goes to the
        # caller's own retry path instead.
        self.retryable = self.transient if retryable is None else retryable
        self.status = status
        self.code = code
        self.correlation_id = correlation_id
        self.field = field

    def __str__(self) -> str:
        parts = [self.message]
        if self.code:
            parts.append(f"[{self.code}]")
        if self.status is not None:
            parts.append(f"(HTTP {self.status})")
        return " ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, correlation_id={self.correlation_id!r}, "
            f"field={self.field!r})"
        )


class BcAuthError(BcError):
    """Entra ID or BC rejected the credentials (bad secret, unknown tenant or app, app not set up
    in BC, token still refused after one refresh). Park and tell a person at once."""

    transient = True
    catalogue_code = "BC-CREDENTIALS-REJECTED"

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("retryable", False)
        super().__init__(message, **kwargs)


class BcPermissionDenied(BcAuthError):
    """BC accepted the token but the app lacks permissions (403 ``Authorization_*``)."""


class BcNotFound(BcError):
    """The resource does not exist (404)."""

    catalogue_code = "BC-VALIDATION"


class BcEnvironmentNotFound(BcNotFound):
    """The BC environment does not exist (404 ``NoEnvironment``)."""

    catalogue_code = "BC-ENVIRONMENT-MISSING"

    def __init__(self, environment: str, **kwargs: Any) -> None:
        kwargs.setdefault("field", "environment")
        kwargs.setdefault("code", "NoEnvironment")
        super().__init__(
            kwargs.pop("message", None)
            or f"The Business Central environment '{environment}' does not exist.",
            **kwargs,
        )
        self.environment = environment


class BcCompanyNotFound(BcNotFound):
    """No company with the configured name exists in the environment."""

    catalogue_code = "BC-COMPANY-MISSING"

    def __init__(self, company_name: str, available: tuple[str, ...] = (), **kwargs: Any) -> None:
        kwargs.setdefault("field", "company_name")
        kwargs.setdefault("code", "Internal_CompanyNotFound")
        names = ", ".join(f"'{n}'" for n in available) or "none"
        super().__init__(
            kwargs.pop("message", None)
            or f"No company named '{company_name}' in this environment (companies: {names}).",
            **kwargs,
        )
        self.company_name = company_name
        self.available = available


class BcServiceNotPublished(BcNotFound):
    """An ODataV4 page web service is not published under the configured service name."""

    catalogue_code = "BC-SERVICE-NOT-PUBLISHED"

    def __init__(self, service: str, page: str, **kwargs: Any) -> None:
        kwargs.pop("message", None)
        super().__init__(
            f"Publish page '{page}' as a web service named '{service}' on Business Central's "
            "'Web Services' page.",
            **kwargs,
        )
        self.service = service
        self.page = page


class BcConflict(BcError):
    """The record changed since it was read (409 ``Request_EntityChanged``) or a concurrent create
    won (409 ``Internal_EntityWithSameKeyExists``). Re-read and retry."""

    transient = True
    catalogue_code = "BC-UNAVAILABLE"

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("retryable", False)  # repeating the same write cannot succeed
        super().__init__(message, **kwargs)


class BcValidationError(BcError):
    """BC rejected the request's data (400 ``BadRequest_*`` / ``Application_*``); retrying the same
    request cannot help."""

    catalogue_code = "BC-VALIDATION"


class BcThrottled(BcError):
    """BC answered 429 (or the subject's own budget is spent) and in-process waiting is over."""

    transient = True
    catalogue_code = "BC-THROTTLED"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class BcUnavailable(BcError):
    """BC or Entra could not be reached, timed out, or answered 408/5xx."""

    transient = True
    catalogue_code = "BC-UNAVAILABLE"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


def _parse_body(body: bytes | str | None) -> tuple[str | None, str | None]:
    """BC's ``{"error": {"code", "message"}}`` (JSON) or the OData XML variant."""
    if body is None:
        return None, None
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = text.strip()
    if not text:
        return None, None
    try:
        data = json.loads(text)
    except ValueError:
        code = _XML_CODE.search(text)
        msg = _XML_MESSAGE.search(text)
        if code or msg:
            return (code.group(1) if code else None), (msg.group(1) if msg else None)
        return None, text[:300]
    return error_from_json(data)


def error_from_json(data: object) -> tuple[str | None, str | None]:
    """Code and message of an OData JSON error object (``{"error": {...}}``)."""
    if isinstance(data, Mapping):
        err = data.get("error", data)
        if isinstance(err, Mapping):
            code, msg = err.get("code"), err.get("message")
            return (str(code) if code else None), (str(msg) if msg else None)
    return None, None


def from_response(
    status: int,
    body: bytes | str | Mapping[str, Any] | None,
    *,
    retry_after: float | None = None,
    what: str = "request",
) -> BcError:
    """Build the typed error of one non-2xx BC answer (also used for ``$batch`` parts)."""
    if isinstance(body, Mapping):
        code, message = error_from_json(body)
    else:
        code, message = _parse_body(body)
    message = message or f"Business Central answered HTTP {status} to the {what}."
    kw: dict[str, Any] = {
        "status": status,
        "code": code,
        "correlation_id": correlation_id(message),
    }
    if status == 401:
        return BcAuthError(
            "Business Central rejected the app's token. Add the app (client ID) on Business "
            "Central's 'Microsoft Entra Applications' page, set State to Enabled and assign "
            f"permission sets. BC said: {message}",
            field="client_id",
            **kw,
        )
    if status == 403:
        return BcPermissionDenied(
            f"The app lacks permission in Business Central: {message}", field="client_id", **kw
        )
    if code == "NoEnvironment":
        return BcEnvironmentNotFound("", message=message, **kw)
    if code == "Internal_CompanyNotFound":
        return BcCompanyNotFound("", message=message, **kw)
    if status == 404:
        return BcNotFound(message, **kw)
    # Whether BC answers a duplicate key with 409 or 400 is not confirmed (bc-api §5.1): the
    # code decides, so "someone else made it first" is never mistaken for bad data.
    if status in (409, 412) or code == "Internal_EntityWithSameKeyExists":
        return BcConflict(message, **kw)
    if status == 429:
        return BcThrottled(message, retry_after=retry_after, **kw)
    if status == 408 or status >= 500:
        return BcUnavailable(message, retry_after=retry_after, **kw)
    return BcValidationError(message, **kw)
