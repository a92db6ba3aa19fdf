"""Business Central client: auth (msal), HTTP (aiohttp), OData helpers, resources, errors.

Knows nothing of Moment and nothing of AMQP. Start with :class:`BcHub` (one per process) and
``hub.connection(credentials)``.
"""

from worker.bc.client import BcConnection, BcCredentials, BcHub
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
