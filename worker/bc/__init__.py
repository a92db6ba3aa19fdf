"""Business Central client: auth (msal), HTTP (aiohttp), OData helpers, resources, errors.

Knows nothing of Moment, of settings and of AMQP. Start with :class:`BcHub` (one per process,
configured by :class:`BcEndpoints`) and ``hub.connection(credentials)``; every call raises a
:class:`BcError` subclass on failure.

Mapping errors to outcomes: ``err.transient`` says whether a later attempt can succeed
(:class:`BcThrottled`, :class:`BcUnavailable`, :class:`BcConflict` → retry ladder, honouring
``err.retry_after`` when set; :class:`BcAuthError` → park and notify at once); everything else
(:class:`BcValidationError`, :class:`BcNotFound` and its subclasses) is permanent
(``err.kind`` says the same in one word); ``err.field`` is the integration setting to correct,
if any. Which worker error code an error becomes is decided in ``worker.sync.errors``; a
particular BC error is recognised with :func:`worker.bc.errors.facts`, ``is_dialog`` and
``names_field`` (code and structure, English labels only where BC gives nothing else).
"""

from worker.bc.client import BcConnection, BcCredentials, BcHub
from worker.bc.endpoints import BcEndpoints
from worker.bc.errors import (
    BcAuthError,
    BcCompanyNotFound,
    BcConflict,
    BcEnvironmentNotFound,
    BcError,
    BcNotFound,
    BcPermissionDenied,
    BcServiceNotPublished,
    BcThrottled,
    BcUnavailable,
    BcValidationError,
)
from worker.bc.http import ClientOptions
from worker.bc.limits import LimitConfig
from worker.bc.models import LineDimension
from worker.bc.retry import RetryPolicy

__all__ = [
    "BcAuthError",
    "BcCompanyNotFound",
    "BcConflict",
    "BcConnection",
    "BcCredentials",
    "BcEndpoints",
    "BcEnvironmentNotFound",
    "BcError",
    "BcHub",
    "BcNotFound",
    "BcPermissionDenied",
    "BcServiceNotPublished",
    "BcThrottled",
    "BcUnavailable",
    "BcValidationError",
    "ClientOptions",
    "LimitConfig",
    "LineDimension",
    "RetryPolicy",
]
