"""The aiohttp admin API: config, status and dead-letter routes, health, readiness, metrics."""

from worker.api.app import ApiContext, ApiServer, ServiceUnavailable, api_tokens, create_app

__all__ = ["ApiContext", "ApiServer", "ServiceUnavailable", "api_tokens", "create_app"]
